"""Letterbox pre-processing shared by every runtime, so that all of them see the same pixels.

A view of any size is resized to fit `imgsz` x `imgsz` keeping its aspect ratio, padded
with grey 114 (the value the detector was trained with), turned from BGR to RGB and
scaled to [0, 1]. `Letterbox` remembers the scale and padding so that boxes found in
the model's input pixels can be mapped back to the view's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engines.errors import EngineError

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    scale: float  # model-input pixels per view pixel
    left: int  # padding added on the left, in model-input pixels
    top: int
    width: int  # the view's own size
    height: int

    def to_view(self, boxes: np.ndarray) -> np.ndarray:
        """Model-input xyxy boxes -> the view's own pixels, clipped to the view."""
        out = (boxes - np.array([self.left, self.top, self.left, self.top], np.float32)) / self.scale
        np.clip(out[:, 0::2], 0, self.width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.height, out=out[:, 1::2])
        return out.astype(np.float32, copy=False)


def check_views(images: list[np.ndarray]) -> None:
    """Refuse input a model would silently get wrong: the message names the view and the fix."""
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise EngineError("infer() needs a non-empty list of H x W x 3 uint8 BGR views")
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray):
            raise EngineError(f"view {i}: expected a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise EngineError(f"view {i}: dtype {image.dtype}, expected uint8 (convert with "
                              "np.clip(x, 0, 255).astype(np.uint8))")
        if image.ndim != 3 or image.shape[2] != 3:
            raise EngineError(f"view {i}: shape {image.shape}, expected H x W x 3 BGR "
                              "(convert Mono8 with cv2.cvtColor(x, cv2.COLOR_GRAY2BGR))")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise EngineError(f"view {i}: empty image {image.shape}")


def letterbox_into(images: list[np.ndarray], batch: np.ndarray) -> list[Letterbox]:
    """Write `images` letterboxed into `batch` (N, 3, S, S) float32 in place.

    Writing in place lets a runtime hand out its own pre-allocated (page-locked or
    IO-bound) input buffer, so no extra copy is made per call.
    """
    size = batch.shape[-1]
    canvas = np.empty((size, size, 3), np.uint8)
    boxes = []
    for image, plane in zip(images, batch):
        h, w = image.shape[:2]
        scale = min(size / h, size / w)
        new_w, new_h = min(size, round(w * scale)), min(size, round(h * scale))
        left, top = (size - new_w) // 2, (size - new_h) // 2
        canvas.fill(PAD_VALUE)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas[top:top + new_h, left:left + new_w] = (
            image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=interp))
        # BGR HWC uint8 -> RGB CHW float in [0, 1], straight into the runtime's buffer.
        np.multiply(canvas[:, :, ::-1].transpose(2, 0, 1), np.float32(1 / 255), out=plane,
                    casting="unsafe")
        boxes.append(Letterbox(scale, left, top, w, h))
    return boxes
