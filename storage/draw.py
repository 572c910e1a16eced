"""Boxes and their labels drawn on a view, one way for every picture a person reads.

`edge detect`, the replay report, the operator station's thumbnails and the shift
report all draw here, so a picture says the same everywhere: one colour per class,
the highest score drawn last (on top), each label on a solid tag in the box's colour,
kept inside the image and placed where it covers no other label when there is room.
OpenCV only (the annotation library `supervision` would add scipy and more to a line PC
for the same few rectangles).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

# BGR, distinct on grey glass and from each other (Tableau 10, which colour-blind readers tell apart).
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
STACK = 4  # tag rows tried above and below a box before tags may overlap


@dataclass
class Mark:
    """One box to draw: a detection (with its score) or a person's label (score None)."""

    box: Sequence[float]  # x1 y1 x2 y2, pixels of the image drawn on
    name: str  # class name
    score: float | None = None
    prefix: str = ""  # who says so, where several sources share a picture ("A", "B", "label")
    weak: bool = False  # below its threshold: a thin box without a tag

    @property
    def text(self) -> str:
        score = "" if self.score is None else f" {self.score:.2f}"
        return f"{self.prefix + ': ' if self.prefix else ''}{self.name}{score}"


def colour(name: str, vocabulary: Sequence[str] = ()) -> tuple[int, int, int]:
    """The class's colour: by its place in the vocabulary, else by a hash of its name (stable)."""
    index = list(vocabulary).index(name) if name in vocabulary else zlib.crc32(name.encode())
    return PALETTE[index % len(PALETTE)]


def drawing_order(marks: Sequence[Mark]) -> list[Mark]:
    """Weak marks first, then by score, the highest last: what is drawn last stays on top."""
    return sorted(marks, key=lambda m: (not m.weak, -1.0 if m.score is None else m.score))


def draw(image: np.ndarray, marks: Sequence[Mark], vocabulary: Sequence[str] = (),
         scale: float = 1.0) -> np.ndarray:
    """A copy of `image` (BGR) with every mark: weak ones first, then by score, highest last.

    `scale` maps the marks' boxes onto `image` (a thumbnail: tags drawn at its own size stay
    readable, where drawn on the full view and shrunk they would not).
    """
    out = image.copy()
    height, width = out.shape[:2]
    line = max(1, round(max(height, width) / 400))
    ordered = drawing_order([replace(m, box=[v * scale for v in m.box]) for m in marks])
    for mark in ordered:
        x1, y1, x2, y2 = (int(round(v)) for v in mark.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour(mark.name, vocabulary), 1 if mark.weak else line)
    font_scale, thickness = _font(width, height)
    for mark, (tx1, ty1, tx2, ty2) in place_tags(ordered, width, height):
        fill = colour(mark.name, vocabulary)
        cv2.rectangle(out, (tx1, ty1), (tx2 - 1, ty2 - 1), fill, -1)
        ink = (0, 0, 0) if 0.114 * fill[0] + 0.587 * fill[1] + 0.299 * fill[2] > 140 else (255, 255, 255)
        (_, th), _ = cv2.getTextSize(mark.text, FONT, font_scale, thickness)
        cv2.putText(out, mark.text, (tx1 + 2, ty1 + 2 + th), FONT, font_scale, ink, thickness, cv2.LINE_AA)
    return out


def place_tags(marks: Sequence[Mark], width: int, height: int) -> list[tuple[Mark, tuple[int, int, int, int]]]:
    """Each tagged mark's tag rectangle (x1, y1, x2, y2, x2 and y2 exclusive) in a width x height
    image, in the order given (drawing order: lowest score first); the last, the highest
    score, chooses its place first."""
    font_scale, thickness = _font(width, height)
    tagged = [m for m in marks if not m.weak]
    placed: dict[int, tuple[int, int, int, int]] = {}
    for i in reversed(range(len(tagged))):
        placed[i] = _place(tagged[i], font_scale, thickness, width, height, list(placed.values()))
    return [(mark, placed[i]) for i, mark in enumerate(tagged)]


def _font(width: int, height: int) -> tuple[float, int]:
    """Font scale and stroke for an image: readable on a 200 px thumbnail and on a full view."""
    font_scale = max(0.35, min(height, width) / 1400)
    return font_scale, 1 if font_scale < 0.6 else 2


def _place(mark: Mark, font_scale: float, thickness: int, width: int, height: int,
           taken: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The tag's rectangle: above the box, inside its top, below it, inside its bottom, then
    stacked further above and below (left, then right aligned), each kept inside the image;
    the first that covers no placed tag, else the one that covers least."""
    (tw, th), base = cv2.getTextSize(mark.text, FONT, font_scale, thickness)
    w, h = min(tw + 4, width), min(th + base + 4, height)
    x1, y1, x2, y2 = (int(round(v)) for v in mark.box)
    rows = (y1 - h, y1, y2, y2 - h) + tuple(y for k in range(1, STACK) for y in (y1 - (k + 1) * h, y2 + k * h))
    candidates = [(x, y) for y in rows for x in (x1, x2 - w)]
    best, best_overlap = None, None
    for x, y in candidates:
        x, y = min(max(x, 0), width - w), min(max(y, 0), height - h)
        rect = (x, y, x + w, y + h)
        overlap = sum(_overlap(rect, other) for other in taken)
        if overlap == 0:
            return rect
        if best_overlap is None or overlap < best_overlap:
            best, best_overlap = rect, overlap
    return best


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
