"""systemd's notify protocol in pure Python: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1,
EXTEND_TIMEOUT_USEC=....

Messages are datagrams to the Unix socket named by $NOTIFY_SOCKET (a leading '@' is the
abstract namespace). Outside systemd the variable is absent and every call is a no-op,
so `edge run` behaves the same in a terminal.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET")
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def watchdog_interval(self) -> float | None:
        """Seconds between pings: a quarter of WatchdogSec (sd_watchdog_enabled() advises at
        least half), so that a busy loop turn or a stage restart never brings the gap near
        the limit; bench/soak.py measures the longest gap."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and int(pid) != os.getpid()):
            return None
        return int(usec) / 4e6

    def notify(self, *fields: str) -> bool:
        if not self.address:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)  # a listener that does not read must never stall the line
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError:
            return False

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more from now before systemd's start (or stop) timeout fires.

        A TensorRT engine build at start can outlast TimeoutStartSec: send this
        repeatedly, well before the previous extension runs out, while a stage is still
        starting. It only ever lengthens the unit's timeout, never shortens it.
        """
        self.notify(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}")

    def stopping(self, status: str) -> None:
        self.notify("STOPPING=1", f"STATUS={status}")
