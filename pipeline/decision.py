"""The decision stage: six views in, exactly one pass/reject per container out.

A container opens when the station announces its gate event (or its first view
arrives). It is decided as soon as all six views have an outcome, or at its deadline,
t_gate + travel_time - relay_lead, whichever comes first. Fail-safe: a missing,
dropped, bad or late view rejects the container (line.late_result: pass lets it
through, logged as a warning every time). A result that arrives after its container
was decided is counted as late and changes nothing: the decision is already on its way
to the relay and storage.

Containers are keyed by (seq, t_gate_ns), so a restarted station that counts from
zero again cannot be confused with a container decided earlier. A container whose mould
(section-cavity, from the gate) is in `reject_moulds` is rejected with reason `mould`
whatever its views show: an engineer took that mould out (swabbing, known bad).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from camera.frame import VIEWS
from storage.bounded import BoundedSet
from storage.moulds import mould_name

log = logging.getLogger(__name__)

REMEMBER = 100_000  # decided containers remembered, to recognise late results

# Reasons, in the order that names the cause when several apply: a mould taken out first (it
# rejects whatever the views show), a real defect, then a crash (which also makes the station
# drop views while the worker restarts).
MOULD, DEFECT, MISSING, CRASHED, LATE, OK = "mould", "defect", "missing view", "worker crashed", "late result", "ok"


@dataclass
class Container:
    seq: int
    t_gate_ns: int
    deadline_ns: int
    due_ns: int
    views: dict[int, dict[str, Any]] = field(default_factory=dict)
    section: int | None = None  # the mould, when the gate read it
    cavity: int | None = None


class DecisionBook:
    """Pure decision logic (no sockets, no clock): the stage feeds it, tests drive it."""

    def __init__(self, *, line_id: str, travel_time_ms: float, relay_lead_ms: float,
                 late_result: str, thresholds: dict[str, float], default_threshold: float,
                 cameras: dict[int, str] | None = None) -> None:
        self.line_id = line_id
        self.travel_ns = int(travel_time_ms * 1e6)
        self.deadline_offset_ns = int((travel_time_ms - relay_lead_ms) * 1e6)
        self.late_result = late_result
        self.thresholds = thresholds
        self.default_threshold = default_threshold
        self.cameras = cameras or {}
        self.reject_moulds: set[str] = set()  # "3-1": every container of these is rejected (the stage sets it)
        self.open: dict[tuple[int, int], Container] = {}
        self.decided: BoundedSet[tuple[int, int], str] = BoundedSet(REMEMBER)  # with the decision
        self.crashes: list[tuple[str, int]] = []
        self.counts: dict[str, int] = {"decided": 0, "late_views": 0, "unknown": 0, "duplicate": 0}
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()

    # -- input -------------------------------------------------------------------------
    def gate(self, seq: int, t_gate_ns: int, now_ns: int, section: int | None = None,
             cavity: int | None = None) -> None:
        """A container passed the gate; its mould, when read. Its first view may have come first
        (another socket): the gate message then only adds the mould."""
        key = (seq, t_gate_ns)
        if key in self.decided:
            return
        container = self.open.get(key) or self._open(key)
        if cavity is not None:
            container.section, container.cavity = section, cavity

    def view(self, msg: dict[str, Any], now_ns: int) -> dict[str, Any] | None:
        """Record one view's outcome; return the decision if this completed the container."""
        key = (int(msg["seq"]), int(msg["t_gate_ns"]))
        view = int(msg["view"])
        if not 0 <= view < VIEWS:
            raise ValueError(f"view {view} outside 0-{VIEWS - 1}")
        if key in self.decided:
            self.counts["late_views"] += 1
            log.warning("container %d view %d: result arrived after the decision (%s); ignored",
                        key[0], view, self.decided.get(key))
            return None
        container = self.open.get(key)
        if container is None:
            if key[1] + self.deadline_offset_ns <= now_ns:
                self.counts["unknown"] += 1
                log.warning("container %d (gate %d): unknown and past its deadline; view %d ignored",
                            key[0], key[1], view)
                return None
            container = self._open(key)
        if view in container.views:
            self.counts["duplicate"] += 1
            log.warning("container %d view %d: duplicate result ignored", key[0], view)
            return None
        container.views[view] = msg
        if len(container.views) == VIEWS:
            return self._decide(container, now_ns)
        return None

    def remember(self, key: tuple[int, int], decision: str) -> None:
        """A container decided before a restart: its late views are recognised as late."""
        self.decided.add(key, decision)

    def crash(self, stage: str, at_ns: int) -> None:
        self.crashes.append((stage, at_ns))
        del self.crashes[:-100]

    # -- deadlines -----------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        return min((c.deadline_ns for c in self.open.values()), default=None)

    def expire(self, now_ns: int) -> list[dict[str, Any]]:
        due = [c for c in self.open.values() if c.deadline_ns <= now_ns]
        return [self._decide(c, now_ns) for c in sorted(due, key=lambda c: c.deadline_ns)]

    def decide_now(self, keys: list[tuple[int, int]], now_ns: int) -> list[dict[str, Any]]:
        """Decide these open containers now, whatever views they have (a restart cannot wait)."""
        due = [self.open[k] for k in keys if k in self.open]
        return [self._decide(c, now_ns) for c in sorted(due, key=lambda c: c.t_gate_ns)]

    def flush(self, now_ns: int) -> list[dict[str, Any]]:
        """Decide every open container now (a stage restart or shutdown cannot wait)."""
        return self.decide_now(list(self.open), now_ns)

    # -- inside --------------------------------------------------------------------------
    def _open(self, key: tuple[int, int]) -> Container:
        container = Container(key[0], key[1], key[1] + self.deadline_offset_ns, key[1] + self.travel_ns)
        self.open[key] = container
        return container

    def _applied(self, detection: dict[str, Any]) -> float:
        """The threshold a detection counts against: the engine's (it dropped anything below)
        or this book's for its class, whichever is higher."""
        own = self.thresholds.get(detection["class"], self.default_threshold)
        return max(own, detection.get("threshold") or 0.0)

    def _decide(self, c: Container, now_ns: int) -> dict[str, Any]:
        del self.open[(c.seq, c.t_gate_ns)]
        views, reasons, versions = [], set(), set()
        crashed = any(c.t_gate_ns <= at <= c.deadline_ns for _, at in self.crashes)
        for v in range(VIEWS):
            msg = c.views.get(v)
            if msg is None:
                outcome, reason = ("lost", CRASHED) if crashed else ("late", LATE)
                detections, camera_id, t_capture = [], self.cameras.get(v, ""), None
            else:
                outcome, reason = msg.get("outcome", "inferred"), msg.get("reason")
                detections = msg.get("detections") or []
                camera_id, t_capture = msg.get("camera_id", ""), msg.get("t_capture_ns")
                if msg.get("model_version"):
                    versions.add(msg["model_version"])
            detections = [{**d, "threshold": self._applied(d)} for d in detections]
            hits = [d for d in detections if d["score"] >= d["threshold"]]
            if outcome == "inferred":
                if hits:
                    reasons.add(DEFECT)
            elif outcome == "lost":
                reasons.add(CRASHED)
            elif outcome == "late":
                reasons.add(LATE)
            else:  # missing, dropped, bad
                reasons.add(MISSING)
            views.append({
                "view": v, "camera_id": camera_id, "outcome": outcome, "reason": reason,
                "t_capture_ns": t_capture,
                "t_capture_utc": None if t_capture is None else self._utc(t_capture),
                "detections": detections, "rejecting": [d["class"] for d in hits],
            })
        mould = mould_name(c.section, c.cavity)
        if mould is not None and mould in self.reject_moulds:
            reasons.add(MOULD)
        reason = next((r for r in (MOULD, DEFECT, CRASHED, MISSING, LATE) if r in reasons), OK)
        decision = "reject" if reason != OK else "pass"
        if reason in (MISSING, CRASHED, LATE) and self.late_result == "pass":
            decision = "pass"
            log.warning("container %d: %s, PASSED because line.late_result is 'pass' (not inspected!)",
                        c.seq, reason)
        latency_ms = (now_ns - c.t_gate_ns) / 1e6
        self.decided.add((c.seq, c.t_gate_ns), decision)
        self.counts["decided"] += 1
        return {
            "seq": c.seq, "line_id": self.line_id, "t_gate_ns": c.t_gate_ns,
            "t_gate_utc": self._utc(c.t_gate_ns), "due_ns": c.due_ns, "decided_ns": now_ns,
            "decision": decision, "reason": reason, "latency_ms": round(latency_ms, 3),
            "model_version": ",".join(sorted(versions)) or None, "views": views,
            "section": c.section, "cavity": c.cavity,
        }

    def _utc(self, mono_ns: int) -> str:
        from datetime import datetime, timezone

        return datetime.fromtimestamp((mono_ns + self.wall_offset_ns) / 1e9, timezone.utc).isoformat()
