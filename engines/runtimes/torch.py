"""PyTorch eager: the development runtime (CPU, or CUDA in half precision).

It runs the same deploy module that is exported to ONNX, so it is the reference the
other runtimes are checked against (tests/test_engines_parity.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from engines.config import EngineConfig
from engines.engine import Engine
from engines.export import load_model, vocabulary_embeddings
from engines.package import ModelPackage

log = logging.getLogger(__name__)


class TorchEngine(Engine):
    def __init__(self, package: ModelPackage, *, config: EngineConfig, thresholds: np.ndarray,
                 vocabulary: Sequence[str] | None = None, device: str | None = None,
                 max_batch: int = 6) -> None:
        import torch

        vocabulary, embeddings = vocabulary_embeddings(package, vocabulary)
        super().__init__(vocabulary=vocabulary, version=package.version, imgsz=config.imgsz,
                         thresholds=thresholds, iou=config.iou, max_det=config.max_det, max_batch=max_batch)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # Half precision on the GPU only: CPU kernels for fp16 are slow or missing.
        self.dtype = torch.float16 if self.device.type == "cuda" and config.precision != "fp32" else torch.float32
        if self.device.type == "cpu":
            torch.set_num_threads(config.threads)
        module = load_model(package).deploy(torch.from_numpy(embeddings)).eval()
        self.module = module.to(self.device, self.dtype)
        log.info("PyTorch %s: %s on %s (%s), %d classes, input %dx%d", torch.__version__, package.version,
                 self.device, self.dtype, len(vocabulary), self.imgsz, self.imgsz)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            images = torch.from_numpy(batch).to(self.device, self.dtype, non_blocking=True)
            boxes, scores = self.module(images)
            return boxes.float().cpu().numpy(), scores.float().cpu().numpy()

    def close(self) -> None:
        self.module = None
