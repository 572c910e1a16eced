"""The Engine seam's result: what one view contains, in that view's own pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in original-image pixels
    scores: np.ndarray  # (N,) float32
    classes: np.ndarray  # (N,) int64 indices into `vocabulary`
    vocabulary: tuple[str, ...]  # the class names the engine was built with
    # The per-class thresholds the engine kept these at (None: unknown, a stand-in engine),
    # so that what the line counted can be recorded beside each detection.
    thresholds: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, vocabulary: tuple[str, ...]) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int64), vocabulary)

    def names(self) -> list[str]:
        return [self.vocabulary[i] for i in self.classes]

    def to_list(self) -> list[dict]:
        """JSON-ready rows, for the pipeline's result messages and storage (with each
        detection's class threshold where the engine says which it applied)."""
        rows = [{"class": self.vocabulary[c], "score": round(float(s), 5),
                 "box": [round(float(v), 2) for v in b]}
                for b, s, c in zip(self.boxes, self.scores, self.classes)]
        if self.thresholds is not None:
            for row, c in zip(rows, self.classes):
                row["threshold"] = round(float(self.thresholds[c]), 5)
        return rows
