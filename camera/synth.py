"""Synthetic glass containers: the project's stand-in for the MMIO camera images.

`GlassRenderer.container(seed, seq)` decides a container (shape, glass colour, 0-4
defects on its cylinder surface); `render(container, view)` draws what camera `view`
(0-5, 60 degrees apart) sees, with a tight box for every defect it can see. The same
(seed, seq, view) always gives the same pixels.

Placement. A defect sits at angle theta and row z on the wall. Seen from view angle
phi = 60 * view degrees it appears at x = cx + r(z) sin(theta - phi), squeezed
horizontally by c = cos(theta - phi). Near-wall defects (c >= 0.15) are drawn in
full. Glass is transparent, so a defect on the far wall (c <= -0.15) is still seen
through the container: mirrored, out of focus and faint (`back_wall_contrast`).
Near the silhouette (|c| < 0.15) it is hidden. A defect is labelled in a view when
drawing it changed a few pixels by `visible_delta` grey levels or many by half of
that (a person sees it against the noise); its box is the extent of the pixels it
changed by BOX_DELTA, so faint far-wall defects are labelled only when they show.

Speed. The back-lit container is computed once per container and cached; a view is a
shifted crop, an exposure scale, the wall's thickness streaks and mould seams turned
to the view, small defect patches, and camera noise taken at a random offset from a
noise tile made once per renderer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from camera.frame import VIEWS
from camera import defect_catalogue
from camera.synth_defects import DRAW, DefectPatch, scaled, varied
from camera.synth_glass import BottleShape, apply_wall_profile, backlight, draw_seams, render_base, wall_profile

CLASSES = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")
# Bump when a (recipe, seed) no longer gives the same pixels: model manifests record it.
RENDERER_VERSION = "2"
# The catalogues whose pixels each version changed: an older recipe of another catalogue
# renders the very same images again. 2: a chipped or unfilled finish lets the back-light
# through, and fins on the finish glint brighter (they were barely visible on its dark glass).
RENDERER_CHANGES = {"2": ("full",)}


def same_pixels_as(version: str, catalogue: str) -> bool:
    """Would this renderer draw a `catalogue` recipe exactly as renderer `version` did?"""
    try:
        old = int(version)
    except ValueError:
        return False
    return old <= int(RENDERER_VERSION) and not any(
        catalogue in changed for v, changed in RENDERER_CHANGES.items() if int(v) > old)
CATALOGUES = ("classic", "full")  # the paper's five classes; the glass-industry catalogue
MIN_VISIBLE_PX = 4  # pixels changed by visible_delta for a small defect to be seen
MIN_FAINT_PX = 25  # or pixels changed by half of it: the eye follows a long faint thread
BOX_DELTA = 8.0  # a box spans the pixels the defect changed by this many grey levels
HIDDEN_COS = 0.15  # |cos| below this the defect is edge-on, inside the dark wall band
PAD_X, PAD_Y = 10, 6  # position jitter per view, pixels
NOISE_PAD = 64
_NOISE_SEED = 0x6C455  # the noise tile is part of the camera, not of the container
SHARED_CONTAINERS = 16  # recent containers kept for the other cameras
_SHARED: OrderedDict = OrderedDict()
_SHARED_LOCK = threading.Lock()


def _rng(*keys: int) -> np.random.Generator:
    """One independent stream per (seed, seq, purpose); any integers, negative included."""
    return np.random.default_rng([k % 2**64 for k in keys])


@dataclass(frozen=True)
class Defect:
    cls: str
    theta: float  # radians around the container, 0 faces view 0
    z: float  # canonical row of the centre
    patch: DefectPatch


@dataclass
class Container:
    seed: int
    seq: int
    shape: BottleShape
    defects: list[Defect]
    base: np.ndarray | None = field(default=None, repr=False)  # cached padded picture, uint8 BGR
    wall: np.ndarray | None = field(default=None, repr=False)  # cached thickness around the wall
    seam: float = 0.0  # angle of the mould seams (and seam + pi)
    distractors: list[Defect] = field(default_factory=list)  # non-defects that must pass: never labelled


@dataclass
class RenderedView:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    classes: list[str]
    defect_index: list[int] = field(default_factory=list)  # which Container.defects each box is
    far_wall: list[bool] = field(default_factory=list)  # seen through the container
    negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # distractors seen, xyxy


class GlassRenderer:
    """Back-lit glass containers with labelled defects, 700 x 820 like the paper's cameras."""

    def __init__(self, width: int = 700, height: int = 820, classes: tuple[str, ...] | list[str] | None = None,
                 defect_free_share: float = 0.3, back_wall_contrast: float = 0.35,
                 visible_delta: float = 16.0, catalogue: str = "classic") -> None:
        if catalogue not in CATALOGUES:
            raise ValueError(f"unknown catalogue {catalogue!r}; choose one of {', '.join(CATALOGUES)}")
        known = catalogue_classes(catalogue)
        classes = known if classes is None else classes
        unknown = [name for name in classes if name not in known]
        if unknown or not classes:
            raise ValueError(f"unknown defect classes {unknown} in the {catalogue} catalogue; known: {', '.join(known)}")
        if not 0 <= defect_free_share <= 1:
            raise ValueError(f"defect_free_share must be within 0..1, got {defect_free_share}")
        self.width, self.height = width, height
        self.scale = min(width / 700, height / 820)  # defects and glass keep their physical size
        self.classes = tuple(classes)
        self.catalogue = catalogue
        self.defect_free_share = defect_free_share
        self.back_wall_contrast = back_wall_contrast
        self.visible_delta = visible_delta
        rng = np.random.default_rng(_NOISE_SEED)
        self._light = backlight(width + 2 * PAD_X, height + 2 * PAD_Y, rng)
        self._canvas = cv2.merge([cv2.convertScaleAbs(self._light)] * 3)
        self._noise = self._noise_tile(rng)
        # The two banks differ a little in lighting, as two real back-lights do.
        self._bank_gain = (1.0, 0.97)

    def _noise_tile(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sensor noise (shared grey part plus per-channel part), made once.

        Kept as its positive and negative parts so that a view adds it with two
        saturating uint8 operations instead of a float round trip.
        """
        h, w = self.height + NOISE_PAD, self.width + NOISE_PAD
        noise = rng.normal(0, 1.8, (h, w, 1)) + rng.normal(0, 0.9, (h, w, 3))
        noise = np.clip(noise.round(), -255, 255)
        return np.maximum(noise, 0).astype(np.uint8), np.maximum(-noise, 0).astype(np.uint8)

    def container(self, seed: int, seq: int) -> Container:
        """Shape and defects of container `seq` in run `seed`; pixels come later, cached.

        Six synthetic cameras are six renderers in one process asking for the same
        container: a small module-wide cache lets them share it and its picture.
        """
        key = (self.width, self.height, self.classes, self.defect_free_share, self.catalogue, seed, seq)
        with _SHARED_LOCK:
            container = _SHARED.get(key)
        if container is None:
            container = self._new_container(seed, seq)
            with _SHARED_LOCK:
                container = _SHARED.setdefault(key, container)
                while len(_SHARED) > SHARED_CONTAINERS:
                    _SHARED.popitem(last=False)
        return container

    def _new_container(self, seed: int, seq: int) -> Container:
        rng = _rng(seed, seq)
        shape = BottleShape.sample(rng, self.width, self.height)
        count = 0 if rng.random() < self.defect_free_share else int(rng.integers(1, 5))
        if self.catalogue == "full":
            return self._catalogue_container(seed, seq, shape, count, rng)
        defects = []
        top = shape.neck_end + 0.45 * (shape.shoulder_end - shape.neck_end)
        for _ in range(count):
            cls = self.classes[int(rng.integers(len(self.classes)))]
            defects.append(Defect(cls=cls, theta=float(rng.uniform(0, 2 * np.pi)),
                                  z=float(rng.uniform(top, shape.base - shape.heel_h)),
                                  patch=scaled(DRAW[cls](rng), self.scale)))
        return Container(seed=seed, seq=seq, shape=shape, defects=defects,
                         seam=float(rng.uniform(0, np.pi)))

    def _catalogue_container(self, seed: int, seq: int, shape: BottleShape, count: int,
                             rng: np.random.Generator) -> Container:
        """Families drawn in their own zones with the catalogue's spread, plus 0-3 distractors."""
        def placed(name: str, draw, zones: tuple[str, ...]) -> Defect:
            low, high = defect_catalogue.zone_rows(zones[int(rng.integers(len(zones)))], shape)
            return Defect(cls=name, theta=float(rng.uniform(0, 2 * np.pi)), z=float(rng.uniform(low, high)),
                          patch=scaled(varied(draw(rng), rng), self.scale))

        defects = []
        for _ in range(count):
            family = defect_catalogue.family(self.classes[int(rng.integers(len(self.classes)))])
            defects.append(placed(family.name, family.draw, family.zones))
        kinds = list(defect_catalogue.DISTRACTORS)
        distractors = [placed(kind, *defect_catalogue.DISTRACTORS[kind])
                       for kind in (kinds[int(rng.integers(len(kinds)))] for _ in range(int(rng.integers(0, 4))))]
        return Container(seed=seed, seq=seq, shape=shape, defects=defects, seam=float(rng.uniform(0, np.pi)),
                         distractors=distractors)

    def _base(self, container: Container) -> np.ndarray:
        """The container's defect-free picture: built once, shared by all six views."""
        if container.base is None:
            rng = _rng(container.seed, container.seq, 1_000)
            container.wall = wall_profile(rng)
            container.base = render_base(container.shape, self._light, self._canvas, rng, PAD_X, PAD_Y)
        return container.base

    def render(self, container: Container, view: int, defects: bool = True) -> RenderedView:
        """What camera `view` sees; `defects=False` draws the same picture without them."""
        if not 0 <= view < VIEWS:
            raise ValueError(f"view must be 0..{VIEWS - 1}, got {view}")
        base = self._base(container)
        rng = _rng(container.seed, container.seq, 2_000 + view)
        dx, dy = int(rng.integers(-PAD_X, PAD_X + 1)), int(rng.integers(-PAD_Y, PAD_Y + 1))
        gain = rng.uniform(0.93, 1.05) * self._bank_gain[view // 3]
        ny, nx = int(rng.integers(NOISE_PAD)), int(rng.integers(NOISE_PAD))
        y0, x0 = PAD_Y - dy, PAD_X - dx  # the container moves by (dx, dy) in the picture
        image = cv2.convertScaleAbs(base[y0:y0 + self.height, x0:x0 + self.width], alpha=gain)
        shape = container.shape
        phi = view * 2 * np.pi / VIEWS
        apply_wall_profile(image, shape, container.wall, phi, dx, dy)
        draw_seams(image, shape, container.seam, phi, dx, dy)
        boxes, classes, index, far = [], [], [], []
        negatives = [box for item in container.distractors  # drawn first: a defect over one keeps its box
                     if (box := self._place(image, item, phi, shape, dx, dy)) is not None]
        if defects:
            for i, defect in enumerate(container.defects):
                box = self._place(image, defect, phi, shape, dx, dy)
                if box is not None:
                    boxes.append(box)
                    classes.append(defect.cls)
                    index.append(i)
                    far.append(bool(np.cos(defect.theta - phi) < 0))
        window = (slice(ny, ny + self.height), slice(nx, nx + self.width))
        image = cv2.subtract(cv2.add(image, self._noise[0][window]), self._noise[1][window])
        return RenderedView(image=image, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                            classes=classes, defect_index=index, far_wall=far,
                            negatives=np.asarray(negatives, np.float32).reshape(-1, 4))

    def _place(self, image: np.ndarray, defect: Defect, phi: float, shape: BottleShape, dx: int,
               dy: int) -> tuple[float, float, float, float] | None:
        """Turn a defect to the view and draw it, unless it is edge-on; its box or None."""
        c = np.cos(defect.theta - phi)
        if abs(c) < HIDDEN_COS:
            return None
        r = float(shape.radius(np.array([defect.z]))[0])
        x = shape.cx + dx + r * np.sin(defect.theta - phi)
        return self._draw(image, defect.patch, x, defect.z + dy, c, shape, dx, dy)

    def _visible(self, delta: np.ndarray) -> bool:
        """Would a person see it against the noise: a few strong pixels or many faint ones."""
        return (np.count_nonzero(delta >= self.visible_delta) >= MIN_VISIBLE_PX
                or np.count_nonzero(delta >= self.visible_delta / 2) >= MIN_FAINT_PX)

    def _draw(self, image: np.ndarray, patch: DefectPatch, x: float, y: float, c: float,
              shape: BottleShape, dx: int, dy: int) -> tuple[float, float, float, float] | None:
        """Blend one defect into `image` in place; return its tight box or None if unseen."""
        opacity, glint = patch.opacity, patch.glint
        h, w = opacity.shape
        new_w = max(int(round(w * abs(c))), 1)
        opacity = cv2.resize(opacity, (new_w, h), interpolation=cv2.INTER_AREA)
        if glint is not None:
            glint = cv2.resize(glint, (new_w, h), interpolation=cv2.INTER_AREA)
        strength = 1.0
        if c < 0:  # far wall: seen from behind through the container, out of focus
            opacity = cv2.GaussianBlur(opacity[:, ::-1], (0, 0), 1.6)
            glint = None if glint is None else cv2.GaussianBlur(glint[:, ::-1], (0, 0), 1.6)
            strength = self.back_wall_contrast
        px0, py0 = int(round(x - new_w / 2)), int(round(y - h / 2))
        ix0, iy0 = max(px0, 0), max(py0, 0)
        ix1, iy1 = min(px0 + new_w, self.width), min(py0 + h, self.height)
        if ix1 <= ix0 or iy1 <= iy0:
            return None
        sl = (slice(iy0 - py0, iy1 - py0), slice(ix0 - px0, ix1 - px0))
        # Only glass carries defects: nothing is drawn beyond the silhouette.
        rows = np.arange(iy0, iy1) - dy
        r = np.maximum(shape.radius(rows), 1e-3)[:, None]
        u = np.abs(np.arange(ix0, ix1)[None, :] - dx - shape.cx) / r
        on_glass = (u < 0.99).astype(np.float32)
        a = (opacity[sl] * on_glass * strength)[:, :, None]
        region = image[iy0:iy1, ix0:ix1]
        before = region.astype(np.float32)
        after = before * (1 - a * (1 - np.asarray(patch.color, np.float32)))
        if glint is not None:  # redirected back-light: as bright as the light behind it
            light = 1.0 if patch.through else before / 230.0
            after += (glint[sl] * on_glass * strength)[:, :, None] * light
        after = np.clip(after, 0, 255).round()
        delta = np.abs(after - before).max(axis=2)
        region[:] = after.astype(np.uint8)
        if not self._visible(delta):
            return None
        ys, xs = np.nonzero(delta >= BOX_DELTA)
        return (float(ix0 + xs.min()), float(iy0 + ys.min()),
                float(ix0 + xs.max() + 1), float(iy0 + ys.max() + 1))


def catalogue_classes(catalogue: str) -> tuple[str, ...]:
    """The defect classes a catalogue can draw: the paper's five, or every catalogue family."""
    return CLASSES if catalogue == "classic" else defect_catalogue.NAMES


def without(container: Container, index: int) -> Container:
    """The same container with defect `index` removed (tests, ablations); pixels cache kept."""
    return replace(container, defects=[d for i, d in enumerate(container.defects) if i != index])
