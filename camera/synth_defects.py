"""The five defect classes of the paper, drawn as they look in transmitted light.

Each defect is drawn once per container, flat, in surface pixels (as if the glass were
unrolled at the camera's scale), as two maps:
- `opacity` (h, w) in [0, 1]: how much of the light the defect takes away, with
  `color` the (B, G, R) transmission where the opacity is 1;
- `glint` (h, w) grey levels added on top (a bubble's bright centre, a thread's
  refraction line), or None.
A view squeezes the maps horizontally by the cosine of the defect's angle to the camera
(foreshortening) and blends them into the picture. Shapes are drawn at 4x and
downsampled so that 3-pixel defects still have soft, believable edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SS = 4  # supersampling factor


@dataclass(frozen=True)
class DefectPatch:
    opacity: np.ndarray  # (h, w) float32 in [0, 1]
    color: tuple[float, float, float]  # BGR transmission at full opacity
    glint: np.ndarray | None  # (h, w) float32 grey levels added, or None


def _canvas(h: float, w: float) -> np.ndarray:
    return np.zeros((int(np.ceil(h)) * SS, int(np.ceil(w)) * SS), np.float32)


def _down(img: np.ndarray, blur: float = 0.6) -> np.ndarray:
    """Supersampled drawing to surface pixels, with the optics' slight blur."""
    h, w = img.shape[0] // SS, img.shape[1] // SS
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (0, 0), blur) if blur > 0 else small


def _pt(x: float, y: float) -> tuple[int, int]:
    """cv2 drawing with shift=2: sub-pixel coordinates on the 4x canvas."""
    return int(round(x * SS * 4)), int(round(y * SS * 4))


def _ellipse(img: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float,
             value: float, thickness: int = -1) -> None:
    cv2.ellipse(img, _pt(cx, cy), (max(int(ax * SS * 4), 1), max(int(ay * SS * 4), 1)), angle,
                0, 360, float(value), thickness, cv2.LINE_AA, 2)


def black_spot(rng: np.random.Generator) -> DefectPatch:
    """A stone or carbon inclusion: an opaque, nearly round dark dot of 3-14 px."""
    d = rng.uniform(3, 14)
    size = d + 6
    img = _canvas(size, size)
    c = size / 2
    _ellipse(img, c, c, d / 2, d / 2 * rng.uniform(0.7, 1.0), rng.uniform(0, 180), 1.0)
    for _ in range(int(rng.integers(0, 3))):  # irregular outline
        _ellipse(img, c + rng.uniform(-d / 4, d / 4), c + rng.uniform(-d / 4, d / 4),
                 d / 3, d / 4, rng.uniform(0, 180), 1.0)
    opacity = np.clip(_down(img, 0.5), 0, 1) * rng.uniform(0.85, 0.97)
    return DefectPatch(opacity, (0.08, 0.08, 0.1), None)


def oil(rng: np.random.Generator) -> DefectPatch:
    """A lubricant smear from the forming machine: translucent brown, blotchy, often dripped."""
    w, h = rng.uniform(16, 55), rng.uniform(16, 70)
    img = _canvas(h + 12, w + 12)
    cx, cy = (w + 12) / 2, (h + 12) / 2
    acc = np.zeros_like(img)
    for _ in range(int(rng.integers(4, 9))):
        blob = np.zeros_like(img)
        _ellipse(blob, cx + rng.uniform(-w / 3, w / 3), cy + rng.uniform(-h / 3, h / 3),
                 rng.uniform(w / 6, w / 2.5), rng.uniform(h / 6, h / 2.5), rng.uniform(0, 180), 1.0)
        acc = np.maximum(acc, blob * rng.uniform(0.45, 1.0))
    if rng.random() < 0.5:  # a drip running down
        x = cx + rng.uniform(-w / 4, w / 4)
        cv2.line(acc, _pt(x, cy), _pt(x + rng.uniform(-3, 3), cy + h / 2 + 4),
                 0.8, max(int(rng.uniform(1.5, 4) * SS), 1), cv2.LINE_AA, 2)
    opacity = _down(acc, blur=max(w, h) / 18)
    mottle = cv2.resize(rng.uniform(0.55, 1.0, (4, 4)).astype(np.float32), opacity.shape[::-1],
                        interpolation=cv2.INTER_CUBIC)
    opacity = np.clip(opacity * mottle, 0, 1) * rng.uniform(0.5, 0.8)
    return DefectPatch(opacity.astype(np.float32), (0.22, 0.45, 0.7), None)


