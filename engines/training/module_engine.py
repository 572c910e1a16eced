"""An Engine over a model still in memory, so validation during training goes through the
same letterbox, decode and NMS (engines/engine.py) as every runtime on the line."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from engines.engine import Engine
from engines.training.evaluate import EVAL_THRESHOLD


class ModuleEngine(Engine):
    def __init__(self, model: torch.nn.Module, text: torch.Tensor, vocabulary: Sequence[str], *,
                 imgsz: int, iou: float = 0.7, version: str = "in-training",
                 score_floor: float = EVAL_THRESHOLD) -> None:
        super().__init__(vocabulary=tuple(vocabulary), version=version, imgsz=imgsz,
                         thresholds=np.full(len(vocabulary), score_floor, np.float32), iou=iou)
        self.model, self.text = model, text
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        was_training = self.model.training
        self.model.eval()
        try:
            boxes, scores = self.model(torch.from_numpy(batch).to(self.device), self.text)
        finally:
            self.model.train(was_training)
        return boxes.float().cpu().numpy(), scores.float().cpu().numpy()
