"""Reject outputs over pyserial: a PC-timed relay pulse, or one line per container to a PLC.

Timed relay: the pulse starts when the container reaches the ejector (t_gate +
travel_time, on the monotonic clock the gate stamped) and lasts `pulse_ms`. It is
sent as command bytes (USB relay boards such as LCUS-1) or by raising RTS or DTR.
PLC: the decision for container n is sent at once as a text line; the PLC's shift
register times the ejector (lines with varying speed track containers by encoder).

port "pty" opens a pseudo-terminal pair instead of hardware: the relay writes to the
master side, and the slave's name (logged, and written to <data_dir>/run/relay.pty)
is where a test or a curious engineer reads the pulses. A port that cannot be opened
raises PipelineError: the line must not start believing it can reject.
"""

from __future__ import annotations

import errno
import logging
import os
import termios
import tty
from pathlib import Path

import serial

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


class PtyPort:
    """The writing end of a pseudo-terminal pair, with pyserial's write()/flush() shape."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.name = os.ttyname(self.slave)
        self.overflows = 0

    def write(self, data: bytes) -> int:
        try:
            return os.write(self.master, data)
        except BlockingIOError:
            # Nobody reads the other side and its buffer is full: discard what waits there.
            self.overflows += 1
            termios.tcflush(self.slave, termios.TCIFLUSH)
            return os.write(self.master, data)

    def read_lines(self) -> list[bytes]:
        """Lines written to the slave side (a confirm sensor emulated on a pty)."""
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return []
        return [line for line in data.splitlines() if line.strip()]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def open_port(port: str, baudrate: int, low_latency: bool, what: str):
    """Open a serial device (or a pty pair); PipelineError naming the config key on failure."""
    if port == "pty":
        pty = PtyPort()
        log.info("%s on pseudo-terminal %s (no hardware)", what, pty.name)
        return pty
    try:
        dev = serial.serial_for_url(port, baudrate=baudrate, timeout=0, write_timeout=0.05)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise PipelineError(f"reject.{what}: cannot open {port!r} ({exc}); check the cable, the "
                            "device name and that this user is in the dialout group") from None
    if low_latency and hasattr(dev, "set_low_latency_mode"):
        try:
            dev.set_low_latency_mode(True)
            log.info("%s: %s in low-latency mode", what, port)
        except (OSError, ValueError, NotImplementedError) as exc:
            log.info("%s: %s does not support low-latency mode (%s)", what, port, exc)
    return dev


class Relay:
    """Closes and opens the ejector relay: command bytes, or the RTS / DTR line."""

    def __init__(self, config, dev) -> None:
        self.method = config.method
        self.dev = dev
        self.on_bytes = bytes.fromhex(config.on_bytes)
        self.off_bytes = bytes.fromhex(config.off_bytes)
        if self.method != "bytes" and isinstance(dev, PtyPort):
            raise PipelineError(f"reject.method = {self.method}: a pseudo-terminal has no RTS/DTR lines; "
                                "use method: bytes with port: pty, or a real serial port")
        self.set(False)  # a known state after a power cycle: never fire unexpectedly

    def set(self, closed: bool) -> None:
        try:
            if self.method == "bytes":
                self.dev.write(self.on_bytes if closed else self.off_bytes)
                self.dev.flush()
            elif self.method == "rts":
                self.dev.rts = closed
            else:
                self.dev.dtr = closed
        except (serial.SerialException, OSError) as exc:
            if getattr(exc, "errno", None) == errno.EIO:
                raise PipelineError(f"reject relay: the serial device went away ({exc})") from None
            raise


def plc_line(template: str, seq: int, decision: str, reason: str) -> bytes:
    return template.format(seq=seq, decision=decision.upper(), reason=reason).encode()


def write_name(data_dir: Path, what: str, dev) -> None:
    """Tell tools where a pseudo-terminal is (its name changes at every start)."""
    if isinstance(dev, PtyPort):
        path = Path(data_dir) / "run" / f"{what}.pty"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dev.name)
