"""The Engine seam: `infer(images) -> list[Detections]`, whatever runtime runs the model.

Letterbox pre-processing, decoding and class-wise NMS live here, shared by every
runtime; a runtime only implements `_forward` (a float32 NCHW batch in, the deploy
graph's `boxes` (B, A, 4) xyxy in input pixels and `scores` (B, A, K) out).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from engines.detections import Detections


class Engine(ABC):
    vocabulary: tuple[str, ...]
    version: str  # model version that produced the detections

    @abstractmethod
    def infer(self, images: list[np.ndarray]) -> list[Detections]:
        """H x W x 3 uint8 BGR views of any size in; one Detections per view out."""

    def close(self) -> None:
        """Release runtime resources (GPU buffers, sessions)."""
