"""Counters for the live page: this shift and the last hour, without re-counting the database.

Containers gated before the station started (T0) are counted by the database
(storage.stats.line_stats, refreshed every half minute as the hour window slides);
those gated since come from the decision stream, in one-minute buckets. A decision
is therefore counted exactly once, whichever source saw it first.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path

from edge.ui.queries import camera_activity, spc_alarms
from storage.stats import line_stats

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
LATE_REASONS = ("late result", "worker crashed", "decision restarted")


@dataclass
class Counts:
    inspected: int = 0
    passed: int = 0
    rejected: int = 0
    by_reason: Counter = field(default_factory=Counter)
    by_class: Counter = field(default_factory=Counter)
    missing_by_camera: Counter = field(default_factory=Counter)
    timeouts_by_camera: Counter = field(default_factory=Counter)  # missing views whose grab timed out
    failsafe: int = 0  # ejected with no decision in time (relay journal)
    alarms: int = 0  # reject not fired in time, or a pass thrown out (relay journal)

    def __iadd__(self, other: "Counts") -> "Counts":
        self.inspected += other.inspected
        self.passed += other.passed
        self.rejected += other.rejected
        self.by_reason.update(other.by_reason)
        self.by_class.update(other.by_class)
        self.missing_by_camera.update(other.missing_by_camera)
        self.timeouts_by_camera.update(other.timeouts_by_camera)
        self.failsafe += other.failsafe
        self.alarms += other.alarms
        return self

    @property
    def yield_pct(self) -> float | None:
        return 100.0 * self.passed / self.inspected if self.inspected else None

    @property
    def late(self) -> int:
        return sum(self.by_reason.get(r, 0) for r in LATE_REASONS)

    def add_decision(self, decision: dict) -> None:
        views = decision.get("views", [])
        self.inspected += 1
        for v in views:
            if v.get("outcome") != "inferred":
                camera = v.get("camera_id") or f"view {v.get('view')}"
                self.missing_by_camera[camera] += 1
                if "timeout" in (v.get("reason") or ""):
                    self.timeouts_by_camera[camera] += 1
        if decision.get("decision") == "pass":
            self.passed += 1
            return
        self.rejected += 1
        self.by_reason[decision.get("reason") or "unknown"] += 1
        for name in {name for v in views for name in v.get("rejecting", [])}:
            self.by_class[name] += 1


def shift_start(now: datetime, starts: list[str]) -> datetime:
    """The latest configured local shift start at or before `now` (aware, local time)."""
    local = now.astimezone()
    candidates = []
    for day in (local.date() - timedelta(days=1), local.date()):
        for hhmm in starts:
            hour, minute = map(int, hhmm.split(":"))
            candidates.append(datetime.combine(day, time(hour, minute)).astimezone())
    return max(c for c in candidates if c <= local)


def _from_stats(stats, activity: dict[str, tuple[datetime | None, int]]) -> Counts:
    return Counts(inspected=stats.containers, passed=stats.passed, rejected=stats.rejected,
                  by_reason=Counter(stats.by_reason), by_class=Counter(stats.by_class),
                  missing_by_camera=Counter(stats.missing_by_camera),
                  timeouts_by_camera=Counter({camera: n for camera, (_, n) in activity.items() if n}))


@dataclass
class CameraRow:
    """One camera on the live page: its last frame, views missing and grab timeouts per window."""

    camera: str
    last_frame: datetime | None
    missing_shift: int
    missing_hour: int
    timeouts_shift: int
    timeouts_hour: int


class RelayJournal:
    """Fail-safe pulses and alarms from the reject controller's journal, read as it grows."""

    ALARMS = ("missed", "overruled", "unconfirmed")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.failsafe: list[datetime] = []
        self.alarms: list[datetime] = []

    def read(self, keep_since: datetime) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size < self.offset:  # rotated: start the new file from its beginning
            self.offset = 0
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                row = json.loads(line)
                when = datetime.fromisoformat(row["utc"])
            except (ValueError, KeyError):
                continue
            if row.get("kind") == "pulse" and row.get("failsafe"):
                self.failsafe.append(when)
            elif row.get("kind") in self.ALARMS:
                self.alarms.append(when)
        self.failsafe = [t for t in self.failsafe if t >= keep_since]
        self.alarms = [t for t in self.alarms if t >= keep_since]

    def count(self, since: datetime) -> tuple[int, int]:
        return sum(t >= since for t in self.failsafe), sum(t >= since for t in self.alarms)


