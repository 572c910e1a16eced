"""A gate that fires at the line speed: the default with nothing attached, and for benches.

With `line.machine` (sections x cavities) each container also gets its mould, delivered
round-robin as from a real IS machine (storage/moulds.py), so a demo line has cavities.
"""

from __future__ import annotations

import time
from dataclasses import replace

from camera.gates.base import Gate, GateEvent
from storage.moulds import delivered


class SimulatedGate(Gate):
    driver = "simulated"

    def open(self) -> None:
        self._period_ns = int(60e9 / self.line.speed_cpm)
        self._next_ns = time.monotonic_ns()

    def wait(self, timeout_s: float) -> GateEvent | None:
        """Events carry their scheduled time, so a late caller does not shift the line's rhythm."""
        delay = (self._next_ns - time.monotonic_ns()) / 1e9
        if delay > timeout_s:
            time.sleep(timeout_s)
            return None
        if delay > 0:
            time.sleep(delay)
        event = self.sequencer.edge(self._next_ns)
        self._next_ns += self._period_ns
        machine = self.line.machine
        if event is not None and machine is not None:
            mould = delivered(event.seq, machine.sections, machine.cavities)
            event = replace(event, section=mould.section, cavity=mould.cavity)
        return event

    def close(self) -> None:
        """Nothing to release."""
