"""Disk blocks for the line's multiprocess metric files, given before any metric exists.

prometheus-client writes each process's metrics through a memory map of a file named
<kind>_<pid>.db. On a full disk, a mapped page with no block behind it kills the writing
process with SIGBUS: a stage restarted on a full disk, or a label value first seen then.
So a process allocates its files (posix_fallocate) before its first metric. On a full
disk it takes spare files instead, which the supervisor keeps allocated while the disk
has room (SPARES processes' worth, topped up with each status line): a rename needs no
new blocks. Only when those are gone too does a process go without files (the caller
then counts in memory).
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

KINDS = ("counter", "histogram", "gauge_livesum", "gauge_livemax")  # every type and mode pipeline/metrics.py uses
FILE_BYTES = 1 << 16  # as prometheus-client starts a file; every stage together uses 12 KiB
SPARES = 8  # restarts on a full disk that keep their metrics on the endpoint
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def reserve(folder: Path, pid: int) -> bool:
    """Allocated files of every kind for process `pid`, made or taken from the spares;
    False (and none left half-made) when the disk has room for neither."""
    made = []
    for kind in KINDS:
        path = Path(folder) / f"{kind}_{pid}.db"
        if not (_allocate(path) or _take_spare(Path(folder), kind, path)):
            for done in made:
                done.unlink(missing_ok=True)
            return False
        made.append(path)
    return True


def keep_spares(folder: Path, count: int = SPARES) -> None:
    """Top the spare files up to `count` of each kind, while the disk has room. Never raises:
    a folder it cannot write is reported by the first process that needs its files."""
    try:
        for kind in KINDS:
            for _ in range(count - len(_spares(Path(folder), kind))):
                if not _allocate(Path(folder) / f"{kind}.{secrets.token_hex(4)}.spare"):
                    return
    except OSError:
        return


def _spares(folder: Path, kind: str) -> list[Path]:
    return sorted(folder.glob(f"{kind}.*.spare"))  # not *.db: the endpoint reads only those


def _take_spare(folder: Path, kind: str, path: Path) -> bool:
    for spare in _spares(folder, kind):
        try:
            os.rename(spare, path)
            return True
        except FileNotFoundError:  # another starting process took it first
            continue
    return False


def _allocate(path: Path) -> bool:
    """`path` with FILE_BYTES of blocks behind it; False, and no file, when the disk has no room."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno not in NO_ROOM:
            raise
        return False
    try:
        os.posix_fallocate(fd, 0, FILE_BYTES)
        return True
    except OSError as exc:
        if exc.errno not in NO_ROOM:
            raise
        path.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)
