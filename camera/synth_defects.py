"""Defects drawn as they look in transmitted light: the paper's five, and the catalogue's others.

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

from dataclasses import dataclass, replace

import cv2
import numpy as np

SS = 4  # supersampling factor


@dataclass(frozen=True)
class DefectPatch:
    opacity: np.ndarray  # (h, w) float32 in [0, 1]
    color: tuple[float, float, float]  # BGR transmission at full opacity
    glint: np.ndarray | None  # (h, w) float32 grey levels added, or None
    # A hole in the glass (a chip, an unfilled finish): the glint is the back-light itself,
    # not dimmed by the glass around it as light redirected by a bubble's wall is.
    through: bool = False


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


def _patch(rng: np.random.Generator, dark: np.ndarray, contrast: tuple[float, float], color: tuple[float, float, float],
           glint: np.ndarray | None = None, shine: tuple[float, float] = (0, 0), blur: float = 0.5,
           glint_blur: float | None = None) -> DefectPatch:
    """A patch from supersampled drawings: `dark` at a random contrast, `glint` at a random brightness."""
    opacity = np.clip(_down(dark, blur), 0, 1) * rng.uniform(*contrast)
    bright = None if glint is None else _down(glint, blur if glint_blur is None else glint_blur) * rng.uniform(*shine)
    return DefectPatch(opacity, color, bright)


def _polyline(img: np.ndarray, pts: np.ndarray, value: float, width: float) -> None:
    cv2.polylines(img, [np.round(pts * SS * 4).astype(np.int32).reshape(-1, 1, 2)], False, float(value),
                  max(int(width * SS), 1), cv2.LINE_AA, 2)


def _crack(rng: np.random.Generator, length: float, angle: float) -> np.ndarray:
    """A jagged crack: straight on average, kinked every few pixels."""
    n = max(int(length / 4), 3)
    steps = np.cumsum(np.full(n, length / n))
    jitter = rng.normal(0, length / 40, n).cumsum() * 0.5
    d, m = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    return np.concatenate([[[0.0, 0.0]], steps[:, None] * d + jitter[:, None] * m])


def _fit(pts: list[np.ndarray], margin: float = 5) -> tuple[list[np.ndarray], float, float]:
    """Shift point sets onto a canvas with a margin; return them with the canvas (w, h)."""
    lo = np.min([p.min(axis=0) for p in pts], axis=0) - margin
    moved = [p - lo for p in pts]
    w, h = np.max([p.max(axis=0) for p in moved], axis=0) + margin
    return moved, float(w), float(h)


def check(rng: np.random.Generator, angle: float | None = None, length: tuple[float, float] = (10, 45)) -> DefectPatch:
    """A check (crack) in the glass: a thin jagged line, dark with a bright reflecting edge."""
    angle = rng.uniform(0, np.pi) if angle is None else angle + rng.normal(0, 0.25)
    main = _crack(rng, rng.uniform(*length), angle)
    branch = _crack(rng, rng.uniform(3, 12), angle + rng.choice([-1, 1]) * rng.uniform(0.4, 1.1))
    branch += main[int(rng.integers(1, len(main)))]
    (main, branch), w, h = _fit([main, branch])
    dark, glint = _canvas(h, w), _canvas(h, w)
    for line in (main, branch):
        _polyline(dark, line, 1.0, rng.uniform(0.7, 1.4))
        _polyline(glint, line + 0.8, 1.0, 0.6)
    return _patch(rng, dark, (0.55, 0.9), (0.2, 0.2, 0.22), glint, (25, 60), blur=0.5)


def vertical_check(rng: np.random.Generator) -> DefectPatch:
    """A split finish: a crack running down from the rim."""
    return check(rng, angle=np.pi / 2, length=(8, 30))


def horizontal_check(rng: np.random.Generator) -> DefectPatch:
    """A heel check: a crack running around the heel."""
    return check(rng, angle=0.0, length=(12, 40))


def stone(rng: np.random.Generator) -> DefectPatch:
    """An unmelted inclusion: a grey-white opaque grain, often with small checks around it."""
    d = rng.uniform(3, 12)
    size = d * 3 + 8
    c = size / 2
    img, glint = _canvas(size, size), _canvas(size, size)
    _ellipse(img, c, c, d / 2, d / 2 * rng.uniform(0.6, 1.0), rng.uniform(0, 180), 1.0)
    for _ in range(int(rng.integers(0, 4))):  # checks radiating from the stone
        a = rng.uniform(0, 2 * np.pi)
        start = np.array([c + np.cos(a) * d / 2, c + np.sin(a) * d / 2])
        _polyline(glint, start + _crack(rng, rng.uniform(d / 2, d * 1.3), a), 1.0, 0.7)
    return _patch(rng, img, (0.6, 0.9), (0.45, 0.45, 0.47), glint, (15, 40), blur=0.5)


def seeds(rng: np.random.Generator) -> DefectPatch:
    """Seed: a cluster of tiny gas bubbles (fining left them), each a dark ring of 1-4 px."""
    spread = rng.uniform(6, 24)
    size = 2 * spread + 10
    rim, core = _canvas(size, size), _canvas(size, size)
    for _ in range(int(rng.integers(3, 14))):
        x, y = size / 2 + rng.normal(0, spread / 2.5, 2).clip(-spread, spread)
        a = rng.uniform(0.8, 2.2)
        angle = 90 + rng.normal(0, 20)
        _ellipse(rim, x, y, a, a * rng.uniform(0.5, 1.0), angle, 1.0, thickness=max(int(0.5 * SS), 1))
        _ellipse(core, x, y, a * 0.4, a * 0.3, angle, 1.0)
    return _patch(rng, rim, (0.5, 0.85), (0.25, 0.25, 0.27), core, (25, 55), blur=0.4)


def bird_swing(rng: np.random.Generator) -> DefectPatch:
    """A glass thread stretched across the inside of the container: long, straight, thin."""
    length = rng.uniform(50, 180)
    angle = rng.normal(0, 0.35)  # wall to wall: roughly across the container
    t = np.linspace(0, 1, 32)[:, None]
    pts = t * length * np.array([np.cos(angle), np.sin(angle)]) + (rng.uniform(-4, 4) * np.sin(t * np.pi)) * \
        np.array([-np.sin(angle), np.cos(angle)])
    (pts,), w, h = _fit([pts])
    line, glint = _canvas(h, w), _canvas(h, w)
    width = rng.uniform(0.8, 2.0)
    _polyline(line, pts, 1.0, width)
    _polyline(glint, pts + [0, -width * 0.7], 1.0, 0.6)
    return _patch(rng, line, (0.5, 0.85), (0.28, 0.28, 0.3), glint, (10, 30), blur=0.6)


def cord(rng: np.random.Generator) -> DefectPatch:
    """Cord or ream: glass of another composition, seen as faint wavy refracting streaks."""
    length, amplitude = rng.uniform(30, 110), rng.uniform(2, 7)
    lines = []
    for k in range(int(rng.integers(2, 5))):
        t = np.linspace(0, 1, 48)
        wave = amplitude * np.sin(t * np.pi * rng.uniform(2, 5) + rng.uniform(0, np.pi))
        lines.append(np.stack([wave + k * rng.uniform(2, 5), t * length], axis=1))
    lines, w, h = _fit(lines)
    dark, glint = _canvas(h, w), _canvas(h, w)
    for pts in lines:
        _polyline(dark, pts, 1.0, rng.uniform(0.8, 1.8))
        _polyline(glint, pts + [1.2, 0], 1.0, 0.8)
    angle = rng.normal(0, 20)
    opacity, shine = (_rotate(x, angle) for x in (_down(dark, 0.9), _down(glint, 0.9)))
    return DefectPatch(np.clip(opacity, 0, 1) * rng.uniform(0.25, 0.5), (0.3, 0.32, 0.33), shine * rng.uniform(10, 25))


def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated about its centre on a canvas large enough to keep every corner."""
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos) + 1, int(h * cos + w * sin) + 1
    m[:, 2] += (nw - w) / 2, (nh - h) / 2
    return cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR)


