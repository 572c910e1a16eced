"""Evaluation figures: COCO numbers equal pycocotools' own, line figures count containers."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from engines.detections import Detections
from engines.training.evaluate import Containers, coco_metrics, format_report, line_metrics, stored_thresholds
from storage.labels import LabelledImage, LabelSet, write_coco

VOCAB = ("oil", "bubble", "black spot")


def random_case(seed: int, n_images: int = 12):
    rng = np.random.default_rng(seed)
    images, detections = [], []
    for i in range(n_images):
        n = int(rng.integers(0, 4))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(3, 60, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        classes = [VOCAB[int(c)] for c in rng.integers(0, 3, n)]
        images.append(LabelledImage(f"views/{i:06d}_v0.png", 400, 400, boxes, classes,
                                    container_seq=i // 2, view=i % 2))
        # predictions: jittered true boxes (some with the wrong class) plus false positives
        m = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 300, (m, 2))
        fake = np.concatenate([fxy, fxy + rng.uniform(3, 60, (m, 2))], 1)
        pred = np.concatenate([boxes + rng.normal(0, 2, boxes.shape), fake]).astype(np.float32)
        cls = np.concatenate([[VOCAB.index(c) for c in classes], rng.integers(0, 3, m)]).astype(np.int64)
        cls[rng.random(len(cls)) < 0.2] = rng.integers(0, 3)
        detections.append(Detections(pred.reshape(-1, 4), rng.uniform(0.01, 1, len(cls)).astype(np.float32),
                                     cls, VOCAB))
    return LabelSet(root=None, images=images, classes=list(VOCAB)), detections


@pytest.mark.parametrize("seed", [0, 1])
def test_coco_figures_equal_pycocotools_on_files(tmp_path, seed):
    labels, detections = random_case(seed)
    write_coco(tmp_path / "gt.json", labels.images, list(VOCAB))
    results = [{"image_id": i + 1, "category_id": int(c) + 1,
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s)}
               for i, d in enumerate(detections) for b, s, c in zip(d.boxes, d.scores, d.classes)]
    (tmp_path / "dt.json").write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = coco_metrics(labels, detections, VOCAB)
    # write_coco rounds to 0.01 px; the figures must agree to that precision
    assert ours["ap"] == pytest.approx(ev.stats[0], abs=2e-3)
    assert ours["ap50"] == pytest.approx(ev.stats[1], abs=2e-3)
    assert ours["ap75"] == pytest.approx(ev.stats[2], abs=2e-3)
    assert ours["aps"] == pytest.approx(max(ev.stats[3], 0), abs=2e-3)
    for k, name in enumerate(VOCAB):
        p = ev.eval["precision"][:, :, k, 0, -1]
        assert ours["per_class"][name] == pytest.approx(p[p > -1].mean(), abs=2e-3)
    assert 0 < ours["ap"] < 1


def test_perfect_predictions_give_ap_one_and_none_give_zero():
    labels, _ = random_case(3)
    perfect = [Detections(im.boxes, np.ones(len(im.boxes), np.float32),
                          np.array([VOCAB.index(c) for c in im.classes], np.int64), VOCAB) for im in labels.images]
    assert coco_metrics(labels, perfect, VOCAB)["ap"] == pytest.approx(1.0)
    assert coco_metrics(labels, [Detections.empty(VOCAB)] * len(labels.images), VOCAB)["ap"] == 0.0


def test_per_class_recall_counts_a_found_box_whatever_class_it_was_given():
    boxes = np.array([[10, 10, 40, 40], [200, 200, 260, 230]], np.float32)
    labels = LabelSet(root=None, images=[LabelledImage("v.png", 400, 400, boxes, ["oil", "bubble"])],
                      classes=list(VOCAB))
    # the oil is found but called a bubble; the bubble is not found at all
    found = Detections(boxes[:1] + 1, np.array([0.9], np.float32), np.array([1], np.int64), VOCAB)
    figures = coco_metrics(labels, [found], VOCAB)
    assert figures["per_class_ap50"]["oil"] == 0.0
    assert figures["per_class_recall50"] == {"oil": 1.0, "bubble": 0.0, "black spot": None}
    assert figures["agnostic_recall50"] == pytest.approx(0.5)
    lines = format_report({**figures, "images": 1,
                           **line_metrics(Containers.build(labels, [found], VOCAB), VOCAB, {}, 0.5, 0.01)})
    assert "found 50.0% (any class, IoU >= 0.5)" in lines[1]
    assert lines[2].split() == ["oil", "AP", "0.000", "AP50", "0.000", "found", "100.0%"]
    assert lines[3].split()[-2:] == ["found", "0.0%"]
    assert lines[4].split() == ["black", "spot", "AP", "n/a", "(no", "boxes)"]


@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_recall_weighted_by_boxes_gives_the_agnostic_recall(seed):
    labels, detections = random_case(seed)
    figures = coco_metrics(labels, detections, VOCAB)
    counts = {n: sum(c == n for im in labels.images for c in im.classes) for n in VOCAB}
    weighted = sum(figures["per_class_recall50"][n] * k for n, k in counts.items() if k) / sum(counts.values())
    assert weighted == pytest.approx(figures["agnostic_recall50"])
    assert 0 < figures["agnostic_recall50"] < 1


def container_case():
    # containers 0..3 good, 4..7 defective; one view each is enough
    images = [LabelledImage(f"{c:06d}_v0.png", 100, 100,
                            np.array([[10, 10, 20, 20]], np.float32) if c >= 4 else np.zeros((0, 4), np.float32),
                            ["oil"] if c >= 4 else [], container_seq=c, view=0) for c in range(8)]
    labels = LabelSet(root=None, images=images, classes=["oil", "bubble"])
    good_scores = [0.9, 0.2, 0.1, 0.0]  # one good container looks defective (oil 0.9)
    bad_scores = [0.95, 0.6, 0.3, 0.05]
    dets = []
    for s in good_scores + bad_scores:
        cls = np.array([0], np.int64) if s else np.zeros(0, np.int64)
        dets.append(Detections(np.array([[10, 10, 20, 20]], np.float32)[:len(cls)],
                               np.array([s], np.float32)[:len(cls)], cls, ("oil", "bubble")))
    return labels, dets


def test_container_rates_and_target_threshold():
    labels, dets = container_case()
    containers = Containers.build(labels, dets, ("oil", "bubble"))
    assert containers.defective.tolist() == [False] * 4 + [True] * 4
    rates = containers.rates(np.array([0.5, 0.5]))
    assert rates["escape_rate"] == pytest.approx(0.5)  # 0.3 and 0.05 pass
    assert rates["false_reject_rate"] == pytest.approx(0.25)  # the 0.9 good one
    # 1% of 4 good containers allows no false reject: threshold just above 0.9
    t = containers.global_threshold(0.01)
    assert 0.9 < t < 0.95
    assert containers.rates(np.array([t, t]))["false_reject_rate"] == 0.0
    # 25% allows one: the threshold drops to just above the second good score (0.2)
    t = containers.global_threshold(0.25)
    assert 0.2 < t < 0.3
    assert containers.rates(np.array([t, t])) == {"escape_rate": 0.25, "false_reject_rate": 0.25,
                                                  "defective_containers": 4, "good_containers": 4}
    report = line_metrics(containers, ("oil", "bubble"), {"oil": 0.5}, 0.5, 0.01)
    assert report["configured"]["escape_rate"] == pytest.approx(0.5)
    assert report["at_target"]["false_reject_rate"] == 0.0


def test_any_defect_counts_boxes_outside_the_vocabulary():
    labels, dets = container_case()  # the defective containers hold oil, which "bubble" does not name
    assert not Containers.build(labels, dets, ("bubble",)).defective.any()
    held_out = Containers.build(labels, dets, ("bubble",), any_defect=True)
    assert held_out.defective.tolist() == [False] * 4 + [True] * 4
    assert held_out.rates(np.array([0.5]))["escape_rate"] == 1.0  # nothing prompted finds oil


def test_stored_thresholds_never_reject_what_calibration_passed():
    good = np.float32(0.0780645)  # the highest score on a good container
    exact = np.nextafter(good, np.float32(1))  # what calibration sets: just above it
    stored = stored_thresholds(np.array([exact, 0.05, 0.5], np.float32))
    assert stored[0] == pytest.approx(0.07807)  # rounding to nearest gave 0.07806: below the good score
    assert not good >= np.float32(stored[0])
    assert stored[1:].tolist() == [0.05, 0.5]  # values already at 5 decimals stay


def test_calibration_holds_the_false_reject_budget():
    labels, dets = container_case()
    containers = Containers.build(labels, dets, ("oil", "bubble"))
    for target, max_false in ((0.01, 0), (0.25, 1), (0.5, 2)):
        thresholds = containers.calibrate(target)
        rates = containers.rates(thresholds)
        assert rates["false_reject_rate"] * 4 <= max_false
        # never worse than the single global threshold under the same budget
        t = containers.global_threshold(target)
        assert rates["escape_rate"] <= containers.rates(np.array([t, t]))["escape_rate"]
