"""The model the engine tests run: a small detector package and synthetic views.

Until engines/rtvp lands, a stand-in with RTVP's deploy interface is built instead
(`deploy(text) -> images -> (boxes (B, A, 4) xyxy input px, scores (B, A, K))`).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import engines.export
from engines.package import ModelPackage

IMGSZ = 256
VOCABULARY = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")
TEXT_DIM = 16


class StandIn(nn.Module):
    """Convolutions to stride 32, an ltrb box per cell, scores by text-embedding similarity."""

    def __init__(self, text_dim: int = TEXT_DIM) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 4, 1), nn.SiLU(), nn.Conv2d(8, 16, 3, 4, 1), nn.SiLU(),
                                  nn.Conv2d(16, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.SiLU())
        self.box = nn.Conv2d(16, 4, 1)
        self.embed = nn.Conv2d(16, text_dim, 1)

    def deploy(self, text: torch.Tensor) -> nn.Module:
        return _Deploy(self, text)


class _Deploy(nn.Module):
    def __init__(self, model: StandIn, text: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("text", F.normalize(text.float(), dim=-1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.model.stem(images)
        h, w = f.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centers = (torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * 32
        dist = F.softplus(self.model.box(f)).flatten(2).transpose(1, 2) * 24
        boxes = torch.cat([centers - dist[..., :2], centers + dist[..., 2:]], -1)
        emb = F.normalize(self.model.embed(f).flatten(2).transpose(1, 2), dim=-1)
        return boxes, torch.sigmoid(emb @ self.text.T * 6)


@pytest.fixture(autouse=True)
def standin_detector(monkeypatch):
    monkeypatch.setattr(engines.export, "build_detector", lambda arch: StandIn(arch["text_dim"]))


def make_package(path, version: str = "v1") -> ModelPackage:
    torch.manual_seed(0)
    model = StandIn()
    model.stem[5].running_mean.uniform_(-0.2, 0.2)  # a non-trivial BN, as after training
    text = F.normalize(torch.randn(len(VOCABULARY), TEXT_DIM), dim=-1).numpy()
    return ModelPackage.create(path, version=version, state_dict=model.state_dict(),
                               arch={"scale": "standin", "imgsz": IMGSZ, "text_dim": TEXT_DIM},
                               vocabulary=list(VOCABULARY), embeddings=text)


def views(sizes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    """Glass-like grey views (height, width) with dark and bright blobs, deterministic."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        image = np.full((h, w, 3), 150, np.uint8)
        image[:] = cv2.GaussianBlur(rng.integers(90, 200, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        for _ in range(6):
            center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(3, max(4, w // 8))), int(rng.integers(3, max(4, h // 8))))
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.ellipse(image, center, axes, float(rng.integers(0, 180)), 0, 360, color, -1)
        out.append(image)
    return out