def chip(rng: np.random.Generator) -> DefectPatch:
    """A chipped finish: a shell-shaped piece missing from the rim, bright with a dark fracture edge."""
    w, h = rng.uniform(6, 22), rng.uniform(4, 12)
    size_w, size_h = w + 8, h + 8
    hole, edge = _canvas(size_h, size_w), _canvas(size_h, size_w)
    _ellipse(hole, size_w / 2, 4, w / 2, h, 0, 1.0)
    _ellipse(edge, size_w / 2, 4, w / 2, h, 0, 1.0, thickness=max(int(1.0 * SS), 1))
    # The finish is thick, dark glass in back-light: where a piece is gone the back-light
    # comes through undimmed (renderer 2; before, 35-70 dimmed by the glass around it).
    return replace(_patch(rng, edge, (0.6, 0.9), (0.2, 0.2, 0.22), hole, (50, 110), blur=0.5, glint_blur=0.6),
                   through=True)


def unfilled(rng: np.random.Generator) -> DefectPatch:
    """An unfilled finish: the mould was not filled, so a stretch of thread or rim is missing (brighter)."""
    w, h = rng.uniform(18, 50), rng.uniform(5, 14)
    img = _canvas(h + 6, w + 6)
    cv2.rectangle(img, _pt(3, 3), _pt(3 + w, 3 + h), 1.0, -1, cv2.LINE_AA, 2)
    glint = _down(img, rng.uniform(0.6, 1.2))  # a moulded edge: sharp (renderer 2; before: blur 1-2.5, 25-50 dimmed by the glass)
    return DefectPatch(np.clip(glint * 0.15, 0, 1), (0.5, 0.5, 0.5), glint * rng.uniform(50, 100), through=True)


