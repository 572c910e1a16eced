"""The defect-free picture: a back-lit transparent bottle as an inspection camera sees it.

A container is a solid of revolution (finish, neck, shoulder, body, heel). In front of
a diffuse back-light its glass transmits most light at the centre and bends light away
near the silhouette, where the line of sight grazes the wall: the dark refraction bands.
Inclined glass (shoulder, heel) and thick glass (base, finish) look darker for the
same reason. Everything here is computed once per container and cached: a view only
shifts, scales and decorates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# Glass colours as (B, G, R) transmission at the thickest wall: flint (clear), light
# green ("georgia green" faint), light blue.
TINTS = ((0.97, 0.97, 0.96), (0.90, 0.97, 0.91), (0.98, 0.96, 0.93))


@dataclass(frozen=True)
class BottleShape:
    """Profile of one container in canonical image rows (before the per-view shift)."""

    cx: float  # centre column
    top: float  # top of the finish (row)
    finish_h: float
    neck_r: float
    neck_end: float  # row where the shoulder starts
    shoulder_end: float  # row where the body starts
    body_r: float
    base: float  # bottom row of the container
    heel_h: float
    base_thick: float  # height of the thick base glass
    tint: tuple[float, float, float]

    @classmethod
    def sample(cls, rng: np.random.Generator, width: int, height: int) -> "BottleShape":
        """A plausible bottle or jar that fits the frame with a margin for position jitter."""
        k = min(width / 700, height / 820)  # sizes below are for the paper's 700 x 820
        body_r = width * rng.uniform(0.21, 0.29)
        base = height - k * rng.uniform(22, 40)
        top = rng.uniform(0.04, 0.08) * height
        shoulder_end = top + (base - top) * rng.uniform(0.38, 0.5)
        neck_end = top + (shoulder_end - top) * rng.uniform(0.35, 0.6)
        tint = TINTS[int(rng.choice(len(TINTS), p=(0.6, 0.25, 0.15)))]
        return cls(cx=width / 2 + k * rng.uniform(-14, 14), top=top, finish_h=k * rng.uniform(26, 40),
                   neck_r=body_r * rng.uniform(0.3, 0.42), neck_end=neck_end,
                   shoulder_end=shoulder_end, body_r=body_r, base=base,
                   heel_h=k * rng.uniform(18, 34), base_thick=k * rng.uniform(14, 30), tint=tint)

    def radius(self, rows: np.ndarray) -> np.ndarray:
        """Outer radius in pixels at each row (0 outside the container)."""
        y = rows.astype(np.float64)
        r = np.zeros_like(y)
        finish = (y >= self.top) & (y < self.top + self.finish_h)
        r[finish] = self.neck_r * 1.13
        bead = (y >= self.top + self.finish_h - 7) & (y < self.top + self.finish_h)
        r[bead] = self.neck_r * 1.2  # transfer bead under the finish
        neck = (y >= self.top + self.finish_h) & (y < self.neck_end)
        t = (y[neck] - self.top - self.finish_h) / max(self.neck_end - self.top - self.finish_h, 1)
        r[neck] = self.neck_r * (1 + 0.08 * t ** 2)
        shoulder = (y >= self.neck_end) & (y < self.shoulder_end)
        t = (y[shoulder] - self.neck_end) / (self.shoulder_end - self.neck_end)
        start = self.neck_r * 1.08
        r[shoulder] = start + (self.body_r - start) * np.sin(t * np.pi / 2) ** 1.6
        body = (y >= self.shoulder_end) & (y <= self.base)
        heel_top = self.base - self.heel_h
        t = np.clip((y[body] - heel_top) / self.heel_h, 0, 1)
        r[body] = self.body_r - self.heel_h * 0.55 * (1 - np.sqrt(1 - t ** 2))
        # Round the finish top edge so the silhouette is not a step.
        lip = finish & (y < self.top + 4)
        r[lip] *= 0.92 + 0.02 * (y[lip] - self.top)
        return r


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def backlight(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Diffuse LED panel: bright, slightly brighter in the middle, a faint gradient."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((x - width / 2) / width) ** 2 + ((y - height / 2) / height) ** 2
    gradient = rng.uniform(-0.03, 0.03) * (x / width - 0.5) + rng.uniform(-0.03, 0.03) * (y / height - 0.5)
    return (236.0 * (1 - 0.22 * r2 + gradient)).astype(np.float32)


def _glass_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Mottling and vertical mould streaks: low-frequency noise, upsampled (cheap)."""
    h, w = shape
    mottle = cv2.resize(rng.normal(0, 1, (max(h // 40, 2), max(w // 40, 2))).astype(np.float32),
                        (w, h), interpolation=cv2.INTER_CUBIC)
    streaks = cv2.resize(rng.normal(0, 1, (max(h // 90, 2), max(w // 5, 2))).astype(np.float32),
                         (w, h), interpolation=cv2.INTER_CUBIC)
    return 1 + 0.008 * mottle + 0.003 * streaks


def wall_profile(rng: np.random.Generator, samples: int = 2048) -> np.ndarray:
    """Relative wall thickness around the circumference: smooth, periodic, about +-3%."""
    k = np.arange(2, 60)
    amplitude = rng.normal(0, 1, k.size) / k ** 0.9
    phase = rng.uniform(0, 2 * np.pi, k.size)
    angle = np.linspace(0, 2 * np.pi, samples, endpoint=False)[:, None]
    profile = (amplitude * np.cos(k * angle + phase)).sum(axis=1)
    return (0.03 * profile / np.abs(profile).max()).astype(np.float32)


def apply_wall_profile(image: np.ndarray, shape: BottleShape, profile: np.ndarray, phi: float,
                       dx: int, dy: int) -> None:
    """Thickness streaks of the body, which turn with the container from view to view.

    A column at u = sin(alpha) looks through the near wall at angle phi + alpha and the
    far wall at phi + pi - alpha; both change the light it gets.
    """
    y0, y1 = int(shape.shoulder_end) + dy, int(shape.base - shape.heel_h) + dy
    x0, x1 = int(shape.cx - shape.body_r * 0.97) + dx, int(shape.cx + shape.body_r * 0.97) + dx
    y0, y1, x0, x1 = max(y0, 0), min(y1, image.shape[0]), max(x0, 0), min(x1, image.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    alpha = np.arcsin(np.clip((np.arange(x0, x1) - dx - shape.cx) / shape.body_r, -1, 1))
    n = profile.size
    near = ((phi + alpha) / (2 * np.pi) * n).astype(np.int64) % n
    far = ((phi + np.pi - alpha) / (2 * np.pi) * n).astype(np.int64) % n
    column = profile[near] + profile[far]
    rows = np.arange(y0, y1, dtype=np.float32)
    taper = smoothstep((rows - y0) / 40) * smoothstep((y1 - rows) / 40)
    gain = (1 + np.outer(taper, column)).astype(np.float32)
    region = image[y0:y1, x0:x1]
    region[:] = cv2.multiply(region, cv2.merge([gain] * 3), dtype=cv2.CV_8U)


def draw_seams(image: np.ndarray, shape: BottleShape, seam: float, phi: float, dx: int, dy: int) -> None:
    """The two mould seams (theta = seam and seam + pi): fine vertical lines on the wall."""
    rows = np.arange(int(shape.neck_end), int(shape.base - 4))
    r = shape.radius(rows)
    ys = rows + dy
    for theta in (seam, seam + np.pi):
        c = np.cos(theta - phi)
        if abs(c) < 0.2:
            continue
        xs = np.round(shape.cx + dx + r * np.sin(theta - phi)).astype(np.int64)
        keep = (ys >= 0) & (ys < image.shape[0]) & (xs >= 1) & (xs < image.shape[1] - 1)
        y, x = ys[keep], xs[keep]
        dark, light = (0.86, 1.05) if c > 0 else (0.95, 1.0)
        image[y, x] = (image[y, x] * dark).astype(np.uint8)
        image[y, x + 1] = np.minimum(image[y, x + 1] * light, 255).astype(np.uint8)


def wall_transmission(a: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Share of back-light reaching the camera at |u| = a (0 centre, 1 silhouette).

    `slope` (|dr/dy| per row) widens and deepens the dark band where the wall is
    inclined, as on a shoulder or heel.
    """
    s = np.minimum(slope, SLOPE_MAX)
    onset = 0.74 - 0.32 * np.minimum(s, 1.0)
    band = smoothstep((a - onset) / (0.985 - onset)) ** 0.75
    p = 0.93 * (1 - 0.9 * band)
    p += 0.09 * np.exp(-((a - onset + 0.02) / 0.018) ** 2)  # bright line inside the wall
    p -= 0.05 * np.exp(-((a - 0.6 * onset) / 0.04) ** 2)  # faint inner-wall line
    p += 0.035 * np.exp(-(a / 0.28) ** 2)  # the cylinder focuses light at its axis
    p *= 1 - 0.45 * smoothstep(s / 1.2)  # inclined glass sends light away
    return np.where(a < 1.0, p, 1.0).astype(np.float32)


SLOPE_MAX, LUT_A, LUT_S = 1.5, 1024, 64


@lru_cache(maxsize=1)
def _transmission_lut() -> np.ndarray:
    """wall_transmission tabulated (slope rows x |u| columns; last column: outside).

    Looking it up with cv2.remap is several times faster than evaluating it per pixel.
    """
    a = np.append(np.linspace(0, 1, LUT_A, endpoint=False), 1.0)[None, :]
    s = np.linspace(0, SLOPE_MAX, LUT_S)[:, None]
    return wall_transmission(a, s)


def render_base(shape: BottleShape, light: np.ndarray, canvas: np.ndarray, rng: np.random.Generator,
                pad_x: int, pad_y: int) -> np.ndarray:
    """The container without defects on the padded canvas, BGR uint8.

    `light` is the back-light (float grey levels) and `canvas` the same as BGR uint8,
    for the padded canvas; the container's canonical rows and columns are offset by
    (pad_y, pad_x) on it.
    """
    h, w = light.shape
    rows = np.arange(h) - pad_y
    r = shape.radius(rows)
    # Smoothed: the optics blur the kink where the shoulder meets the body.
    slope = cv2.GaussianBlur(np.abs(np.gradient(r)).reshape(-1, 1).astype(np.float32), (1, 0), 6).ravel()
    glass_rows = np.nonzero(r > 0)[0]
    y0, y1 = int(glass_rows[0]), int(glass_rows[-1]) + 1
    x0 = max(int(shape.cx + pad_x - r.max()) - 2, 0)
    x1 = min(int(shape.cx + pad_x + r.max()) + 3, w)

    rr = r[y0:y1, None].astype(np.float32)
    x = np.arange(x0, x1, dtype=np.float32)[None, :] - pad_x
    a = np.abs(x - np.float32(shape.cx)) / np.maximum(rr, np.float32(1e-3))
    map_a = np.minimum(a * LUT_A, LUT_A).astype(np.float32)
    map_s = np.broadcast_to((np.minimum(slope[y0:y1], SLOPE_MAX) * ((LUT_S - 1) / SLOPE_MAX))[:, None],
                            a.shape).astype(np.float32)
    p = cv2.remap(_transmission_lut(), map_a, map_s, cv2.INTER_LINEAR)
    inside = (a < 1.0).astype(np.float32)

    # Thick glass: the base (with a bright push-up lens line) and the finish with threads.
    y = rows[y0:y1, None].astype(np.float32)
    base_t = smoothstep((y - (shape.base - shape.base_thick)) / shape.base_thick)
    push_up = np.exp(-((y - (shape.base - shape.base_thick * 0.55)) / 2.5) ** 2) * (a < 0.7)
    p *= 1 - inside * (0.6 * base_t - 0.25 * push_up)
    finish = ((y >= shape.top) & (y < shape.top + shape.finish_h)).astype(np.float32)
    threads = 0.5 + 0.5 * np.cos((y - shape.top) * 2 * np.pi / rng.uniform(7, 10))
    p *= 1 - finish * inside * (0.25 + 0.3 * threads).astype(np.float32)

    p *= 1 + inside * (_glass_texture(rng, p.shape) - 1)
    lit = p * light[y0:y1, x0:x1]
    # Thicker optical path (dark bands) shows the glass colour more strongly.
    depth = inside * (1 + 3 * np.clip(1 - p, 0, 1))
    region = cv2.merge([lit * (1 - depth * np.float32(1 - tint)) for tint in shape.tint])
    out = canvas.copy()
    # Optics: the edges are not razor sharp. convertScaleAbs rounds and saturates.
    out[y0:y1, x0:x1] = cv2.GaussianBlur(cv2.convertScaleAbs(region), (0, 0), 0.8)
    return out