class Tally:
    def __init__(self, starts: list[str], t0: datetime, data_dir: Path, line_id: str,
                 thresholds: dict[str, float], default_threshold: float, cameras: list[str] = ()) -> None:
        self.starts = starts
        self.cameras = list(cameras)  # the configured ones, shown even before their first frame
        self.last_frame: dict[str, datetime] = {}
        self.t0 = t0
        self.line_id = line_id
        self.thresholds, self.default_threshold = thresholds, default_threshold
        self.minutes: dict[datetime, Counts] = {}
        self.base_shift, self.base_hour = Counts(), Counts()
        self.journal = RelayJournal(Path(data_dir) / "relay" / "outputs.jsonl")
        self.spc_alarms: list[tuple[datetime, str]] = []  # this shift's control-chart alarms, newest first

    def add(self, decision: dict) -> bool:
        """Count a streamed decision; False if it was gated before T0 (the database counts it)."""
        t_gate = datetime.fromisoformat(decision["t_gate_utc"])
        if t_gate < self.t0 or decision.get("line_id", self.line_id) != self.line_id:
            return False
        minute = t_gate.replace(second=0, microsecond=0)
        self.minutes.setdefault(minute, Counts()).add_decision(decision)
        for v in decision.get("views", []):
            if v.get("t_capture_utc") and v.get("camera_id"):
                self._saw(v["camera_id"], datetime.fromisoformat(v["t_capture_utc"]))
        return True

    def _saw(self, camera: str, t: datetime) -> None:
        if camera not in self.last_frame or t > self.last_frame[camera]:
            self.last_frame[camera] = t

    def refresh(self, db, now: datetime) -> None:
        """Re-read the database part (before T0) and the relay journal; drop buckets no window needs."""
        shift, hour = shift_start(now, self.starts), now - HOUR
        oldest = min(shift, hour)
        self.base_shift = self._before_t0(db, shift)
        self.base_hour = self._before_t0(db, hour)
        self.journal.read(oldest)
        self.spc_alarms = spc_alarms(db, shift, self.line_id)
        self.minutes = {m: c for m, c in self.minutes.items() if m >= oldest - timedelta(minutes=1)}

    def _before_t0(self, db, since: datetime) -> Counts:
        if since >= self.t0:
            return Counts()
        activity = camera_activity(db, since, self.t0, self.line_id)
        for camera, (last, _) in activity.items():
            if last is not None:
                self._saw(camera, last)
        return _from_stats(line_stats(db, since=since, until=self.t0, thresholds=self.thresholds,
                                      default_threshold=self.default_threshold, line_id=self.line_id), activity)

    def camera_rows(self, shift: Counts, hour: Counts) -> list[CameraRow]:
        """The configured cameras, then any other the records name (a camera since renamed)."""
        names = self.cameras + sorted((set(self.last_frame) | set(shift.missing_by_camera)) - set(self.cameras))
        return [CameraRow(c, self.last_frame.get(c), shift.missing_by_camera[c], hour.missing_by_camera[c],
                          shift.timeouts_by_camera[c], hour.timeouts_by_camera[c]) for c in names]

    def snapshot(self, now: datetime) -> tuple[datetime, Counts, Counts]:
        """(shift start, this shift's counts, the last hour's counts)."""
        shift = shift_start(now, self.starts)
        counts = {}
        for name, since, base in (("shift", shift, self.base_shift), ("hour", now - HOUR, self.base_hour)):
            total = Counts()
            total += base
            for minute, c in self.minutes.items():
                if minute >= since.replace(second=0, microsecond=0):
                    total += c
            total.failsafe, total.alarms = self.journal.count(since)
            counts[name] = total
        return shift, counts["shift"], counts["hour"]