def fin(rng: np.random.Generator, angle: float = 0.0) -> DefectPatch:
    """A thin sharp fin or line of glass (overpress on the rim, line over finish): dark, with a
    glint. On the dark finish only the glint shows, so it is bright (renderer 2; 20-45 before)."""
    length = rng.uniform(10, 45)
    t = np.linspace(0, 1, 16)[:, None]
    pts = t * length * np.array([np.cos(angle), np.sin(angle)]) + rng.normal(0, 0.3, (16, 2))
    (pts,), w, h = _fit([pts], margin=4)
    line, glint = _canvas(h, w), _canvas(h, w)
    _polyline(line, pts, 1.0, rng.uniform(0.8, 2.0))
    _polyline(glint, pts + [0, 1.0], 1.0, 0.6)
    return _patch(rng, line, (0.55, 0.9), (0.22, 0.22, 0.24), glint, (50, 100), blur=0.5)


def overpress_fin(rng: np.random.Generator) -> DefectPatch:
    """Overpress: a fin standing on the top of the rim, close to horizontal."""
    return fin(rng, angle=float(rng.normal(0, 0.15)))


def line_over_finish_fin(rng: np.random.Generator) -> DefectPatch:
    """Line over finish: a fine line across the top of the finish at the mould parting."""
    return fin(rng, angle=float(np.pi / 2 + rng.normal(0, 0.3)))


def heavy_bottom(rng: np.random.Generator) -> DefectPatch:
    """Heavy (or uneven) bottom: a wide, soft, darker lens of thick glass in the base."""
    w, h = rng.uniform(40, 120), rng.uniform(8, 20)
    img = _canvas(h + 10, w + 10)
    _ellipse(img, (w + 10) / 2, (h + 10) / 2, w / 2, h / 2, rng.normal(0, 4), 1.0)
    return _patch(rng, img, (0.3, 0.55), (0.4, 0.42, 0.42), blur=h / 4)


