"""How good a model is, in the two languages that matter: COCO AP and the line's decisions.

COCO figures come from pycocotools itself (no hand-written mAP). The line figures
group views into containers (storage.labels.container_key: container_id fields or
c<id>_v<view> names, else container_seq fields or <seq>_v<view> names, else each view
alone, which is warned about), because the line rejects containers: a container is
defective when any of its views holds a labelled defect, and it is rejected when any
view has a detection at or above its class threshold.
  escape rate       = defective containers passed / defective containers
  false-reject rate = good containers rejected / good containers
The threshold that holds false rejects to a target (1% by default) is found on the
container scores; `calibrate` finds per-class thresholds under the same budget.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engines.detections import Detections
from engines.training.datasets import read_image
from storage.labels import LabelSet, container_key, grouping

log = logging.getLogger(__name__)

EVAL_THRESHOLD = 0.001  # keep low-score detections: AP integrates over all of them
CALIBRATION_FLOOR = 0.05  # calibrated thresholds never go lower: few good samples say little about noise
Predict = Callable[[list[np.ndarray]], list[Detections]]


def predict_all(predict: Predict, labels: LabelSet, batch: int = 4, progress: bool = False) -> list[Detections]:
    """Run `predict` over every image of `labels`, `batch` views at a time."""
    from tqdm import tqdm

    out: list[Detections] = []
    steps = range(0, len(labels.images), batch)
    for start in tqdm(steps, desc="eval", unit="batch", disable=not progress, leave=False):
        chunk = labels.images[start:start + batch]
        out.extend(predict([read_image(labels, image) for image in chunk]))
    return out


# ---------------------------------------------------------------------------- COCO


def coco_metrics(labels: LabelSet, detections: list[Detections], vocabulary: tuple[str, ...]) -> dict:
    """AP, AP50, AP75, APs, per-class AP (IoU .50:.95) and AP50 from pycocotools' COCOeval.

    `agnostic_recall50` is the share of boxes any detection (of any class, above the
    evaluation floor) overlaps by IoU >= 0.5: did the model find the defect at all.
    `per_class_recall50` is the same share per labelled class: a family the model finds
    but names wrongly (AP 0, recall high) still rejects its container where that detection
    scores above its own class's threshold.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    category = {name: i + 1 for i, name in enumerate(vocabulary)}
    gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in category.items()]}
    dt = []
    for image_id, (image, dets) in enumerate(zip(labels.images, detections), start=1):
        gt["images"].append({"id": image_id, "width": image.width, "height": image.height})
        for (x1, y1, x2, y2), name in zip(image.boxes.tolist(), image.classes):
            if name in category:
                gt["annotations"].append({
                    "id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": category[name],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for (x1, y1, x2, y2), score, name in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.names()):
            if name in category:
                dt.append({"image_id": image_id, "category_id": category[name],
                           "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    empty = {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "aps": 0.0,
             "per_class": {n: 0.0 for n in vocabulary}, "per_class_ap50": {n: 0.0 for n in vocabulary},
             "agnostic_recall50": 0.0, "per_class_recall50": {n: 0.0 for n in vocabulary},
             "gt_boxes": len(gt["annotations"]),
             "detections": len(dt)}
    if not gt["annotations"] or not dt:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dt)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        agnostic = COCOeval(coco_gt, coco_dt, "bbox")
        agnostic.params.useCats = 0
        agnostic.evaluate()
        agnostic.accumulate()
    stats = [max(float(s), 0.0) for s in evaluator.stats]
    precision = evaluator.eval["precision"]  # (iou, recall, class, area, maxdet)
    per_class, per_class_ap50 = {}, {}
    for k, name in enumerate(vocabulary):
        p = precision[:, :, k, 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else None
        p50 = precision[0, :, k, 0, -1]
        per_class_ap50[name] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else None
    recall = float(agnostic.eval["recall"][0, 0, 0, -1])  # IoU .5, all classes as one, all areas, 100 dets
    return {**empty, "ap": stats[0], "ap50": stats[1], "ap75": stats[2], "aps": stats[3],
            "per_class": per_class, "per_class_ap50": per_class_ap50, "agnostic_recall50": max(recall, 0.0),
            "per_class_recall50": agnostic_recall_by_class(agnostic, coco_gt, vocabulary)}


def agnostic_recall_by_class(agnostic, coco_gt, vocabulary: tuple[str, ...]) -> dict[str, float | None]:
    """Per labelled class, the share of its boxes the class-agnostic COCOeval matched at IoU 0.5.

    Read from the same matching as `agnostic_recall50` (all areas, 100 detections an image),
    so the classes' shares weighted by their box counts give that figure back.
    """
    found = {n: [0, 0] for n in vocabulary}  # matched, labelled
    all_areas = [e for e in agnostic.evalImgs if e is not None and e["aRng"] == agnostic.params.areaRng[0]]
    for entry in all_areas:
        for gt_id, match, ignored in zip(entry["gtIds"], entry["gtMatches"][0], entry["gtIgnore"]):
            if not ignored:
                counts = found[vocabulary[coco_gt.anns[gt_id]["category_id"] - 1]]
                counts[0] += bool(match)
                counts[1] += 1
    return {n: (hit / total if total else None) for n, (hit, total) in found.items()}


# ---------------------------------------------------------------------------- line


@dataclass
class Containers:
    """Per container: is it defective, and its highest score per vocabulary class."""

    defective: np.ndarray  # (C,) bool
    scores: np.ndarray  # (C, K) float, 0 where a class was never detected

    @classmethod
    def build(cls, labels: LabelSet, detections: list[Detections], vocabulary: tuple[str, ...], *,
              any_defect: bool = False) -> "Containers":
        """`any_defect`: a container with any labelled box is defective, its class named in
        `vocabulary` or not (a held-out family the model is not prompted with must still be
        rejected); otherwise only boxes of vocabulary classes count."""
        keys: dict = {}
        for image in labels.images:
            keys.setdefault(container_key(image), len(keys))
        defective = np.zeros(len(keys), bool)
        scores = np.zeros((len(keys), len(vocabulary)), np.float32)
        names = set(vocabulary)
        index = {name: k for k, name in enumerate(vocabulary)}
        for image, dets in zip(labels.images, detections):
            c = keys[container_key(image)]
            defective[c] |= bool(image.classes) if any_defect else any(name in names for name in image.classes)
            for score, name in zip(dets.scores.tolist(), dets.names()):
                if name in index:
                    scores[c, index[name]] = max(scores[c, index[name]], score)
        return cls(defective, scores)

    def rates(self, thresholds: np.ndarray) -> dict:
        rejected = (self.scores >= np.asarray(thresholds, np.float32)).any(axis=1)
        bad, good = self.defective.sum(), (~self.defective).sum()
        return {"escape_rate": float((~rejected & self.defective).sum() / bad) if bad else None,
                "false_reject_rate": float((rejected & ~self.defective).sum() / good) if good else None,
                "defective_containers": int(bad), "good_containers": int(good)}

    def allowed_false_rejects(self, target_fr: float) -> int:
        return int(np.floor(target_fr * (~self.defective).sum() + 1e-9))

    def global_threshold(self, target_fr: float) -> float:
        """The lowest single threshold whose false-reject rate is at most `target_fr`."""
        good = np.sort(self.scores[~self.defective].max(axis=1, initial=0.0))[::-1]
        allowed = self.allowed_false_rejects(target_fr)
        if allowed >= len(good):
            return EVAL_THRESHOLD
        return max(EVAL_THRESHOLD, float(np.nextafter(np.float32(good[allowed]), np.float32(1))))

    def calibrate(self, target_fr: float) -> np.ndarray:
        """Per-class thresholds under the false-reject budget, lowered greedily.

        Start with every class just above its highest score on a good container (no
        false rejects), then repeatedly lower the one class whose next step catches the
        most defective containers per good container it newly rejects, while the budget
        lasts. Classes that never fire on good containers go down to CALIBRATION_FLOOR.
        """
        good, bad = self.scores[~self.defective], self.scores[self.defective]
        allowed = self.allowed_false_rejects(target_fr)
        steps = [np.unique(good[:, k])[::-1] for k in range(good.shape[1])]  # descending
        position = [0] * len(steps)

        def threshold(k: int, p: int) -> float:
            s = steps[k]
            return float(np.nextafter(np.float32(s[p]), np.float32(1))) if p < len(s) and s[p] > EVAL_THRESHOLD \
                else EVAL_THRESHOLD

        thresholds = np.array([threshold(k, 0) for k in range(len(steps))], np.float32)
        while True:
            rejected_good = (good >= thresholds).any(axis=1)
            caught = (bad >= thresholds).any(axis=1)
            best = None
            for k in range(len(steps)):
                if thresholds[k] <= EVAL_THRESHOLD:
                    continue
                trial = thresholds.copy()
                trial[k] = threshold(k, position[k] + 1)
                cost = int((good >= trial).any(axis=1).sum() - rejected_good.sum())
                gain = int((bad >= trial).any(axis=1).sum() - caught.sum())
                if rejected_good.sum() + cost > allowed:
                    continue
                value = gain / max(cost, 0.5)
                if best is None or value > best[0]:
                    best = (value, k, trial)
            if best is None:
                return np.maximum(thresholds, np.float32(CALIBRATION_FLOOR))
            position[best[1]] += 1
            thresholds = best[2]


def stored_thresholds(thresholds: np.ndarray, decimals: int = 5) -> np.ndarray:
    """Calibrated thresholds as a manifest keeps them: rounded, but never below the float32
    value the calibration chose. Rounding to nearest once turned 0.0780645 into 0.07806,
    and the stored threshold rejected 2 of the 19 good containers it had been set to pass."""
    exact = np.asarray(thresholds, np.float32)
    stored = np.round(exact.astype(np.float64), decimals)
    low = stored.astype(np.float32) < exact
    return np.round(np.where(low, stored + 10.0 ** -decimals, stored), decimals)


def line_metrics(containers: Containers, vocabulary: tuple[str, ...], configured: dict[str, float],
                 default: float, target_fr: float) -> dict:
    """Escape and false-reject rates at the configured thresholds and at the target."""
    at_config = np.array([configured.get(n, default) for n in vocabulary], np.float32)
    t = containers.global_threshold(target_fr)
    return {"configured": {**containers.rates(at_config),
                           "thresholds": {n: float(v) for n, v in zip(vocabulary, at_config)}},
            "at_target": {**containers.rates(np.full(len(vocabulary), t, np.float32)),
                          "threshold": t, "target_false_reject_rate": target_fr}}


def evaluate(predict: Predict, labels: LabelSet, vocabulary: tuple[str, ...], *,
             configured: dict[str, float] | None = None, default_threshold: float = 0.5,
             target_fr: float = 0.01, batch: int = 4, progress: bool = False) -> tuple[dict, Containers]:
    """COCO and line metrics of one model on one labelled set, from the same predictions."""
    grouped, views_alone = grouping(labels.images)
    if views_alone:
        log.warning("%s: the escape and false-reject rates count those views as containers", grouped)
    detections = predict_all(predict, labels, batch=batch, progress=progress)
    containers = Containers.build(labels, detections, vocabulary)
    metrics = {**coco_metrics(labels, detections, vocabulary),
               **line_metrics(containers, vocabulary, configured or {}, default_threshold, target_fr),
               "images": len(labels.images), "vocabulary": list(vocabulary), "grouping": grouped}
    return metrics, containers


def pct(rate: float | None) -> str:
    """A rate as the line staff read it: a percentage, or n/a where there was nothing to count."""
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def format_report(metrics: dict) -> list[str]:
    """Lines for the terminal: the COCO table, per-class AP, AP50 and share found, and the line's figures."""
    lines = [f"images {metrics['images']}, boxes {metrics['gt_boxes']}, detections {metrics['detections']}",
             f"AP {metrics['ap']:.3f}  AP50 {metrics['ap50']:.3f}  AP75 {metrics['ap75']:.3f}  "
             f"APs {metrics['aps']:.3f}  found {pct(metrics['agnostic_recall50'])} (any class, IoU >= 0.5)"]
    for name, ap in metrics["per_class"].items():
        if ap is None:
            lines.append(f"  {name:<24} AP n/a (no boxes)")
        else:
            lines.append(f"  {name:<24} AP {ap:.3f}  AP50 {metrics['per_class_ap50'][name]:.3f}  "
                         f"found {pct(metrics['per_class_recall50'][name])}")
    conf, tgt = metrics["configured"], metrics["at_target"]
    if "grouping" in metrics:
        lines.append(metrics["grouping"])
    lines.append(f"containers: {conf['defective_containers']} defective, {conf['good_containers']} good")
    lines.append(f"at configured thresholds: escape {pct(conf['escape_rate'])}, "
                 f"false reject {pct(conf['false_reject_rate'])}")
    lines.append(f"at threshold {tgt['threshold']:.4f} (false rejects <= {pct(tgt['target_false_reject_rate'])}): "
                 f"escape {pct(tgt['escape_rate'])}, false reject {pct(tgt['false_reject_rate'])}")
    if "calibrated" in metrics:
        cal = metrics["calibrated"]
        lines.append(f"calibrated per-class thresholds: escape {pct(cal['escape_rate'])}, "
                     f"false reject {pct(cal['false_reject_rate'])}")
    return lines
