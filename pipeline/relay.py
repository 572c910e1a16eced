"""Reject outputs over pyserial: a PC-timed relay pulse, or one line per container to a PLC.

Both are behind one interface (TimedRelayOutput, PlcOutput): `arm`, `decide`,
`next_time`, `tick`, `pending`, `busy`, `too_late`, `close`; the reject-controller stage drives
either. A PLC can be sent a heartbeat (`heartbeat_ms`) so that its own program rejects
everything when the PC goes silent: the hardware fail-safe that covers a dead PC.

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
from pipeline.pulses import Key, Pulse, PulseSchedule
from storage.files import atomic_write
from storage.plugins import Plugins

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


def plc_line(template: str, seq: int, decision: str, reason: str, section: int | None = None,
             cavity: int | None = None) -> bytes:
    """The PLC's line for one container; an unknown mould is echoed as section 0, cavity 0."""
    return template.format(seq=seq, decision=decision.upper(), reason=reason, section=section or 0,
                           cavity=cavity or 0).encode()


SENT = "sent"  # what PlcOutput.decide returns: the PLC was told


class TimedRelayOutput:
    """The PC times the ejector: a pulse at each due time of a PulseSchedule (pipeline/pulses.py).

    `tick()` is called by the stage at next_time(): it closes the relay for the earliest
    pulse (an overlapping pulse stretches the one that is on) or opens it at the end.
    """

    timed = True

    def __init__(self, config, dev, schedule: PulseSchedule) -> None:
        self.relay = Relay(config, dev)
        self.schedule = schedule
        self.pulse_ns = int(config.pulse_ms * 1e6)
        self.closed_until = 0  # the relay is on until then (0: off)
        self.too_late: list[Pulse] = []  # due pulses not fired: later than the lead allows

    def arm(self, key: Key, due_ns: int, now_ns: int) -> bool:
        return self.schedule.arm(key, due_ns, now_ns)

    def decide(self, key: Key, decision: str, reason: str, due_ns: int, now_ns: int,
               section: int | None = None, cavity: int | None = None) -> str:
        return self.schedule.decide(key, decision, due_ns, now_ns)

    def next_time(self) -> int | None:
        times = [t for t in (self.schedule.next_due(), self.closed_until or None) if t is not None]
        return min(times, default=None)

    def tick(self, now_ns: int) -> Pulse | None:
        due = self.schedule.next_due()
        if self.closed_until and (due is None or self.closed_until < due):
            self.relay.set(False)
            self.closed_until = 0
            return None
        pulse = self.schedule.pop()
        if now_ns - pulse.due_ns > self.schedule.lead_ns:  # its container has passed the ejector
            self.too_late.append(pulse)  # (a restarted controller came up after its time)
            return None
        if not self.closed_until:
            self.relay.set(True)
        self.closed_until = now_ns + self.pulse_ns
        return pulse

    def pending(self) -> int:
        return len(self.schedule)

    def busy(self) -> bool:
        """Pulses to fire or a relay to open: the stage does not exit before."""
        return bool(len(self.schedule) or self.closed_until)

    def close(self) -> None:
        self.relay.set(False)


class PlcOutput:
    """A PLC times its own ejector (shift register, encoder): told each decision at once."""

    timed = False

    def __init__(self, config, dev, schedule: PulseSchedule | None = None) -> None:
        """`schedule` (what a restarted controller restored) is not used: the PLC keeps its own."""
        self.dev = dev
        self.template = config.message
        self.last_line = b""
        self.too_late: list[Pulse] = []  # never: the PLC times the ejector
        # Hardware fail-safe: a PLC that rejects everything once the heartbeat stops covers a
        # dead or hung PC, which no software on the PC can.
        self.heartbeat_ns = int(config.heartbeat_ms * 1e6)
        self.heartbeat = config.heartbeat.encode()
        self.next_beat = 0 if self.heartbeat_ns else None

    def arm(self, key: Key, due_ns: int, now_ns: int) -> bool:
        return False  # the PLC rejects what it is not told to pass, if it is wired that way

    def decide(self, key: Key, decision: str, reason: str, due_ns: int, now_ns: int,
               section: int | None = None, cavity: int | None = None) -> str:
        self.last_line = plc_line(self.template, key[0], decision, reason, section, cavity)
        self.dev.write(self.last_line)
        self.dev.flush()
        return SENT

    def next_time(self) -> int | None:
        return self.next_beat

    def tick(self, now_ns: int) -> Pulse | None:
        self.dev.write(self.heartbeat)
        self.dev.flush()
        self.next_beat = now_ns + self.heartbeat_ns
        return None

    def pending(self) -> int:
        return 0

    def busy(self) -> bool:
        return False

    def close(self) -> None:
        pass


def write_name(data_dir: Path, what: str, dev) -> None:
    """Tell tools where a pseudo-terminal is (its name changes at every start). Atomically; on a
    full disk in place, in the block the file already has; failing that tools are not told,
    and the output works all the same."""
    if isinstance(dev, PtyPort):
        path = Path(data_dir) / "run" / f"{what}.pty"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, fsync=False) as fh:
                fh.write(dev.name)
        except OSError:
            try:
                path.write_text(dev.name)
            except OSError as exc:
                log.error("ALARM: cannot write %s (%s): tools cannot find this %s terminal", path, exc, what)


# reject.driver -> output; both are built as cls(reject config, serial port, restored schedule).
OUTPUTS: Plugins[TimedRelayOutput | PlcOutput] = Plugins("reject output", {
    "relay": "pipeline.relay:TimedRelayOutput",
    "plc": "pipeline.relay:PlcOutput",
}, PipelineError)
