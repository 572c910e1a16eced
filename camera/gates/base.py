"""The Gate interface, the event it yields, and the debounce/sequence bookkeeping all gates share.

A gate turns a sensor signal into numbered container events with a monotonic timestamp.
Bounces (edges closer than `debounce_ms` to the last accepted one) are dropped and
counted; a source that numbers its containers (a PLC) also reveals missed and repeated
events, which are counted rather than hidden.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from camera.errors import CameraError
from storage.plugins import Plugins

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateEvent:
    seq: int  # container sequence number
    t_ns: int  # monotonic clock of the edge (or of the line's arrival)
    raw: str | None = None  # the text a PLC sent, when it sent one
    section: int | None = None  # the mould that made it (storage/moulds.py), when the line reads it
    cavity: int | None = None


class Sequencer:
    """Debounce and number edges; counts bounces, missed and duplicate container numbers."""

    def __init__(self, debounce_ms: float, first_seq: int = 1) -> None:
        self._debounce_ns = int(debounce_ms * 1e6)
        self._next = first_seq
        self._last_t: int | None = None
        self._last_source: int | None = None
        self.counts = {"events": 0, "bounces": 0, "missed": 0, "duplicates": 0}

    def edge(self, t_ns: int, source_seq: int | None = None, raw: str | None = None,
             section: int | None = None, cavity: int | None = None) -> GateEvent | None:
        """The event for an edge at `t_ns`, or None when it is a bounce or a repeated number."""
        if source_seq is None:
            if self._last_t is not None and t_ns - self._last_t < self._debounce_ns:
                self.counts["bounces"] += 1
                return None
            seq = self._next
        else:
            if self._last_source is not None:
                gap = source_seq - self._last_source
                if gap <= 0:
                    self.counts["duplicates"] += 1
                    log.warning("gate: container %d announced again after %d; ignored",
                                source_seq, self._last_source)
                    return None
                if gap > 1:
                    self.counts["missed"] += gap - 1
                    log.warning("gate: %d container number(s) skipped between %d and %d",
                                gap - 1, self._last_source, source_seq)
            self._last_source = seq = source_seq
        self._last_t = t_ns
        self._next = seq + 1
        self.counts["events"] += 1
        return GateEvent(seq=seq, t_ns=t_ns, raw=raw, section=section, cavity=cavity)


    def in_debounce(self, t_ns: int) -> bool:
        return self._last_t is not None and t_ns - self._last_t < self._debounce_ns

    def skipped(self, count: int) -> None:
        """`count` containers passed unseen (the port's edge counter says so): number past them."""
        self.counts["missed"] += count
        self._next += count
        log.warning("gate: %d edge(s) happened between two polls and were not seen", count)


class Gate(ABC):
    driver: ClassVar[str]

    def __init__(self, config, line) -> None:
        self.config = config
        self.line = line
        self.sequencer = Sequencer(config.debounce_ms)

    @abstractmethod
    def open(self) -> None:
        """Open the port; CameraError naming the port when it cannot be opened."""

    @abstractmethod
    def wait(self, timeout_s: float) -> GateEvent | None:
        """The next container event, or None when none came within `timeout_s`."""

    @abstractmethod
    def close(self) -> None:
        """Release the port; safe to call twice."""

    def stats(self) -> dict:
        return dict(self.sequencer.counts)

    def __enter__(self) -> "Gate":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


GATES: Plugins[Gate] = Plugins("gate driver", {
    "simulated": "camera.gates.simulated:SimulatedGate",
    "serial_modem": "camera.gates.serial_modem:SerialModemGate",
    "serial_lines": "camera.gates.serial_lines:SerialLinesGate",
}, CameraError, install="pip install pyserial")


def build_gate(config, line) -> Gate:
    """The gate driver for the `gate:` config section (not opened yet)."""
    return GATES.load(config.driver)(config, line)
