"""Images for the pages: only files inside the data folder, thumbnails with the boxes drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from storage.draw import Mark, colour, draw

THUMB_WIDTH = 200


def inside(data_dir: Path, relative: str) -> Path | None:
    """`relative` resolved under the data folder, or None when it would leave it (.., symlinks)."""
    root = Path(data_dir).resolve()
    path = (root / relative).resolve()
    if path != root and root in path.parents and path.is_file():
        return path
    return None


def thumbnail(path: Path, marks: list[Mark], vocabulary: Sequence[str] = ()) -> bytes | None:
    """A small JPEG of the view with its boxes (storage/draw.py: tagged where they reject, thin
    where below their threshold), or None if unreadable."""
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if pixels is None:
        return None
    scale = THUMB_WIDTH / pixels.shape[1]
    small = cv2.resize(pixels, (THUMB_WIDTH, max(1, round(pixels.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", draw(small, marks, vocabulary, scale), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return jpeg.tobytes() if ok else None


def placeholder(text: str) -> bytes:
    """A grey tile saying why there is no picture (not kept, purged, missing view)."""
    tile = np.full((230, THUMB_WIDTH, 3), 60, np.uint8)
    cv2.putText(tile, text[:24], (8, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (220, 220, 220), 1, cv2.LINE_AA)
    return cv2.imencode(".jpg", tile)[1].tobytes()


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a stored view."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if pixels is None else (pixels.shape[1], pixels.shape[0])


def css_colour(name: str, vocabulary: Sequence[str] = ()) -> str:
    """storage/draw.py's colour for a class (BGR there), as CSS: the page and the thumbnails agree."""
    b, g, r = colour(name, vocabulary)
    return f"rgb({r}, {g}, {b})"

