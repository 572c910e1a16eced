"""Expert-assisted domain adaptation (paper Eq. 1-3, docs/rtvp-spec.md 1.3-1.4).

Mobile-SAM's single stride-16 map is sampled to the expert's three levels, randomly
masked in training, and a small conv/deconv decoder reconstructs the expert's own
features from it. The reconstruction F^R is the "coarse visual prompt" the scorer reads,
so the decoder stays in the inference graph; only the mask and the loss are training-only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.rtvp.common import Conv

MASK_UNIT = 32  # input pixels per masking unit: aligned with the selection patches


class MultiScaleSampler(nn.Module):
    """SAM map (C_s, H/16, W/16) -> (c3 @ s8, c4 @ s16, c5 @ s32), ViTDet simple pyramid."""

    def __init__(self, c_sam: int, channels: tuple[int, int, int]):
        super().__init__()
        c3, c4, c5 = channels
        self.up = nn.Sequential(nn.ConvTranspose2d(c_sam, c_sam // 2, 2, 2), Conv(c_sam // 2, c3, 1), Conv(c3, c3, 3))
        self.mid = nn.Sequential(Conv(c_sam, c4, 1), Conv(c4, c4, 3))
        self.down = nn.Sequential(nn.MaxPool2d(2, 2), Conv(c_sam, c5, 1), Conv(c5, c5, 3))

    def forward(self, s: torch.Tensor) -> list[torch.Tensor]:
        return [self.up(s), self.mid(s), self.down(s)]


def random_unit_mask(batch: int, hw: tuple[int, int], ratio: float, device: torch.device) -> torch.Tensor:
    """(B, 1, H/32, W/32) binary keep-mask with exactly round(ratio * units) units zeroed per image."""
    gh, gw = hw[0] // MASK_UNIT, hw[1] // MASK_UNIT
    n = gh * gw
    n_drop = int(round(ratio * n))
    rank = torch.rand(batch, n, device=device).argsort(1).argsort(1)
    return (rank >= n_drop).float().view(batch, 1, gh, gw)


def apply_mask(feats: list[torch.Tensor], keep: torch.Tensor) -> list[torch.Tensor]:
    """One mask shared by all levels: each 32-px unit covers 4x4, 2x2, 1x1 cells at s8/16/32."""
    return [f * F.interpolate(keep, size=f.shape[-2:], mode="nearest") for f in feats]


class ReconstructionDecoder(nn.Module):
    """Three 3x3 convs then three stride-1 3x3 deconvs (Eq. 2 read sequentially); linear output
    because the expert targets (SiLU outputs) can be negative."""

    def __init__(self, c: int, d: int):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.net = nn.Sequential(
            nn.Conv2d(c, d, 3, padding=1), relu(), nn.Conv2d(d, d, 3, padding=1), relu(),
            nn.Conv2d(d, d, 3, padding=1), relu(),
            nn.ConvTranspose2d(d, d, 3, 1, 1), relu(), nn.ConvTranspose2d(d, d, 3, 1, 1), relu(),
            nn.ConvTranspose2d(d, c, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DomainAdapter(nn.Module):
    """Sampler + (training-only) masking + per-level reconstruction decoder."""

    def __init__(self, c_sam: int, channels: tuple[int, int, int], decoder_width: int,
                 mask_ratio: float, reconstruct: bool):
        super().__init__()
        self.sampler = MultiScaleSampler(c_sam, channels)
        self.mask_ratio = mask_ratio
        self.decoders = nn.ModuleList(ReconstructionDecoder(c, decoder_width) for c in channels) if reconstruct else None

    def forward(self, sam_feats: torch.Tensor, input_hw: tuple[int, int]) -> list[torch.Tensor]:
        """-> F^R per level (the sampled SAM features themselves when reconstruction is off)."""
        feats = self.sampler(sam_feats)
        if self.decoders is None:
            return feats
        if self.training and self.mask_ratio > 0:
            feats = apply_mask(feats, random_unit_mask(feats[0].shape[0], input_hw, self.mask_ratio, feats[0].device))
        return [dec(f) for dec, f in zip(self.decoders, feats)]


def reconstruction_loss(recon: list[torch.Tensor], expert: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 3 scale-matched: sum over levels of (1/B) * sum of squared errors, expert side detached."""
    b = recon[0].shape[0]
    return sum(F.mse_loss(r, e.detach(), reduction="sum") for r, e in zip(recon, expert)) / b


def build_adapter(c_sam: int, channels: tuple[int, int, int], decoder_width: int, mask_ratio: float,
                  enabled: bool) -> DomainAdapter:
    return DomainAdapter(c_sam, channels, decoder_width, mask_ratio, reconstruct=enabled)
