"""PyTorch and ONNX Runtime give the same answer: raw graph outputs and final detections.

Boxes within 1 px, scores within 1e-3, for batch 1 and 6 and for views larger,
smaller and of other aspect ratios than the model input.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.config import EngineConfig
from engines.detections import Detections
from engines.preprocess import letterbox_into
from engines.runtimes import load_engine
from engines_support import IMGSZ, make_package, views

SIZES = {
    "batch1-model-size": [(IMGSZ, IMGSZ)],
    "batch1-camera-size": [(820, 700)],
    "batch6-camera-size": [(820, 700)] * 6,
    "batch6-mixed": [(820, 700), (300, 500), (IMGSZ, IMGSZ), (1000, 1400), (64, 640), (500, 300)],
}


@pytest.fixture
def engines(tmp_path):
    package = make_package(tmp_path / "data" / "models" / "v1")
    # Tens to a thousand detections per view, all under max_det: at a max_det cut the
    # runtimes may legitimately keep different near-equal last boxes.
    config = EngineConfig(imgsz=IMGSZ, threads=1, default_threshold=0.8, max_det=10000)
    cache = tmp_path / "data" / "cache"
    return (load_engine(package, config.model_copy(update={"runtime": "torch"}), cache),
            load_engine(package, config.model_copy(update={"runtime": "onnxruntime"}), cache))


def assert_same_detections(a: Detections, b: Detections) -> None:
    """One-to-one: each detection has a partner of the same class, box within 1 px, score within 1e-3."""
    assert len(a) == len(b), f"{len(a)} vs {len(b)} detections"
    unmatched = list(range(len(b)))
    for box, score, cls in zip(a.boxes, a.scores, a.classes):
        partner = next((j for j in unmatched if b.classes[j] == cls and abs(b.scores[j] - score) <= 1e-3
                        and np.abs(b.boxes[j] - box).max() <= 1.0), None)
        assert partner is not None, f"no partner for class {cls} score {score:.4f} box {box}"
        unmatched.remove(partner)


@pytest.mark.parametrize("case", list(SIZES))
def test_torch_and_onnxruntime_agree(engines, case) -> None:
    torch_engine, ort_engine = engines
    images = views(SIZES[case], seed=len(case))
    batch = ort_engine._input(len(images))
    letterbox_into(images, batch)
    reference = torch_engine._forward(batch.copy())
    boxes, scores = (out.copy() for out in ort_engine._forward(batch))
    assert np.abs(boxes - reference[0]).max() <= 1.0
    assert np.abs(scores - reference[1]).max() <= 1e-3

    expected, got = torch_engine.infer(images), ort_engine.infer(images)
    assert len(expected) == len(got) == len(images)
    assert sum(len(d) for d in expected) > 0, "vacuous: no detections to compare"
    assert max(len(d) for d in expected) < torch_engine.max_det
    for view, (a, b) in enumerate(zip(expected, got)):
        assert_same_detections(a, b)
        h, w = images[view].shape[:2]
        assert (a.boxes[:, 2] <= w).all() and (a.boxes[:, 3] <= h).all(), "boxes not in view pixels"


def test_batching_does_not_change_the_answer(engines) -> None:
    _, ort_engine = engines
    images = views([(820, 700), (300, 500), (600, 600), (820, 700), (400, 900), (820, 700), (700, 820)])
    together = ort_engine.infer(images)  # 7 views: a batch of 6, then 1
    assert len(together) == 7
    for image, det in zip(images, together):
        assert_same_detections(ort_engine.infer([image])[0], det)
