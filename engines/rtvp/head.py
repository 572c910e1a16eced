"""Contrastive detection head with DFL box regression (docs/rtvp-spec.md 1.9, YOLO-World v2).

Class scores are dot products between BN-normalised region embeddings and the
L2-normalised text embeddings, so any vocabulary works with the same weights. The
text enters only through `class_weights(text)` (normalize(T) * exp(s) per level): the
deploy graph stores those as constants and the contrast is a plain MatMul.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engines.rtvp.common import Conv, dfl_expectation, dist2bbox, make_anchors

STRIDES = (8, 16, 32)  # the levels every model has
P2_STRIDE = 4  # the optional fine level (RTVPConfig.p2); it comes after the others
K_INIT = 65  # the class count only sets the initial bias value, never a weight shape


def level_strides(p2: bool) -> tuple[int, ...]:
    return STRIDES + ((P2_STRIDE,) if p2 else ())


class BNContrast(nn.Module):
    def __init__(self, text_dim: int, stride: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(-1.0))
        self.bias = nn.Parameter(torch.tensor([math.log(5 / K_INIT / (640 / stride) ** 2)]))

    def class_weights(self, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(text, dim=-1) * self.logit_scale.exp()

    def forward(self, emb: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) embeddings, (K, D) weights -> (B, K, H*W) logits."""
        x = self.norm(emb).flatten(2)
        return weights @ x + self.bias.view(1, 1, 1)


class WorldHead(nn.Module):
    """One box branch and one embedding branch per level; `channels` and `strides` pair up."""

    def __init__(self, channels: tuple[int, ...], text_dim: int, reg_max: int = 16,
                 strides: tuple[int, ...] = STRIDES):
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError(f"{len(channels)} level channels for strides {strides}")
        self.reg_max = reg_max
        self.strides = strides  # branch widths follow the stride-8 level (channels[0]) in every model
        c2 = max(16, channels[0] // 4, 4 * reg_max)
        c3 = max(channels[0], 64)
        self.box = nn.ModuleList(
            nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for c in channels)
        self.embed = nn.ModuleList(
            nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, text_dim, 1)) for c in channels)
        self.contrast = nn.ModuleList(BNContrast(text_dim, s) for s in strides)
        for b in self.box:
            nn.init.constant_(b[-1].bias, 1.0)

    def class_weights(self, text: torch.Tensor) -> list[torch.Tensor]:
        return [c.class_weights(text) for c in self.contrast]

    def forward(self, feats: list[torch.Tensor], weights: list[torch.Tensor]) -> dict:
        """-> raw outputs: dist (B, A, 4*reg_max), logits (B, A, K), level shapes and strides."""
        dist = torch.cat([b(f).flatten(2) for b, f in zip(self.box, feats)], 2).transpose(1, 2)
        logits = torch.cat([c(e(f), w) for c, e, f, w in zip(self.contrast, self.embed, feats, weights)], 2)
        return {"dist": dist, "logits": logits.transpose(1, 2),
                "shapes": [tuple(f.shape[-2:]) for f in feats], "strides": list(self.strides)}

    def decode(self, raw: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """-> boxes (B, A, 4) xyxy in input pixels, scores (B, A, K) sigmoid."""
        anchors, strides = make_anchors(raw["shapes"], raw["strides"])
        anchors, strides = anchors.to(raw["dist"]), strides.to(raw["dist"])
        boxes = dist2bbox(dfl_expectation(raw["dist"], self.reg_max), anchors) * strides
        return boxes, raw["logits"].sigmoid()


def build_head(channels: tuple[int, ...], text_dim: int, reg_max: int = 16,
               strides: tuple[int, ...] = STRIDES) -> WorldHead:
    return WorldHead(channels, text_dim, reg_max, strides)
