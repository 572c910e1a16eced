"""When the timed relay pulses: "default to reject" for every container the gate saw.

The decision stage arms a pulse for each container at its gate event (with
`line.late_result: reject`). A timely pass cancels it; a reject keeps it. A container
whose decision has not reached the reject controller when it arrives at the ejector is
ejected anyway: the fail-safe no longer depends on a starved decision stage getting its
late reject across in the `relay_lead_ms` margin. Containers that were never armed
(`late_result: pass`, or armed before a restart of this process) are pulsed only on a
reject that arrives in time, as before.

A restarted reject controller rebuilds its schedule from its journal (`restore`): pulses
still ahead fire on time; those whose ejector time passed while no controller was up are
returned, so the stage raises an alarm naming each container instead of staying silent.

Pure logic on monotonic nanoseconds, no sockets and no clock: the reject-controller
stage feeds it, tests drive it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from storage.bounded import BoundedSet

REMEMBER = 100_000  # decided containers remembered (a second decision or a late arm is ignored)

Key = tuple[int, int]  # (seq, t_gate_ns): what the decision stage keys containers by

# What a decision did (PulseSchedule.decide):
SCHEDULED = "scheduled"        # a reject: its pulse is (or stays) due
CANCELLED = "cancelled"        # a pass cancelled the armed pulse, or nothing was armed
MISSED = "missed"              # a reject after its container passed the ejector: not fired
OVERRULED = "overruled"        # a pass after the fail-safe pulse had already ejected it
ALREADY_FIRED = "already fired"  # a reject after the fail-safe pulse: the container is out


# What the reject controller journals (pipeline/journal.PulseJournal), and `restore` reads back.
ARM, PASS, REJECT, FIRED, ALARMED = "arm", "pass", "reject", "fired", "alarmed"


@dataclass(frozen=True)
class Pulse:
    due_ns: int
    key: Key
    failsafe: bool  # fired with no decision in: the container was not inspected in time


class PulseSchedule:
    def __init__(self, lead_ns: int) -> None:
        self.lead_ns = lead_ns  # how late past due a pulse may still start
        self._heap: list[tuple[int, int, Key]] = []  # (due_ns, order, key)
        self._order = 0
        self._armed: dict[Key, int] = {}  # armed, not decided yet: key -> order
        self._cancelled: set[int] = set()
        self._decided: BoundedSet[Key, None] = BoundedSet(REMEMBER)
        self._failsafe: BoundedSet[Key, None] = BoundedSet(REMEMBER)

    def arm(self, key: Key, due_ns: int, now_ns: int) -> bool:
        """Pulse at due unless a pass comes first. False when already armed, decided or past."""
        if key in self._armed or key in self._decided or now_ns > due_ns + self.lead_ns:
            return False
        self._armed[key] = self._push(due_ns, key)
        return True

    def decide(self, key: Key, decision: str, due_ns: int, now_ns: int) -> str:
        """One decision per container (the stage drops duplicates before they get here)."""
        self._decided.add(key)
        if key in self._failsafe:
            return OVERRULED if decision == "pass" else ALREADY_FIRED
        order = self._armed.pop(key, None)
        if decision != "reject":
            if order is not None:
                self._cancelled.add(order)
            return CANCELLED
        if order is not None:
            return SCHEDULED
        if now_ns > due_ns + self.lead_ns:
            return MISSED
        self._push(due_ns, key)
        return SCHEDULED

    def next_due(self) -> int | None:
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    def pop(self) -> Pulse:
        """The earliest pulse (call when next_due() has come)."""
        self._drop_cancelled()
        due, order, key = heapq.heappop(self._heap)
        failsafe = self._armed.pop(key, None) == order
        if failsafe:
            self._failsafe.add(key)
        return Pulse(due, key, failsafe)

    def __len__(self) -> int:
        return len(self._heap) - len(self._cancelled)

    @classmethod
    def restore(cls, lead_ns: int, events: Iterable[tuple[str, Key, int, bool]], now_ns: int) -> "Restored":
        """Rebuild the schedule a killed controller had, from its journal's events
        (kind, key, due_ns, failsafe) in the order they happened."""
        armed: dict[Key, int] = {}
        decided: dict[Key, tuple[str, int]] = {}
        fired: dict[Key, bool] = {}
        alarmed: set[Key] = set()
        for kind, key, due, failsafe in events:
            if kind == ARM:
                armed[key] = due
            elif kind in (PASS, REJECT):
                decided[key] = (kind, due)
            elif kind == FIRED:
                fired[key] = failsafe
            elif kind == ALARMED:
                alarmed.add(key)
        out = Restored(cls(lead_ns))
        schedule = out.schedule
        for key, failsafe in fired.items():
            (schedule._failsafe if failsafe else schedule._decided).add(key)
        for key, (decision, due) in decided.items():
            schedule._decided.add(key)
            out.seen.add(key)
            if decision == REJECT and key not in fired and key not in alarmed:
                if now_ns > due + lead_ns:
                    out.missed.append((key, due))
                else:
                    schedule._push(due, key)
        for key, due in armed.items():
            if key in decided or key in fired or key in alarmed:
                continue
            if now_ns > due + lead_ns:
                out.overdue[key] = due  # its decision may still come (the decision stage re-sends)
            else:
                schedule._armed[key] = schedule._push(due, key)
        return out

    def _push(self, due_ns: int, key: Key) -> int:
        self._order += 1
        heapq.heappush(self._heap, (due_ns, self._order, key))
        return self._order

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(self._heap)[1])


@dataclass
class Restored:
    """A reject controller's state after a restart."""

    schedule: PulseSchedule
    seen: BoundedSet[Key, None] = field(default_factory=lambda: BoundedSet(REMEMBER))  # decisions handled
    missed: list[tuple[Key, int]] = field(default_factory=list)  # rejects whose ejector time passed unfired
    overdue: dict[Key, int] = field(default_factory=dict)  # armed, undecided, ejector time passed
