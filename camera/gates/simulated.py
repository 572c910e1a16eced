"""A gate that fires at the line speed: the default with nothing attached, and for benches."""

from __future__ import annotations

import time

from camera.gates.base import Gate, GateEvent, register


@register
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
        return event

    def close(self) -> None:
        """Nothing to release."""
