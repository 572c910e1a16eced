"""A PLC or microcontroller announces each container as one text line on a serial port.

A line's first integer, when it has one, is the container's sequence number: the gate
then uses the PLC's numbering (so records match the PLC's shift register) and counts
numbers that were skipped or repeated. A line without a number is one more container.
With `message:` (e.g. `{seq} {section} {cavity}`, camera/gates/template.py) the line is
read by that template instead, and a mould number reader's section and cavity travel
with the container; a line that does not fit is still a container (its mould unknown),
logged and counted (`malformed`).
"""

from __future__ import annotations

import logging
import re
import time

from camera.gates.base import Gate, GateEvent
from camera.gates.serial_port import open_port
from camera.gates.template import LineTemplate

log = logging.getLogger(__name__)
NUMBER = re.compile(rb"-?\d+")


class SerialLinesGate(Gate):
    driver = "serial_lines"

    def open(self) -> None:
        self.template = LineTemplate(self.config.message) if self.config.message else None
        if self.template is not None:
            self.sequencer.counts.setdefault("malformed", 0)
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
        text = line.decode(errors="replace")
        if self.template is None:
            number = NUMBER.search(line)
            return self.sequencer.edge(self._t_read, int(number.group()) if number else None, text)
        fields = self.template.parse(text)
        if fields is None:
            self.sequencer.counts["malformed"] += 1
            log.warning("gate: %r does not fit gate.message %r; a container without its mould",
                        text[:80], self.template.template)
            fields = {}
        section, cavity = _mould_number(fields.get("section")), _mould_number(fields.get("cavity"))
        if section is None or cavity is None:  # a reader that could not read says 0
            section = cavity = None
        return self.sequencer.edge(self._t_read, fields.get("seq"), text, section=section, cavity=cavity)

    def close(self) -> None:
        port = getattr(self, "port", None)
        if port is not None:
            port.close()


def _mould_number(value: int | None) -> int | None:
    """A section or cavity number 1-99; anything else (0: not read) is unknown."""
    return value if value is not None and 1 <= value <= 99 else None
