"""Moulds taken out of production: every container they make is rejected (reason `mould`).

Two sources, united: config.yaml's `line.reject_moulds` (a mould known bad for weeks)
and `<data_dir>/mould_rejects.json`, which `edge mould reject|release SECTION-CAVITY`
writes while the line runs (a mould being swabbed). The decision stage calls
`current()` about once a second; it re-reads the file only when its modification time
or size changed. A file that cannot be read or parsed keeps the last good list (logged
once): a typo must never let a bad mould's containers through.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from storage.files import atomic_write
from storage.moulds import parse_mould

log = logging.getLogger(__name__)

FILE_NAME = "mould_rejects.json"


def rejects_path(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def read_file(path: Path) -> dict[str, dict]:
    """{mould: {"since": ISO time, "by": who}} from the file; {} when there is none."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    moulds = raw.get("reject") if isinstance(raw, dict) else None
    if not isinstance(moulds, dict):
        raise ValueError(f"{path}: expected {{\"reject\": {{\"3-1\": {{...}}}}}}")
    return {str(parse_mould(name)): dict(info or {}) for name, info in moulds.items()}


def write_file(path: Path, moulds: dict[str, dict]) -> None:
    """Atomically (the decision stage may read at any moment)."""
    with atomic_write(path, fsync=False) as fh:
        fh.write(json.dumps({"reject": dict(sorted(moulds.items()))}, indent=2) + "\n")


def change(data_dir: Path, mould: str, reject: bool, by: str) -> dict[str, dict]:
    """Add (reject) or remove (release) one mould in the file; return the file's moulds."""
    path = rejects_path(data_dir)
    moulds = read_file(path)
    name = str(parse_mould(mould))
    if reject:
        moulds.setdefault(name, {"since": datetime.now(timezone.utc).isoformat(timespec="seconds"), "by": by})
    else:
        moulds.pop(name, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, moulds)
    return moulds


class MouldRejects:
    def __init__(self, data_dir: Path, configured: list[str]) -> None:
        self.path = rejects_path(data_dir)
        self.configured = set(configured)
        self._from_file: set[str] = set()
        self._seen: tuple[int, int] | None = None
        self._failed = False

    def current(self) -> set[str]:
        """The moulds to reject now."""
        try:
            st = self.path.stat()
            seen = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = (0, 0)
        if seen != self._seen:
            self._seen = seen
            self._reload()
        return self.configured | self._from_file

    def _reload(self) -> None:
        try:
            moulds = set(read_file(self.path))
        except (OSError, ValueError) as exc:
            if not self._failed:
                log.error("ALARM: %s cannot be read (%s); keeping the moulds rejected before: %s", self.path,
                          exc, ", ".join(sorted(self._from_file)) or "none")
            self._failed = True
            return
        self._failed = False
        if moulds != self._from_file:
            log.warning("moulds rejected now: %s", ", ".join(sorted(self.configured | moulds)) or "none")
        self._from_file = moulds
