"""The expert CNN: the detector's own YOLOv8 CSP backbone (docs/rtvp-spec.md 1.1).

It gives the P3/P4/P5 features the neck reads and the targets of the domain-adaptation
reconstruction loss, and the stride-4 stem output (P2) that the optional fine level
reads (RTVPConfig.p2). Scales follow yolov8.yaml; `tiny` is ours, for tests and quick
CPU runs.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.rtvp.common import C2f, SPPF, Conv

# scale -> (depth multiple, width multiple, max channels)
SCALES: dict[str, tuple[float, float, int]] = {
    "tiny": (0.17, 0.125, 1024),
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
}


def scaled_width(c: int, scale: str) -> int:
    _, w, max_c = SCALES[scale]
    return max(8, int(-(-min(c, max_c) * w // 8) * 8))


def scaled_depth(n: int, scale: str) -> int:
    return max(round(n * SCALES[scale][0]), 1)


def level_channels(scale: str) -> tuple[int, int, int]:
    """Channels of P3, P4, P5 at this scale (n: 64/128/256, s: 128/256/512)."""
    return scaled_width(256, scale), scaled_width(512, scale), scaled_width(1024, scale)


class ExpertBackbone(nn.Module):
    """YOLOv8 backbone layers 0-9; forward returns (P2, P3, P4, P5) at strides 4, 8, 16, 32."""

    def __init__(self, scale: str):
        super().__init__()
        c1, c2, c3, c4, c5 = (scaled_width(c, scale) for c in (64, 128, 256, 512, 1024))
        d = lambda n: scaled_depth(n, scale)  # noqa: E731
        self.stem = nn.Sequential(Conv(3, c1, 3, 2), Conv(c1, c2, 3, 2), C2f(c2, c2, d(3), True))
        self.stage3 = nn.Sequential(Conv(c2, c3, 3, 2), C2f(c3, c3, d(6), True))
        self.stage4 = nn.Sequential(Conv(c3, c4, 3, 2), C2f(c4, c4, d(6), True))
        self.stage5 = nn.Sequential(Conv(c4, c5, 3, 2), C2f(c5, c5, d(3), True), SPPF(c5, c5))
        self.channels = (c3, c4, c5)
        self.p2_channels = c2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        p2 = self.stem(x)
        p3 = self.stage3(p2)
        p4 = self.stage4(p3)
        return p2, p3, p4, self.stage5(p4)


def build_expert(scale: str) -> ExpertBackbone:
    return ExpertBackbone(scale)
