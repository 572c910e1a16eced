"""The decision stage's journal: which containers are open, so a crash cannot lose them.

One line per event, `open <seq> <t_gate_ns>` and `done <seq> <t_gate_ns>`, appended and
flushed to the OS (a process crash keeps what the page cache holds). A restarted decision
stage reads it and rejects, fail-safe, every container that was open when it died: it
is decided, stored and (if still before the ejector) pulsed, never silently lost.
"""

from __future__ import annotations

import os
from pathlib import Path

COMPACT_EVERY = 10_000


class DecisionJournal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.open: dict[tuple[int, int], None] = {}
        self.lost = self._read()
        self._lines = 0
        self._rewrite()

    def _read(self) -> list[tuple[int, int]]:
        """Containers opened and never decided by the previous run."""
        state: dict[tuple[int, int], None] = {}
        try:
            text = self.path.read_text()
        except OSError:
            return []
        lines = text.split("\n")[:-1]  # the part after the last newline was torn by the crash
        for line in lines:
            parts = line.split()
            if len(parts) != 3 or not parts[1].lstrip("-").isdigit() or not parts[2].isdigit():
                continue
            key = (int(parts[1]), int(parts[2]))
            if parts[0] == "open":
                state[key] = None
            elif parts[0] == "done":
                state.pop(key, None)
        return list(state)

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"open {s} {t}\n" for s, t in self.open))
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", buffering=1)
        self._lines = len(self.open)

    def opened(self, seq: int, t_gate_ns: int) -> None:
        self.open[(seq, t_gate_ns)] = None
        self._write(f"open {seq} {t_gate_ns}\n")

    def done(self, seq: int, t_gate_ns: int) -> None:
        self.open.pop((seq, t_gate_ns), None)
        self._write(f"done {seq} {t_gate_ns}\n")
        if self._lines >= COMPACT_EVERY:
            self._file.close()
            self._rewrite()

    def _write(self, line: str) -> None:
        self._file.write(line)
        self._lines += 1

    def close(self) -> None:
        self._file.close()
