"""Real learning, not a stub: a tiny RTVP overfits 8 synthetic views and finds their defects.

Crops around the defects keep the step cheap on a shared 2-core CPU (the network is
convolutional; real training uses native-resolution crops too, docs/rtvp-spec.md 3).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from rtvp_support import unit_text

from camera.synth import CLASSES, GlassRenderer
from engines.rtvp import build_model
from engines.rtvp.common import box_iou_matrix

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread

CROP = 64
STEPS = 200  # recall 1.00 at 200 on the dev machine (0.9 asked); 300 took 81 s of the CI budget


def first_view_with_defects(renderer: GlassRenderer, seed: int):
    container = renderer.container(seed=seed, seq=seed)
    for view in range(6):
        rendered = renderer.render(container, view)
        if len(rendered.boxes):
            return rendered
    return None


def defect_crops(n_views: int = 8):
    """One view per container (so that all five classes turn up), cropped around its first
    defect; boxes cut to less than a third by the crop are dropped, not kept as slivers."""
    renderer = GlassRenderer()
    rng = np.random.default_rng(0)
    images, targets = [], []
    views = (first_view_with_defects(renderer, seed) for seed in range(100))
    for rendered in (v for v in views if v is not None):
        b = rendered.boxes[0]
        h, w = rendered.image.shape[:2]
        x0 = int(np.clip((b[0] + b[2]) / 2 - CROP / 2 + rng.integers(-16, 16), 0, w - CROP))
        y0 = int(np.clip((b[1] + b[3]) / 2 - CROP / 2 + rng.integers(-16, 16), 0, h - CROP))
        crop = rendered.image[y0:y0 + CROP, x0:x0 + CROP, ::-1]  # BGR -> RGB
        boxes = rendered.boxes - np.array([x0, y0, x0, y0], np.float32)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        boxes = boxes.clip(0, CROP)
        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) >= area / 3
        images.append(torch.from_numpy(crop.astype(np.float32) / 255).permute(2, 0, 1))
        targets.append({"boxes": torch.from_numpy(boxes[keep]),
                        "labels": torch.tensor([CLASSES.index(c) for c, k in zip(rendered.classes, keep) if k])})
        if len(images) == n_views:
            break
    return torch.stack(images), targets


def recall(boxes, scores, targets, conf=0.25, iou_thr=0.5) -> float:
    found = total = 0
    for b, s, t in zip(boxes, scores, targets):
        for cls in t["labels"].unique().tolist():
            keep = cv2.dnn.NMSBoxes([[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in b.tolist()],
                                    s[:, cls].tolist(), conf, 0.7)
            dets = b[np.asarray(keep, dtype=np.int64).reshape(-1)]
            gts = t["boxes"][t["labels"] == cls]
            total += len(gts)
            if len(dets):
                found += int((box_iou_matrix(gts, dets).amax(1) >= iou_thr).sum())
    return found / total


@pytest.mark.timeout(400)
def test_tiny_model_overfits_synthetic_views():
    torch.manual_seed(0)
    images, targets = defect_crops()
    assert sum(len(t["boxes"]) for t in targets) >= 8
    assert len({int(c) for t in targets for c in t["labels"]}) >= 4  # not one easy class
    text = unit_text(len(CLASSES))
    model = build_model(scale="tiny", imgsz=CROP)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - 0.9 * step / STEPS)
    model.eval()
    with torch.no_grad():
        before = recall(*model(images, text), targets)
    model.train()
    first = None
    for _ in range(STEPS):
        total, terms = model.loss(model(images, text), targets)
        optimiser.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
        schedule.step()
        first = first or terms
    model.recalibrate_bn([images] * 3, text)  # short run: running BN averages lag the weights
    model.eval()
    with torch.no_grad():
        after = recall(*model(images, text), targets)
    assert terms["total"] < 0.3 * first["total"], (first, terms)
    assert before < 0.5
    assert after >= 0.9, f"recall@0.5 {after:.2f} after {STEPS} steps (was {before:.2f}); last terms {terms}"
