"""Training losses (docs/rtvp-spec.md 2): task-aligned assignment, BCE, CIoU + DFL, reconstruction
and the auxiliary prompt loss, each weighted by the config and reported separately.

total = B * (box*L_ciou + cls*L_bce + dfl*L_dfl + rec*L_rec + aux*L_aux)  (ultralytics scaling)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engines.rtvp.adapter import reconstruction_loss
from engines.rtvp.common import bbox2dist, box_area, ciou, dfl_expectation, dist2bbox, make_anchors
from engines.rtvp.head import STRIDES


@dataclass
class LossWeights:
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5
    rec: float = 2e-5
    aux: float = 1.0


class TaskAlignedAssigner(nn.Module):
    """Anchors inside a GT, top-k by score^alpha * CIoU^beta, one GT per anchor (ultralytics tal.py).

    Two changes for tiny defects (a black spot is 3-14 px):
    - the "anchor inside the GT" test uses the GT grown to at least `min_size` px around
      its centre, so a 3-px spot still gets stride-8 anchors (the target stays the true box);
      the test includes the edges, so an 8-px box lying on cell edges keeps its centres;
    - overlaps of candidate anchors are floored at `min_iou`. At initialisation every
      predicted box is ~15 cells wide; a 3-px GT then has CIoU ~ 0, its target score
      (alignment x best overlap) is ~ 0, so neither its class nor its box is ever
      trained: a deadlock the floor breaks. Above the floor nothing changes.
    """

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, min_size: float = 8.0,
                 min_iou: float = 0.1, eps: float = 1e-30):
        super().__init__()
        self.topk, self.alpha, self.beta, self.min_size, self.eps = topk, alpha, beta, min_size, eps
        self.min_iou = min_iou

    @torch.no_grad()
    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt):
        """pd_scores (B,A,K) sigmoid, pd_bboxes (B,A,4) px, anc_points (A,2) px,
        gt_labels (B,M,1), gt_bboxes (B,M,4), mask_gt (B,M,1) ->
        target_bboxes (B,A,4), target_scores (B,A,K), fg_mask (B,A) bool."""
        b, a, k = pd_scores.shape
        m = gt_bboxes.shape[1]
        if m == 0:
            return torch.zeros_like(pd_bboxes), torch.zeros_like(pd_scores), torch.zeros(b, a, dtype=torch.bool,
                                                                                            device=pd_scores.device)
        in_gts = self._candidates_in_gts(anc_points, gt_bboxes) * mask_gt  # (B,M,A)
        align, overlaps = self._metrics(pd_scores, pd_bboxes, gt_labels, gt_bboxes, in_gts.bool())
        topk_mask = self._topk(align, mask_gt.expand(-1, -1, self.topk).bool())
        mask_pos = topk_mask * in_gts
        # An anchor claimed by several GTs goes to the one it overlaps most.
        fg = mask_pos.sum(1)
        if fg.max() > 1:
            multi = (fg.unsqueeze(1) > 1).expand(-1, m, -1)
            best = F.one_hot(overlaps.argmax(1), m).permute(0, 2, 1).to(mask_pos.dtype)
            mask_pos = torch.where(multi, best, mask_pos)
            fg = mask_pos.sum(1)
        gt_idx = mask_pos.argmax(1)  # (B,A)
        fg_mask = fg > 0
        batch = torch.arange(b, device=gt_idx.device)[:, None]
        t_labels = gt_labels[..., 0].long()[batch, gt_idx].clamp(0)
        t_bboxes = gt_bboxes[batch, gt_idx]
        t_scores = F.one_hot(t_labels, k).to(pd_scores.dtype) * fg_mask[..., None]
        align = align * mask_pos
        pos_align = align.amax(-1, keepdim=True)
        pos_overlaps = (overlaps * mask_pos).amax(-1, keepdim=True)
        norm = (align * pos_overlaps / (pos_align + self.eps)).amax(1).unsqueeze(-1)
        return t_bboxes, t_scores * norm, fg_mask

    def _candidates_in_gts(self, points: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        centre = (gt[..., :2] + gt[..., 2:]) / 2
        half = ((gt[..., 2:] - gt[..., :2]) / 2).clamp(min=self.min_size / 2)
        lt, rb = (centre - half)[:, :, None], (centre + half)[:, :, None]
        deltas = torch.cat((points[None, None] - lt, rb - points[None, None]), -1)
        return (deltas.amin(-1) >= 0).float()

    def _metrics(self, pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask):
        b, m = gt_bboxes.shape[:2]
        batch = torch.arange(b, device=pd_scores.device)[:, None].expand(-1, m)
        scores = pd_scores.permute(0, 2, 1)[batch, gt_labels[..., 0].long().clamp(0)]  # (B,M,A)
        iou = ciou(gt_bboxes[:, :, None], pd_bboxes[:, None]).clamp(min=self.min_iou)
        overlaps = iou * mask
        scores = scores * mask
        return scores.pow(self.alpha) * overlaps.pow(self.beta), overlaps

    def _topk(self, metrics: torch.Tensor, topk_mask: torch.Tensor) -> torch.Tensor:
        k = min(self.topk, metrics.shape[-1])
        idx = metrics.topk(k, -1).indices
        idx = idx.masked_fill(~topk_mask[..., :k], 0)
        count = F.one_hot(idx, metrics.shape[-1]).sum(-2)
        return (count == 1).to(metrics.dtype)


def df_loss(dist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution focal loss: cross-entropy to the two bins around each target distance."""
    tl = target.long()
    wl = tl + 1 - target
    reg_max = dist.shape[-1]
    ce = lambda t: F.cross_entropy(dist.reshape(-1, reg_max), t.reshape(-1), reduction="none").view(t.shape)  # noqa
    return (ce(tl) * wl + ce(tl + 1) * (1 - wl)).mean(-1, keepdim=True)


