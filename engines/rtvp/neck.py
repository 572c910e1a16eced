"""Text-guided PAN (paper Eq. 7, docs/rtvp-spec.md 1.8): YOLO-World's max-sigmoid attention.

Each fusion block scales its image features by sigmoid(max over the vocabulary of
<feature, projected text>), so the neck highlights what any prompt describes. The text
enters only through `guides(text)`: the deploy graph computes the guides once and
stores them as constants. The attention is written with MatMul, not einsum.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engines.rtvp.common import C2f, Bottleneck, Conv


class MaxSigmoidAttn(nn.Module):
    def __init__(self, c: int, nh: int, text_dim: int):
        super().__init__()
        self.nh, self.hc = nh, c // nh
        self.gl = nn.Linear(text_dim, c)
        self.bias = nn.Parameter(torch.zeros(nh))
        self.proj_conv = Conv(c, c, 3, act=False)

    def guide(self, text: torch.Tensor) -> torch.Tensor:
        """(K, D) text -> (nh, K, hc) per-head guide."""
        return self.gl(text).view(text.shape[0], self.nh, self.hc).transpose(0, 1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        embed = x.view(b, self.nh, self.hc, h * w)
        aw = (guide @ embed).amax(2) / math.sqrt(self.hc) + self.bias.view(1, -1, 1)
        aw = torch.sigmoid(aw).view(b, self.nh, 1, h, w)
        return (self.proj_conv(x).view(b, self.nh, self.hc, h, w) * aw).view(b, c, h, w)


class C2fAttn(nn.Module):
    """C2f with one bottleneck and a max-sigmoid attention branch (ec = c2 / 2, hc = 32)."""

    def __init__(self, c1: int, c2: int, text_dim: int):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.m = Bottleneck(self.c, self.c, shortcut=False)
        self.attn = MaxSigmoidAttn(self.c, max(1, self.c // 32), text_dim)
        self.cv2 = Conv(4 * self.c, c2, 1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.append(self.m(y[-1]))
        y.append(self.attn(y[-1], guide))
        return self.cv2(torch.cat(y, 1))


class PlainBlock(C2f):
    """The text_attn=off ablation: a C2f that ignores the guide."""

    def forward(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class TextPAN(nn.Module):
    """(P'3, P'4, P'5[, P2]) -> (N3, N4, N5[, N2]), same channels, guided by the vocabulary.

    With `p2_channels` a fine stride-4 output N2 is added as a branch off N3 (up-sampled
    N3 and the backbone's P2, like YOLOv8-p2's top-down step). It comes last and leaves
    N3-N5 as they were, so a three-level model's weights load unchanged into the same
    modules and only the branch starts untrained.
    """

    def __init__(self, channels: tuple[int, int, int], text_dim: int, text_attn: bool,
                 p2_channels: int | None = None):
        super().__init__()
        c3, c4, c5 = channels
        block = (lambda a, b: C2fAttn(a, b, text_dim)) if text_attn else (lambda a, b: PlainBlock(a, b, 1))
        self.text_attn = text_attn
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top_down4 = block(c5 + c4, c4)
        self.top_down3 = block(c4 + c3, c3)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bottom_up4 = block(c3 + c4, c4)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bottom_up5 = block(c4 + c5, c5)
        self.top_down2 = block(c3 + p2_channels, p2_channels) if p2_channels else None

    def blocks(self) -> list[nn.Module]:
        return [self.top_down4, self.top_down3, self.bottom_up4, self.bottom_up5,
                *([self.top_down2] if self.top_down2 is not None else [])]

    def guides(self, text: torch.Tensor) -> list[torch.Tensor | None]:
        if not self.text_attn:
            return [None] * len(self.blocks())
        return [b.attn.guide(text) for b in self.blocks()]

    def forward(self, feats: list[torch.Tensor], guides: list[torch.Tensor | None]) -> list[torch.Tensor]:
        p3, p4, p5 = feats[:3]
        g12, g15, g18, g21 = guides[:4]
        l12 = self.top_down4(torch.cat((self.up(p5), p4), 1), g12)
        n3 = self.top_down3(torch.cat((self.up(l12), p3), 1), g15)
        n4 = self.bottom_up4(torch.cat((self.down3(n3), l12), 1), g18)
        n5 = self.bottom_up5(torch.cat((self.down4(n4), p5), 1), g21)
        if self.top_down2 is None:
            return [n3, n4, n5]
        n2 = self.top_down2(torch.cat((self.up(n3), feats[3]), 1), guides[4])
        return [n3, n4, n5, n2]


def build_neck(channels: tuple[int, int, int], text_dim: int, text_attn: bool,
               p2_channels: int | None = None) -> TextPAN:
    return TextPAN(channels, text_dim, text_attn, p2_channels)
