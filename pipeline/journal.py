"""Append-only journals that let a killed stage pick up exactly where it was.

One event per line, appended and flushed to the OS at once: kill -9 keeps what the page
cache holds (a power cut may lose the last lines; the line then restarts from a new boot
and treats everything journalled as past). Read back at start, the part after the last
newline was torn by the crash and is ignored, as is any line that does not parse. The
journal is rewritten from the live state every COMPACT_EVERY lines so it stays small.

Monotonic times are only comparable within one boot: the first line names the boot
(/proc/sys/kernel/random/boot_id) and a journal from another boot reports `same_boot`
False, so that no pulse is ever scheduled from a time that belongs to another boot.

A full disk does not stop a stage: a line that cannot be written raises no exception;
it is logged once as an ALARM, `degraded` turns True, the state lives on in memory and
the next compaction tries again.

The decision stage's journal (DecisionJournal) is the line's durable outbox: which
containers are open, every decision until the storage writer acknowledged its commit,
and the stage's totals.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from storage.files import Outage, atomic_write, sweep_temporaries

log = logging.getLogger(__name__)

COMPACT_EVERY = 10_000
Key = tuple[int, int]  # (seq, t_gate_ns)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


class LineJournal:
    """The file under a journal: read once at start, append, rewrite."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.outage = Outage(self.path, "its state is kept in memory only until the disk has room again", log)
        self._file: Any = None
        self._lines = 0
        self.boot = boot_id()
        self.old_lines, self.same_boot = self.peek(self.path)
        sweep_temporaries(self.path)  # a rewrite that a kill -9 interrupted

    @staticmethod
    def peek(path: Path) -> tuple[list[str], bool]:
        """The complete lines of a journal after its boot line, and whether it is this boot's."""
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            return [], True
        lines = text.split("\n")[:-1]  # the part after the last newline was torn by the crash
        if not lines or not lines[0].startswith("boot "):
            return lines, True  # an older journal without a boot line: same boot as far as we know
        return lines[1:], lines[0][5:] == boot_id()

    def append(self, line: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(line + "\n")
            self._file.flush()
            self._lines += 1
        except OSError as exc:
            self._fail(exc)

    def rewrite(self, lines: Iterable[str]) -> None:
        """Replace the file with `lines` (atomically), then keep appending to it."""
        if self._file is not None:
            self._close_file()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            body = [f"boot {self.boot}", *lines]
            with atomic_write(self.path, fsync=False) as fh:  # rewritten often; appends are not synced either
                fh.write("".join(f"{line}\n" for line in body))
            self._file = open(self.path, "a")
            self._lines = len(body)
            self.outage.ended()
        except OSError as exc:
            self._file = None
            self._fail(exc)

    def due_for_compaction(self) -> bool:
        return self._lines >= COMPACT_EVERY or (self.degraded and self._lines % 100 == 0)

    @property
    def degraded(self) -> bool:
        """The disk refused the last write: the state lives in memory until a rewrite succeeds."""
        return self.outage.active

    def _fail(self, exc: OSError) -> None:
        self.outage.failed(exc)
        self._lines += 1  # so that a degraded journal retries its rewrite now and then

    def _close_file(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass
        self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._close_file()


def _key(a: str, b: str) -> Key | None:
    try:
        return int(a), int(b)
    except ValueError:
        return None


class DecisionJournal:
    """Open containers, decisions the writer has not acknowledged, recent decisions, totals.

    Lines: `open <seq> <t_gate_ns>`, `decided <seq> <t_gate_ns> <decision JSON>`,
    `acked <seq> <t_gate_ns>`, `totals <JSON>`. The totals (decided, passes, rejects by
    reason) are counted here as decisions are journalled, and written last at each
    compaction, so that a replay counts every decision exactly once across any restarts. A decision stays while the writer has not
    acknowledged it (it is re-sent) and while it is recent (a restarted reject controller
    is told again, so it can fire or alarm; see `recent`).
    """

    def __init__(self, path: Path, keep_recent_ns: int) -> None:
        self.file = LineJournal(path)
        self.keep_recent_ns = keep_recent_ns
        self.open: dict[Key, None] = {}
        self.decisions: OrderedDict[Key, dict] = OrderedDict()
        self.acked: set[Key] = set()
        self.totals: dict[str, Any] = {"decided": 0, "passes": 0, "rejects": {}}  # survive stage restarts
        self._replay(self.file.old_lines)
        self.same_boot = self.file.same_boot
        if not self.same_boot:  # monotonic times of another boot mean nothing now
            self._forget_clock()
        self.lost = list(self.open)  # open when the previous run ended: the caller rejects them
        self.open.clear()
        self.compact(None)

    def _replay(self, lines: list[str]) -> None:
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "totals":  # written last at a compaction: it counts every line above it
                try:
                    totals = json.loads(rest)
                except ValueError:
                    continue
                if isinstance(totals.get("rejects") if isinstance(totals, dict) else None, dict):
                    self.totals = {"decided": int(totals.get("decided", 0)), "passes": int(totals.get("passes", 0)),
                                   "rejects": dict(totals["rejects"])}
                continue
            fields = rest.split(" ", 2)
            key = _key(*fields[:2]) if len(fields) >= 2 else None
            if key is None:
                continue
            if kind == "open":
                self.open[key] = None
            elif kind == "decided" and len(fields) == 3:
                try:
                    decision = json.loads(fields[2])
                except ValueError:
                    continue
                if isinstance(decision, dict):
                    self.open.pop(key, None)
                    self.decisions[key] = decision
                    self._count(decision)
            elif kind == "acked":
                self.acked.add(key)

    def _forget_clock(self) -> None:
        """Keep what the writer still needs from another boot, with its monotonic times at 0:
        never recent, never scheduled. Open containers are decided at gate time 0."""
        decisions = OrderedDict()
        for (seq, _), decision in self.decisions.items():
            if (seq, decision.get("t_gate_ns")) in self.acked:
                continue
            decisions[(seq, 0)] = {**decision, "t_gate_ns": 0, "due_ns": 0, "decided_ns": 0}
        self.decisions, self.acked = decisions, set()
        self.open = dict.fromkeys((seq, 0) for seq, _ in self.open)

    # -- events --------------------------------------------------------------------------
    def opened(self, key: Key) -> None:
        self.open[key] = None
        self.file.append(f"open {key[0]} {key[1]}")

    def decided(self, decision: dict) -> None:
        key = (decision["seq"], decision["t_gate_ns"])
        self.open.pop(key, None)
        self.decisions[key] = decision
        self._count(decision)
        self.file.append(f"decided {key[0]} {key[1]} {json.dumps(decision, separators=(',', ':'))}")

    def _count(self, decision: dict) -> None:
        totals = self.totals
        totals["decided"] += 1
        if decision.get("decision") == "reject":
            reason = str(decision.get("reason"))
            totals["rejects"][reason] = totals["rejects"].get(reason, 0) + 1
        else:
            totals["passes"] += 1

    def count_from_zero(self) -> None:
        """A new run of the line counts its own containers; what it must still send is kept.
        Written at once: a stage killed before the next compaction must not replay the old totals."""
        self.totals = {"decided": 0, "passes": 0, "rejects": {}}
        self.compact(None)

    def ack(self, key: Key) -> bool:
        """The writer committed this container; False when it is not one we are waiting for."""
        if key not in self.decisions or key in self.acked:
            return False
        self.acked.add(key)
        self.file.append(f"acked {key[0]} {key[1]}")
        return True

    # -- queries -------------------------------------------------------------------------
    def unacked(self) -> list[dict]:
        return [d for k, d in self.decisions.items() if k not in self.acked]

    def recent(self, now_ns: int) -> list[dict]:
        """Decisions whose ejector time is at most keep_recent_ns ago (none from another boot)."""
        if not self.same_boot:
            return []
        return [d for d in self.decisions.values() if d.get("due_ns", 0) + self.keep_recent_ns >= now_ns]

    # -- housekeeping --------------------------------------------------------------------
    def compact(self, now_ns: int | None) -> None:
        """Forget acknowledged decisions that are no longer recent; rewrite the file."""
        if now_ns is not None:
            for key in [k for k, d in self.decisions.items()
                        if k in self.acked and d.get("due_ns", 0) + self.keep_recent_ns < now_ns]:
                del self.decisions[key]
                self.acked.discard(key)
        lines = [f"open {s} {t}" for s, t in self.open]
        lines += [f"decided {s} {t} {json.dumps(d, separators=(',', ':'))}" for (s, t), d in self.decisions.items()]
        lines += [f"acked {s} {t}" for s, t in self.acked]
        lines.append(f"totals {json.dumps(self.totals, separators=(',', ':'))}")  # last: counts all above
        self.file.rewrite(lines)

    def due_for_compaction(self) -> bool:
        return self.file.due_for_compaction()

    @property
    def degraded(self) -> bool:
        return self.file.degraded

    def close(self) -> None:
        self.compact(None)
        self.file.close()


class PulseJournal:
    """The reject controller's durable state: arms, decisions, fired pulses, raised alarms.

    Lines `<kind> <seq> <t_gate_ns> <due_ns> [<failsafe 0|1>]` with the kinds of
    pipeline/pulses.py. Events of containers whose ejector time is more than keep_ns past
    are dropped at compaction; a journal from another boot restores nothing.
    """

    def __init__(self, path: Path, keep_ns: int) -> None:
        self.file = LineJournal(path)
        self.keep_ns = keep_ns
        self.events: list[tuple[str, Key, int, bool]] = []
        if self.file.same_boot:
            for line in self.file.old_lines:
                event = _pulse_event(line)
                if event is not None:
                    self.events.append(event)
        self.file.rewrite(map(_pulse_line, self.events))

    def add(self, kind: str, key: Key, due_ns: int, failsafe: bool = False) -> None:
        event = (kind, key, due_ns, failsafe)
        self.events.append(event)
        self.file.append(_pulse_line(event))

    def compact_if_due(self, now_ns: int) -> None:
        if self.file.due_for_compaction():
            self.events = [e for e in self.events if e[2] + self.keep_ns >= now_ns]
            self.file.rewrite(map(_pulse_line, self.events))

    @property
    def degraded(self) -> bool:
        return self.file.degraded

    def close(self) -> None:
        self.file.close()


def _pulse_line(event: tuple[str, Key, int, bool]) -> str:
    kind, (seq, t_gate_ns), due_ns, failsafe = event
    return f"{kind} {seq} {t_gate_ns} {due_ns} {int(failsafe)}"


def _pulse_event(line: str) -> tuple[str, Key, int, bool] | None:
    parts = line.split()
    if len(parts) != 5:
        return None
    try:
        seq, t_gate_ns, due_ns, failsafe = map(int, parts[1:])
    except ValueError:
        return None
    return parts[0], (seq, t_gate_ns), due_ns, bool(failsafe)


class GateLog:
    """The station's record of every gate event (`<seq> <t_gate_ns>` per line).

    Written before the decision stage is told, so a decision stage that died with gate
    messages unread in its socket finds those containers here when it restarts. Keeps
    the last KEEP lines.
    """

    KEEP = 2_000

    def __init__(self, path: Path) -> None:
        self.file = LineJournal(path)
        self.recent = [line for line in self.file.old_lines if _gate(line) is not None][-self.KEEP:]
        self.file.rewrite(self.recent)

    def add(self, seq: int, t_gate_ns: int) -> None:
        line = f"{seq} {t_gate_ns}"
        self.recent.append(line)
        self.file.append(line)
        if len(self.recent) >= 2 * self.KEEP:
            self.recent = self.recent[-self.KEEP:]
            self.file.rewrite(self.recent)

    @property
    def last_seq(self) -> int:
        """The highest container number logged (-1 when none)."""
        return max((key[0] for key in map(_gate, self.recent) if key is not None), default=-1)

    @staticmethod
    def read(path: Path) -> list[Key]:
        """The gates of this boot (without touching the file: the station owns it)."""
        journal_lines, same_boot = LineJournal.peek(path)
        if not same_boot:
            return []
        return [k for k in map(_gate, journal_lines) if k is not None]

    def close(self) -> None:
        self.file.close()


def _gate(line: str) -> Key | None:
    parts = line.split()
    return _key(*parts) if len(parts) == 2 else None
