"""A real full disk: a small tmpfs (mounting needs root; tests that need one skip elsewhere)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def mount_tmpfs(path: Path, size_mb: int) -> None:
    """Mount a `size_mb` tmpfs on `path` (made if missing), or skip the test."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}): full-disk tests need root")


def unmount(path: Path) -> None:
    """Lazily: a failed test may still hold a file open."""
    subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(disk: Path, leave_mb: float = 0.0) -> Path:
    """Fill the file system with one file, leaving `leave_mb` free (0: until ENOSPC)."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while shutil.disk_usage(disk).free > leave_mb * 1e6 + 65536:
                f.write(b"\0" * 65536)
                f.flush()
            if leave_mb == 0:
                f.write(b"\0" * 65536 * 4)
                f.flush()
        except OSError:  # ENOSPC: full
            pass
    return filler
