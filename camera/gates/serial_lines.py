"""A PLC or microcontroller announces each container as one text line on a serial port.

A line's first integer, when it has one, is the container's sequence number: the gate
then uses the PLC's numbering (so records match the PLC's shift register) and counts
numbers that were skipped or repeated. A line without a number is one more container.
"""

from __future__ import annotations

import re
import time

from camera.gates.base import Gate, GateEvent, register
from camera.gates.serial_port import open_port

NUMBER = re.compile(rb"-?\d+")


@register
class SerialLinesGate(Gate):
    driver = "serial_lines"

    def open(self) -> None:
        self.port = open_port(self.config.port, baudrate=self.config.baudrate, timeout=0)
        self._buffer = b""
        self._t_read = time.monotonic_ns()

    def wait(self, timeout_s: float) -> GateEvent | None:
        end = time.monotonic() + timeout_s
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                event = self._line(line.strip())
                if event is not None:
                    return event
            remaining = end - time.monotonic()
            if remaining <= 0:
                return None
            self.port.timeout = remaining
            data = self.port.read(max(1, self.port.in_waiting))
            if data:
                self._t_read = time.monotonic_ns()  # a line is stamped when its newline arrived
                self._buffer += data

    def _line(self, line: bytes) -> GateEvent | None:
        if not line:
            return None
        number = NUMBER.search(line)
        source_seq = int(number.group()) if number else None
        return self.sequencer.edge(self._t_read, source_seq, line.decode(errors="replace"))

    def close(self) -> None:
        port = getattr(self, "port", None)
        if port is not None:
            port.close()