def bubble(rng: np.random.Generator) -> DefectPatch:
    """A seed or blister: a dark refracting rim around a bright centre, often elongated."""
    a = rng.uniform(3, 14)
    b = a * rng.uniform(0.45, 1.0)
    angle = 90 + rng.normal(0, 25)  # blown bubbles stretch roughly along the container
    size = 2 * a + 8
    c = size / 2
    rim = _canvas(size, size)
    _ellipse(rim, c, c, a, b, angle, 1.0, thickness=max(int(max(b * 0.28, 1.0) * SS), 1))
    core = _canvas(size, size)
    _ellipse(core, c + rng.uniform(-0.15, 0.15) * b, c - rng.uniform(0, 0.2) * b,
             a * 0.55, b * 0.5, angle, 1.0)
    opacity = np.clip(_down(rim, 0.5), 0, 1) * rng.uniform(0.65, 0.9)
    glint = _down(core, 0.4 + b / 12) * rng.uniform(40, 75)
    return DefectPatch(opacity, (0.25, 0.25, 0.27), glint)


def _curve(rng: np.random.Generator, length: float) -> np.ndarray:
    """A smooth random curve (quadratic Bezier with a wiggle) of about `length` px."""
    angle = rng.uniform(0, np.pi)
    d = np.array([np.cos(angle), np.sin(angle)])
    n = np.array([-d[1], d[0]])
    t = np.linspace(0, 1, max(int(length), 8))[:, None]
    bend = rng.uniform(-0.35, 0.35) * length
    wiggle = rng.uniform(0, 0.04) * length * np.sin(t * np.pi * rng.uniform(2, 5))
    pts = (t - 0.5) * length * d + (4 * t * (1 - t) * bend + wiggle) * n
    return pts


def plastering_thread(rng: np.random.Generator) -> DefectPatch:
    """A glass thread fused onto the wall: a thin curved line with a refraction highlight."""
    length = rng.uniform(30, 150)
    pts = _curve(rng, length)
    lo = pts.min(axis=0) - 5
    pts = pts - lo
    w, h = pts.max(axis=0) + 5
    line = _canvas(h, w)
    width = rng.uniform(1.0, 2.6)
    poly = np.round(pts * SS * 4).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(line, [poly], False, 1.0, max(int(width * SS), 1), cv2.LINE_AA, 2)
    glint_img = _canvas(h, w)
    offset = np.array([width * 0.9, -width * 0.6])
    cv2.polylines(glint_img, [np.round((pts + offset) * SS * 4).astype(np.int32).reshape(-1, 1, 2)],
                  False, 1.0, max(int(0.8 * SS), 1), cv2.LINE_AA, 2)
    opacity = np.clip(_down(line, 0.6), 0, 1) * rng.uniform(0.45, 0.75)
    glint = _down(glint_img, 0.6) * rng.uniform(10, 25)
    return DefectPatch(opacity, (0.3, 0.3, 0.32), glint)


def quenched_grain(rng: np.random.Generator) -> DefectPatch:
    """Checks from uneven cooling: a cluster of tiny crack-like specks, some glinting."""
    radius = rng.uniform(7, 28)
    size = 2 * radius + 10
    c = size / 2
    dark, glint = _canvas(size, size), _canvas(size, size)
    for _ in range(int(rng.integers(10, 36))):
        r = radius * np.sqrt(rng.random())
        phi = rng.uniform(0, 2 * np.pi)
        x, y = c + r * np.cos(phi), c + r * np.sin(phi)
        target = glint if rng.random() < 0.35 else dark
        angle = rng.uniform(0, np.pi)
        for _ in range(int(rng.integers(1, 3))):  # a short crack, sometimes kinked
            length = rng.uniform(1.0, 4.0)
            angle += rng.normal(0, 0.8)
            x2, y2 = x + np.cos(angle) * length, y + np.sin(angle) * length
            cv2.line(target, _pt(x, y), _pt(x2, y2), float(rng.uniform(0.4, 1.0)),
                     max(int(rng.uniform(0.5, 1.1) * SS), 1), cv2.LINE_AA, 2)
            x, y = x2, y2
    opacity = np.clip(_down(dark, 0.45), 0, 1) * rng.uniform(0.6, 0.9)
    return DefectPatch(opacity, (0.18, 0.18, 0.2), _down(glint, 0.5) * rng.uniform(20, 45))


def scaled(patch: DefectPatch, k: float) -> DefectPatch:
    """The patch for a camera whose picture is k times the paper's 700 x 820."""
    if abs(k - 1) < 1e-6:
        return patch
    h, w = patch.opacity.shape
    size = (max(int(round(w * k)), 1), max(int(round(h * k)), 1))
    glint = None if patch.glint is None else cv2.resize(patch.glint, size, interpolation=cv2.INTER_AREA)
    return DefectPatch(cv2.resize(patch.opacity, size, interpolation=cv2.INTER_AREA), patch.color, glint)


DRAW = {
    "oil": oil,
    "black spot": black_spot,
    "bubble": bubble,
    "plastering thread": plastering_thread,
    "quenched grain": quenched_grain,
}