def pad_targets(targets: list[dict], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = max((len(t["boxes"]) for t in targets), default=0)
    b = len(targets)
    boxes = torch.zeros(b, m, 4, device=device)
    labels = torch.zeros(b, m, 1, device=device)
    mask = torch.zeros(b, m, 1, device=device)
    for i, t in enumerate(targets):
        n = len(t["boxes"])
        if n:
            boxes[i, :n] = torch.as_tensor(t["boxes"], dtype=torch.float32, device=device).view(n, 4)
            labels[i, :n, 0] = torch.as_tensor(t["labels"], device=device).float()
            mask[i, :n] = 1
    return boxes, labels, mask


class RTVPLoss:
    def __init__(self, weights: LossWeights, reg_max: int = 16):
        self.w = weights
        self.reg_max = reg_max
        self.assigner = TaskAlignedAssigner()

    def __call__(self, out: dict, targets: list[dict]) -> tuple[torch.Tensor, dict[str, float]]:
        dist, logits = out["dist"].float(), out["logits"].float()
        b, _, k = logits.shape
        device = logits.device
        anchors, strides = make_anchors(out["shapes"], out["strides"])
        anchors, strides = anchors.to(device), strides.to(device)
        gt_boxes, gt_labels, mask_gt = pad_targets(targets, device)
        if len(targets) != b:
            raise ValueError(f"{len(targets)} targets for a batch of {b}")
        if gt_labels.numel() and gt_labels.max() >= k:
            raise ValueError(f"label {int(gt_labels.max())} outside a vocabulary of {k} names")
        pred = dist2bbox(dfl_expectation(dist, self.reg_max), anchors)  # grid units
        t_boxes, t_scores, fg = self.assigner(logits.detach().sigmoid(), pred.detach() * strides,
                                              anchors * strides, gt_labels, gt_boxes, mask_gt)
        ts_sum = t_scores.sum().clamp(min=1)
        l_cls = F.binary_cross_entropy_with_logits(logits, t_scores, reduction="sum") / ts_sum
        l_box = l_dfl = logits.new_zeros(())
        if fg.any():
            weight = t_scores.sum(-1)[fg].unsqueeze(-1)
            t_grid = t_boxes / strides
            l_box = ((1 - ciou(pred[fg], t_grid[fg])).unsqueeze(-1) * weight).sum() / ts_sum
            target_ltrb = bbox2dist(anchors.expand(b, -1, -1)[fg], t_grid[fg], self.reg_max)
            l_dfl = (df_loss(dist[fg].view(-1, 4, self.reg_max), target_ltrb) * weight).sum() / ts_sum
        parts = {"box": self.w.box * l_box, "cls": self.w.cls * l_cls, "dfl": self.w.dfl * l_dfl}
        if out.get("recon") is not None:
            parts["rec"] = self.w.rec * reconstruction_loss(out["recon"], out["expert"])
        if out.get("aux") is not None:
            parts["aux"] = self.w.aux * aux_loss(out, targets, self.reg_max)
        total = sum(parts.values()) * b
        return total, {name: float(v.detach()) for name, v in parts.items()} | {"total": float(total.detach())}


def aux_loss(out: dict, targets: list[dict], reg_max: int) -> torch.Tensor:
    """Score-weighted 1 - CIoU of the aux head's boxes at the selected points (docs/rtvp-spec.md 1.10).

    Each selected point takes the smallest GT containing its centre, else the GT with the
    nearest centre; images without GT are skipped. Gradient reaches the aux head through
    the boxes and the scorer through the weights M.
    """
    levels = []
    for dist, score, sel, stride in zip(out["aux"], out["scores"], out["selected"], STRIDES):
        num = den = dist.new_zeros(())
        h, w = dist.shape[-2:]
        for i, t in enumerate(targets):
            if len(t["boxes"]) == 0:
                continue
            gts = torch.as_tensor(t["boxes"], dtype=torch.float32, device=dist.device).view(-1, 4)
            ys, xs = torch.nonzero(sel[i, 0] > 0, as_tuple=True)
            if len(ys) == 0:
                continue
            centres = torch.stack(((xs + 0.5) * stride, (ys + 0.5) * stride), -1).float()
            inside = ((centres[:, None] > gts[None, :, :2]) & (centres[:, None] < gts[None, :, 2:])).all(-1)
            area = torch.where(inside, box_area(gts)[None], torch.full_like(inside, float("inf"), dtype=torch.float32))
            gt_centres = (gts[:, :2] + gts[:, 2:]) / 2
            nearest = (centres[:, None] - gt_centres[None]).pow(2).sum(-1).argmin(1)
            idx = torch.where(inside.any(1), area.argmin(1), nearest)
            d = dist[i, :, ys, xs].T
            boxes = dist2bbox(dfl_expectation(d, reg_max), centres / stride) * stride
            m = score[i, 0, ys, xs]
            num = num + (m * (1 - ciou(boxes, gts[idx]))).sum()
            den = den + m.sum()
        if den > 0:
            levels.append(num / den)
    if not levels:
        return out["aux"][0].sum() * 0  # keeps the graph connected; no GT, no aux signal
    return torch.stack(levels).mean()
