"""The sensor on a modem-status input (CTS, DSR or CD) of a USB-serial adapter.

The cheapest industrial input a PC has: an NPN/PNP sensor through an optocoupler onto
CTS. The level is polled every `poll_ms` (pyserial has no portable wait-for-modem-line);
the edge's timestamp is the poll that saw it, so `poll_ms` bounds the timing jitter.
A pulse shorter than a poll would go unseen: where the serial driver keeps interrupt
counters (Linux TIOCGICOUNT, e.g. ftdi_sio), the gate compares them with the edges it
saw and counts such pulses as missed containers instead of losing them silently.
"""

from __future__ import annotations

import fcntl
import struct
import time

from camera.gates.base import Gate, GateEvent
from camera.gates.serial_port import open_port

ATTRIBUTES = {"cts": "cts", "dsr": "dsr", "cd": "cd"}
TIOCGICOUNT = 0x545D  # Linux: struct serial_icounter_struct, 20 ints: cts, dsr, rng, dcd, ...
ICOUNT_FIELD = {"cts": 0, "dsr": 1, "cd": 3}


class SerialModemGate(Gate):
    driver = "serial_modem"

    def open(self) -> None:
        self.port = open_port(self.config.port, timeout=0)
        self._attr = ATTRIBUTES[self.config.line]
        self._active = self.config.edge == "rising"
        self._level = self._read()
        self._transitions = self._icount()  # None where the driver keeps no counters (pty, loop://)
        self._unseen = 0

    def _read(self) -> bool:
        return bool(getattr(self.port, self._attr))

    def _icount(self) -> int | None:
        fd = getattr(self.port, "fd", None)
        if fd is None:
            return None
        try:
            counters = fcntl.ioctl(fd, TIOCGICOUNT, bytes(80))
        except OSError:
            return None
        return struct.unpack("20i", counters)[ICOUNT_FIELD[self.config.line]]

    def _check_unseen(self, seen: int) -> None:
        """Transitions the driver counted beyond the `seen` ones: two per pulse no poll caught.

        A running balance absorbs a transition that lands between reading the level and
        the counter; unseen transitions right after an accepted edge are bounces.
        """
        if self._transitions is None:
            return
        now = self._icount()
        if now is None:
            return
        self._unseen += now - self._transitions - seen
        self._transitions = now
        if self._unseen >= 2:
            pulses, self._unseen = self._unseen // 2, self._unseen % 2
            if self.sequencer.in_debounce(time.monotonic_ns()):
                self.sequencer.counts["bounces"] += pulses
            else:
                self.sequencer.skipped(pulses)

    def wait(self, timeout_s: float) -> GateEvent | None:
        end = time.monotonic() + timeout_s
        poll_s = self.config.poll_ms / 1e3
        while True:
            level = self._read()
            self._check_unseen(int(level != self._level))
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
