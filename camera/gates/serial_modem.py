"""The sensor on a modem-status input (CTS, DSR or CD) of a USB-serial adapter.

The cheapest industrial input a PC has: an NPN/PNP sensor through an optocoupler onto
CTS. The level is polled every `poll_ms` (pyserial has no portable wait-for-modem-line);
the edge's timestamp is the poll that saw it, so `poll_ms` bounds the timing jitter.
"""

from __future__ import annotations

import time

from camera.gates.base import Gate, GateEvent, register
from camera.gates.serial_port import open_port

ATTRIBUTES = {"cts": "cts", "dsr": "dsr", "cd": "cd"}


@register
class SerialModemGate(Gate):
    driver = "serial_modem"

    def open(self) -> None:
        self.port = open_port(self.config.port, timeout=0)
        self._attr = ATTRIBUTES[self.config.line]
        self._active = self.config.edge == "rising"
        self._level = self._read()

    def _read(self) -> bool:
        return bool(getattr(self.port, self._attr))

    def wait(self, timeout_s: float) -> GateEvent | None:
        end = time.monotonic() + timeout_s
        poll_s = self.config.poll_ms / 1e3
        while True:
            level = self._read()
            if level != self._level:
                self._level = level
                if level == self._active:
                    event = self.sequencer.edge(time.monotonic_ns())
                    if event is not None:
                        return event
            if time.monotonic() >= end:
                return None
            time.sleep(poll_s)

    def close(self) -> None:
        port = getattr(self, "port", None)
        if port is not None:
            port.close()
