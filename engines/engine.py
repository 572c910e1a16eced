"""The Engine seam: `infer(images) -> list[Detections]`, whatever runtime runs the model.

Letterbox pre-processing, decoding and class-wise NMS live here, shared by every
runtime; a runtime (engines/runtimes/<name>.py) only loads its model and implements
`_forward` (a float32 NCHW batch in, the deploy graph's `boxes` (B, A, 4) xyxy in input
pixels and `scores` (B, A, K) out), and may hand out its own pre-allocated input buffer.

Thresholds: `infer` returns only detections at or above their class's threshold
(EngineConfig.thresholds, else the package manifest's, else default_threshold), so
every detection it returns counts; applying the same thresholds again downstream
changes nothing. `score_floor` replaces them all by one low value, for evaluation
(mAP) and for reviewing near misses.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from engines.config import EngineConfig
from engines.detections import Detections
from engines.errors import EngineError
from engines.postprocess import decode
from engines.preprocess import check_views, letterbox_into

log = logging.getLogger(__name__)

MAX_BATCH = 6  # views per forward pass: one container


def class_thresholds(vocabulary: tuple[str, ...], config: EngineConfig,
                     package_thresholds: Mapping[str, float] | None = None,
                     score_floor: float | None = None) -> np.ndarray:
    """One threshold per vocabulary class: config, else the package's, else the default."""
    if score_floor is not None:
        return np.full(len(vocabulary), score_floor, np.float32)
    unknown = set(config.thresholds) - set(vocabulary)
    if unknown:
        log.warning("engine.thresholds name classes the model does not know: %s (vocabulary: %s)",
                    ", ".join(sorted(unknown)), ", ".join(vocabulary))
    package_thresholds = package_thresholds or {}
    return np.array([config.thresholds.get(name, package_thresholds.get(name, config.default_threshold))
                     for name in vocabulary], np.float32)


class Engine(ABC):
    """Base of every runtime: validation, letterbox, decode and NMS are done here, once."""

    def __init__(self, *, vocabulary: tuple[str, ...], version: str, imgsz: int,
                 thresholds: np.ndarray, iou: float, max_det: int = 300,
                 max_batch: int = MAX_BATCH) -> None:
        if imgsz % 32:
            raise EngineError(f"imgsz {imgsz} is not a multiple of 32")
        self.vocabulary = tuple(vocabulary)
        self.version = version
        self.imgsz = imgsz
        self.thresholds = np.asarray(thresholds, np.float32)
        self.iou = iou
        self.max_det = max_det
        self.max_batch = max_batch

    def infer(self, images: list[np.ndarray]) -> list[Detections]:
        """H x W x 3 uint8 BGR views of any size in; one Detections per view out."""
        check_views(images)
        results: list[Detections] = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start:start + self.max_batch]
            batch = self._input(len(chunk))
            letterboxes = letterbox_into(chunk, batch)
            boxes, scores = self._forward(batch)
            if not (np.isfinite(scores[:len(chunk)]).all() and np.isfinite(boxes[:len(chunk)]).all()):
                # A pass would be an escape: refuse (FP16 overflow in an engine, damaged weights).
                raise EngineError(f"model {self.version}: NaN or infinite outputs; check the weights, or "
                                  "use precision fp32 if this is an FP16 engine")
            results += decode(boxes[:len(chunk)], scores[:len(chunk)], letterboxes, self.thresholds,
                              self.vocabulary, self.iou, self.max_det)
        return results

    def _input(self, n: int) -> np.ndarray:
        """The (n, 3, S, S) float32 array the next batch is written into."""
        return np.empty((n, 3, self.imgsz, self.imgsz), np.float32)

    @abstractmethod
    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the deploy graph: (n, 3, S, S) float32 -> boxes (n, A, 4), scores (n, A, K)."""

    def close(self) -> None:
        """Release runtime resources (GPU buffers, sessions)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
