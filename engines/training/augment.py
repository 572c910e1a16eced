"""Augmentation for small defects on glass: nothing here may erase a 3-pixel black spot.

Views are never shrunk: training sees native-resolution crops (the network is
convolutional and runs on whole views letterboxed at inference). Crops are placed
over a defect most of the time, because defects cover well under 1% of a view and
random crops would be almost all background; for the same reason a share of crops is
centred on a labelled look-alike that must pass (a water drop, dust), where a dataset
names them, so the model learns them as background instead of rarely seeing one. Photometric changes mimic exposure and
gain drift between cameras; blur stays below one pixel of sigma.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engines.preprocess import PAD_VALUE


@dataclass(frozen=True)
class Augment:
    crop: int = 320  # square crop side in pixels, a multiple of 32
    scale: tuple[float, float] = (1.0, 1.0)  # resize range; down to the letterbox scale of inference
    defect_crop_p: float = 0.85  # share of crops placed to contain a whole defect
    negative_crop_p: float = 0.25  # share of crops on a look-alike, of images that name any
    min_visible: float = 0.5  # a box cut by the crop is kept if this share of it remains
    hflip_p: float = 0.5
    vflip_p: float = 0.0  # off: containers have a top and a bottom
    exposure_p: float = 0.8
    gain: tuple[float, float] = (0.7, 1.3)
    offset: tuple[float, float] = (-20.0, 20.0)
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 0.7)
    noise_p: float = 0.3
    noise_sigma: float = 3.0

    def __call__(self, image: np.ndarray, boxes: np.ndarray, classes: list[str], rng: np.random.Generator,
                 negatives: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        negatives = np.zeros((0, 4), np.float32) if negatives is None else negatives
        if self.scale != (1.0, 1.0):
            s = rng.uniform(*self.scale)
            image = cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)),
                               interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            boxes, negatives = boxes * np.float32(s), negatives * np.float32(s)
        image, boxes, classes = self.random_crop(image, boxes, classes, rng, negatives)
        image, boxes = self.flip(image, boxes, rng)
        return self.photometric(image, rng), boxes, classes

    def random_crop(self, image, boxes, classes, rng, negatives):
        h, w = image.shape[:2]
        size = self.crop
        # No draw for an image without look-alikes: the crops of such datasets stay as they were.
        target = negatives if len(negatives) and rng.random() < self.negative_crop_p else boxes
        if target is negatives or (len(boxes) and rng.random() < self.defect_crop_p):
            x1, y1, x2, y2 = target[rng.integers(len(target))]
            left = _origin(x1, x2, size, w, rng)
            top = _origin(y1, y2, size, h, rng)
        else:
            left = int(rng.integers(0, max(w - size, 0) + 1))
            top = int(rng.integers(0, max(h - size, 0) + 1))
        canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
        patch = image[top:top + size, left:left + size]
        canvas[:patch.shape[0], :patch.shape[1]] = patch
        if not len(boxes):
            return canvas, boxes.reshape(0, 4), []
        shifted = boxes - np.array([left, top, left, top], np.float32)
        clipped = np.clip(shifted, 0, [patch.shape[1], patch.shape[0]] * 2)
        area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
        kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        keep = (kept_area >= self.min_visible * area) & (kept_area > 0)
        return canvas, clipped[keep].astype(np.float32), [c for c, k in zip(classes, keep) if k]

    def flip(self, image, boxes, rng):
        size = image.shape[1]
        if rng.random() < self.hflip_p:
            image = image[:, ::-1]
            boxes = boxes.copy()
            boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
        if rng.random() < self.vflip_p:
            image = image[::-1]
            boxes = boxes.copy()
            boxes[:, [1, 3]] = image.shape[0] - boxes[:, [3, 1]]
        return np.ascontiguousarray(image), boxes

    def photometric(self, image, rng):
        out = image.astype(np.float32)
        if rng.random() < self.exposure_p:
            out = out * rng.uniform(*self.gain) + rng.uniform(*self.offset)
        if rng.random() < self.blur_p:
            out = cv2.GaussianBlur(out, (3, 3), rng.uniform(*self.blur_sigma))
        if rng.random() < self.noise_p:
            out = out + rng.normal(0, self.noise_sigma, out.shape).astype(np.float32)
        return np.clip(out, 0, 255).astype(np.uint8)


def _origin(lo: float, hi: float, size: int, limit: int, rng: np.random.Generator) -> int:
    """A crop origin along one axis so that [lo, hi] lies inside the crop (centred if too big)."""
    if limit <= size:
        return 0
    low, high = int(np.ceil(hi)) - size, int(lo) + 1
    start = int(rng.integers(low, high)) if low < high else int((lo + hi) / 2 - size / 2)
    return int(np.clip(start, 0, limit - size))
