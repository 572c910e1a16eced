"""Files named by something we did not write: label files, captured batches.

A COCO `file_name`, a YOLO image or a batch manifest's view path comes from a labelling
tool, another PC or a person, so it is resolved inside the folder it belongs to before
anything reads it: no absolute path, no `..`, no symbolic link that leaves the folder.
An image header may also claim any size; `read_image` turns OpenCV's refusal of a
huge image into None like any other undecodable file, never an exception.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

import cv2
import numpy as np

# OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS): a header claiming more is refused by imread.
MAX_PIXELS = 1 << 30


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


def read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """The decoded image, or None when the file is missing, corrupt or claims too many pixels."""
    try:
        return cv2.imread(str(path), flags)
    except cv2.error:  # OpenCV raises, rather than returning None, for an oversized header
        return None
