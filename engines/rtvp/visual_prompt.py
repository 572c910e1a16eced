"""Refined visual prompt (paper Eq. 4-6, docs/rtvp-spec.md 1.5-1.7, 1.10).

A CBAM scorer gives each level an "uncertainty score" map M_l; a sparse per-patch
selection keeps a few points above their patch mean; the selected, re-weighted
features are fused into the expert's levels through zero-initialised 1x1 convs, so
training starts from plain YOLO-World. An auxiliary regression head (training only)
pulls the selected points inside the ground truth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.rtvp.common import Conv, upsample_to


class CBAMScorer(nn.Module):
    """Channel gate (shared MLP over avg and max pools) then a 7x7 spatial gate."""

    def __init__(self, c: int, reduction: int = 16):
        super().__init__()
        hidden = max(c // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c, 1))
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3, bias=False), nn.BatchNorm2d(1))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """F^R -> (F'' = M * Mc * F^R, M the spatial score map (B,1,H,W))."""
        mc = torch.sigmoid(self.mlp(f.mean((2, 3), keepdim=True)) + self.mlp(f.amax((2, 3), keepdim=True)))
        f1 = f * mc
        m = torch.sigmoid(self.spatial(torch.cat((f1.amax(1, keepdim=True), f1.mean(1, keepdim=True)), 1)))
        return f1 * m, m


def sparse_select(u: torch.Tensor, cells: int, k: int) -> torch.Tensor:
    """Eq. 6 without scatter or data-dependent shapes: per patch of `cells` x `cells` keep the
    top-k cells among those above the patch mean.

    u (B,1,H,W) -> {0,1} mask of the same shape. Patches are cut by reshapes; the k-th
    largest candidate value (TopK, then its last value) is the threshold; no indices,
    scatter or NonZero. A grid that
    does not divide into patches is padded, and the pad is left out of every mean.
    """
    b, _, h, w = u.shape
    ph, pw = (-h) % cells, (-w) % cells
    nh, nw = (h + ph) // cells, (w + pw) // cells
    valid = F.pad(torch.ones(1, h, w, dtype=u.dtype, device=u.device), (0, pw, 0, ph))
    up = F.pad(u[:, 0], (0, pw, 0, ph))

    def patches(t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], nh, cells, nw, cells).transpose(2, 3).reshape(t.shape[0], nh * nw, cells * cells)

    vals, ok = patches(up), patches(valid) > 0
    mean = (vals * ok).sum(-1, keepdim=True) / ok.sum(-1, keepdim=True)
    cand = (vals > mean) & ok
    ranked = torch.where(cand, vals, torch.full_like(vals, -1.0))
    kth = ranked.topk(min(k, cells * cells), -1).values[..., -1:]
    sel = (cand & (vals >= kth)).to(u.dtype)
    # Ties at the k-th value (flat regions of an upsampled map) would let more than k
    # through: the earlier cells win them (CumSum, the same in every runtime).
    sel = sel * (sel.cumsum(-1) <= k).to(u.dtype)
    sel = sel.view(b, nh, nw, cells, cells).transpose(2, 3).reshape(b, 1, nh * cells, nw * cells)
    return sel[:, :, :h, :w]


class VisualPrompt(nn.Module):
    """Scorer per level, selection on the fused stride-8 score map, zero-initialised fusion."""

    def __init__(self, channels: tuple[int, int, int], patch_size: int, topk: int, sparse: bool):
        super().__init__()
        if patch_size % 8:
            raise ValueError(f"patch_size {patch_size}: must be a multiple of 8 input pixels")
        self.cells = patch_size // 8
        self.topk = topk
        self.sparse = sparse
        self.scorers = nn.ModuleList(CBAMScorer(c) for c in channels)
        self.fusion = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for c in channels)
        for conv in self.fusion:
            nn.init.zeros_(conv.weight)

    def forward(self, recon: list[torch.Tensor], expert: tuple[torch.Tensor, ...]) -> dict:
        scored = [s(f) for s, f in zip(self.scorers, recon)]
        refined = [f for f, _ in scored]
        scores = [m for _, m in scored]
        if self.sparse:
            with torch.no_grad():
                size = scores[0].shape[-2:]
                u = torch.stack([upsample_to(m, size) for m in scores]).mean(0)
                s3 = sparse_select(u, self.cells, self.topk)
                selected = [s3, F.max_pool2d(s3, 2), F.max_pool2d(F.max_pool2d(s3, 2), 2)]
            prompts = [s * f for s, f in zip(selected, refined)]
        else:
            selected = None
            prompts = refined
        fused = [p + w(vp) for p, w, vp in zip(expert, self.fusion, prompts)]
        return {"fused": fused, "refined": refined, "scores": scores, "selected": selected}


class AuxHead(nn.Module):
    """Training-only box regression from F'' (DFL bins, like the main head's box branch)."""

    def __init__(self, channels: tuple[int, int, int], reg_max: int):
        super().__init__()
        hidden = min(64, channels[0])
        self.branches = nn.ModuleList(
            nn.Sequential(Conv(c, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, 4 * reg_max, 1))
            for c in channels)
        for b in self.branches:
            nn.init.constant_(b[-1].bias, 1.0)

    def forward(self, refined: list[torch.Tensor]) -> list[torch.Tensor]:
        return [b(f) for b, f in zip(self.branches, refined)]


def build_visual_prompt(channels: tuple[int, int, int], patch_size: int, topk: int, sparse: bool) -> VisualPrompt:
    return VisualPrompt(channels, patch_size, topk, sparse)
