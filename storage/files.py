"""Files named by something we did not write: label files, captured batches.

A COCO `file_name`, a YOLO image or a batch manifest's view path comes from a labelling
tool, another PC or a person, so it is resolved inside the folder it belongs to before
anything reads it: no absolute path, no `..`, no symbolic link that leaves the folder.
An image header may also claim any size; `read_image` turns OpenCV's refusal of a
huge image into None like any other undecodable file, never an exception.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

import numpy as np

# OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS): a header claiming more is refused by imread.
MAX_PIXELS = 1 << 30
TMP_SUFFIX = ".tmp"  # atomic_write's temporary files: ".<name>.<random>.tmp" beside the file
_UMASK = os.umask(0o022)  # read once (it can only be read by setting it), then put back
os.umask(_UMASK)


class OutsideRoot(ValueError):
    """A named file that would be read from outside its root folder; the message says why."""


def inside(root: Path, name: str) -> Path:
    """`name` (relative, "/"-separated) resolved under `root`, or OutsideRoot saying why not.

    Symbolic links are followed and the result must still lie under the resolved root,
    so a link to another file of the same folder is fine and a link out of it is not.
    """
    text = str(name)
    if not text or "\0" in text:
        raise OutsideRoot("empty name or a NUL byte in it")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise OutsideRoot(f"an absolute path; name files relative to {root}")
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        raise OutsideRoot("'..' in the path; name files inside their folder")
    base = Path(root).resolve()
    full = (base / text).resolve()
    if full != base and base not in full.parents:
        raise OutsideRoot(f"a symbolic link that leaves {root}")
    return full


def read_image(path: Path, flags: int | None = None) -> np.ndarray | None:
    """The decoded image (BGR unless `flags` says otherwise, e.g. cv2.IMREAD_UNCHANGED), or
    None when the file is missing, corrupt or claims too many pixels."""
    import cv2  # here, not at the top: the reject controller imports this module (34 ms less per restart)

    try:
        return cv2.imread(str(path), cv2.IMREAD_COLOR if flags is None else flags)
    except cv2.error:  # OpenCV raises, rather than returning None, for an oversized header
        return None


@contextmanager
def atomic_write(path: Path, mode: str = "w", *, fsync: bool = True) -> Iterator[IO]:
    """Open a temporary file beside `path`; on a clean exit it replaces `path` in one rename.

    A reader (or a process restarted after kill -9) sees the old file or the new one, never
    half of one. `fsync` also survives a power cut (the file, then its folder's entry for the
    rename); it costs disk flushes, so files rewritten many times a second (journals) pass False. On an exception the temporary file is removed.
    Text is UTF-8 whatever the locale; `is_temporary` recognises the names left by a crash.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it; mkstemp makes it private (0600)
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


class Outage:
    """A small file of the line that a full disk refuses: one ALARM when its writes start
    failing (naming what happens meanwhile), one warning when one succeeds again, so a long
    outage does not flood the log. `log` is the caller's logger, so the lines say who."""

    def __init__(self, path: Path, meanwhile: str, log: logging.Logger) -> None:
        self.path, self.meanwhile, self.log = path, meanwhile, log
        self.active = False

    def failed(self, exc: OSError) -> None:
        if not self.active:
            self.log.error("ALARM: cannot write %s (%s); %s", self.path, exc, self.meanwhile)
        self.active = True

    def ended(self, note: str = "") -> None:
        if self.active:
            self.log.warning("%s is written again%s", self.path, note)
        self.active = False


def is_temporary(name: str) -> bool:
    """Whether a file name is one of atomic_write's temporary files (a crash leaves them)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def sweep_temporaries(path: Path) -> int:
    """Remove the temporary files a kill -9 left beside `path`; how many there were.

    Only for a file one process owns (a journal, at that process's start): another
    writer's temporary file in flight would be removed too.
    """
    path = Path(path)
    removed = 0
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed
