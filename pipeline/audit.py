"""The reject controller's audit journal, <data_dir>/relay/outputs.jsonl: one JSON line per
output and alarm, for people and tools (edge/ui/tally.py reads it as it grows), rotated.

A line is on the disk whole or not at all: a write the disk cut short is taken back, so a
reader never meets half a line followed by the next one. Lines a full disk refused wait in
memory (the newest HELD_LINES) and go out in order with the first line that fits; the
ALARM that says so is logged once per outage.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
from collections import deque
from pathlib import Path

from storage.files import Outage

log = logging.getLogger(__name__)

MAX_BYTES, BACKUPS = 10 << 20, 5
HELD_LINES = 10_000  # about 1.5 MB: hours of rejects at line speed


class WholeLines(logging.handlers.RotatingFileHandler):
    """A rotating file handler that writes each record with one write() and holds back what
    the disk refuses."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, delay=True)
        self.held: deque[bytes] = deque(maxlen=HELD_LINES)
        self.dropped = 0
        self.outage = Outage(Path(self.baseFilename), "its lines wait in memory until the disk has room", log)

    def _open(self):
        return open(self.baseFilename, "ab", buffering=0)

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.held) == self.held.maxlen:
            self.dropped += 1
        self.held.append((self.format(record) + "\n").encode())
        try:
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None:
                self.stream = self._open()
            while self.held:
                self._write_whole(self.held[0])
                self.held.popleft()
        except OSError as exc:
            self.outage.failed(exc)
            return
        self.outage.ended(f" ({self.dropped} lines that waited were lost)")
        self.dropped = 0

    def _write_whole(self, line: bytes) -> None:
        fd = self.stream.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        if os.write(fd, line) < len(line):
            os.ftruncate(fd, end)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def audit_logger(data_dir: Path) -> logging.Logger:
    """The logger whose INFO records are the journal's lines (messages are the JSON)."""
    folder = Path(data_dir) / "relay"
    folder.mkdir(parents=True, exist_ok=True)
    audit = logging.getLogger("edge.relay.journal")
    audit.propagate = False
    audit.setLevel(logging.INFO)
    audit.handlers.clear()
    handler = WholeLines(folder / "outputs.jsonl")
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit.addHandler(handler)
    return audit