def water_drop(rng: np.random.Generator) -> DefectPatch:
    """Not a defect: a water drop on the outside, a round lens with a soft dark rim and a bright centre."""
    d = rng.uniform(6, 22)
    size = d + 8
    rim, core = _canvas(size, size), _canvas(size, size)
    _ellipse(rim, size / 2, size / 2, d / 2, d / 2 * rng.uniform(0.8, 1.1), 0, 1.0,
             thickness=max(int(d * 0.2 * SS), 1))
    _ellipse(core, size / 2, size / 2 - d * 0.1, d * 0.3, d * 0.3, 0, 1.0)
    return _patch(rng, rim, (0.2, 0.4), (0.5, 0.5, 0.5), core, (10, 25), blur=1.0, glint_blur=1.2)


def dust(rng: np.random.Generator) -> DefectPatch:
    """Not a defect: a few faint specks of dust on the glass, out of focus."""
    size = rng.uniform(12, 40)
    img = _canvas(size, size)
    for _ in range(int(rng.integers(2, 8))):
        _ellipse(img, *rng.uniform(3, size - 3, 2), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0), 0, 1.0)
    return _patch(rng, img, (0.15, 0.35), (0.45, 0.45, 0.45), blur=1.0)


def embossing(rng: np.random.Generator) -> DefectPatch:
    """Not a defect: moulded lettering or ribs, a regular row of short raised strokes."""
    n, pitch, height = int(rng.integers(3, 9)), rng.uniform(5, 9), rng.uniform(6, 14)
    w = n * pitch + 8
    dark, glint = _canvas(height + 8, w), _canvas(height + 8, w)
    for k in range(n):
        x = 4 + k * pitch
        top = np.array([[x, 4.0], [x + rng.uniform(-1.5, 1.5), 4 + height]])
        _polyline(dark, top, 1.0, 1.2)
        _polyline(glint, top + [1.0, 0], 1.0, 0.7)
    return _patch(rng, dark, (0.2, 0.35), (0.4, 0.4, 0.42), glint, (8, 18), blur=0.8)


def label_shadow(rng: np.random.Generator) -> DefectPatch:
    """Not a defect: the soft shadow of a label or guide rail, a wide, faint, straight-edged band."""
    w, h = rng.uniform(60, 160), rng.uniform(20, 70)
    img = _canvas(h + 20, w + 20)
    cv2.rectangle(img, _pt(10, 10), _pt(10 + w, 10 + h), 1.0, -1, cv2.LINE_AA, 2)
    return _patch(rng, img, (0.08, 0.18), (0.6, 0.6, 0.6), blur=rng.uniform(3, 6))


def varied(patch: DefectPatch, rng: np.random.Generator) -> DefectPatch:
    """The catalogue's spread of one drawing: contrast x0.6-1.2 and 0-1.2 px of extra defocus."""
    gain, blur = rng.uniform(0.6, 1.2), rng.uniform(0, 1.2)

    def soften(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (0, 0), blur) if blur > 0.2 else img

    glint = None if patch.glint is None else soften(patch.glint) * gain
    return replace(patch, opacity=np.clip(soften(patch.opacity) * gain, 0, 1).astype(np.float32), glint=glint)


def scaled(patch: DefectPatch, k: float) -> DefectPatch:
    """The patch for a camera whose picture is k times the paper's 700 x 820."""
    if abs(k - 1) < 1e-6:
        return patch
    h, w = patch.opacity.shape
    size = (max(int(round(w * k)), 1), max(int(round(h * k)), 1))
    glint = None if patch.glint is None else cv2.resize(patch.glint, size, interpolation=cv2.INTER_AREA)
    return replace(patch, opacity=cv2.resize(patch.opacity, size, interpolation=cv2.INTER_AREA), glint=glint)


DRAW = {
    "oil": oil,
    "black spot": black_spot,
    "bubble": bubble,
    "plastering thread": plastering_thread,
    "quenched grain": quenched_grain,
}
