"""Labelled samples for retraining: export views for a labelling tool, import its labels back.

Export writes the stored views with the current boxes as pre-annotations (a person's
labels where the view was labelled before, otherwise the detections that counted for the
line's decision: at or above the threshold recorded with each, their scores kept) in
COCO, YOLO or CVAT form. Import reads the layouts of CVAT, Label Studio and Ultralytics
(storage/label_layouts.py), checks each box and class name against the vocabulary,
stores the labels against their views, and marks those views labelled: the quota never
purges them and their image is kept lossless (re-encoded to PNG, so later exports are
exactly the pixels that were labelled, with no further JPEG generation).
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import selectinload
from tqdm import tqdm

from storage.config import StorageConfig
from storage.cvat import write_cvat
from storage.db import STORED, Container, Database, Detection, Label, ModelVersion, View
from storage.errors import StorageError
from storage.files import read_image
from storage.images import ImageStore
from storage.label_layouts import read_labels
from storage.labels import LabelledImage, with_size, write_coco, write_yolo
from storage.records import utc_now

log = logging.getLogger(__name__)
FORMATS = ("coco", "yolo", "cvat")
NO_MATCH = ("no stored view matches (a name holding c<container id>_v<view>, as exported, or COCO "
            "container_id / container_seq and view fields)")


@dataclass
class SamplesReport:
    images: int = 0
    boxes: int = 0
    skipped: list[str] = field(default_factory=list)
    layout: str = ""  # the labelling tool's layout an import read
    read: int = 0  # images in the label files (an import stores those that match a stored view)
    thresholds: Counter = field(default_factory=Counter)  # an export's detections per threshold source


def versions_without_thresholds(db: Database) -> list[str]:
    """The model versions of containers with detections stored before thresholds were (0006)."""
    with db.session() as session:
        return list(session.scalars(
            select(ModelVersion.version).distinct().join(Container, Container.model_version_id == ModelVersion.id)
            .join(View, View.container_id == Container.id).join(Detection, Detection.view_id == View.id)
            .where(Detection.threshold.is_(None)).order_by(ModelVersion.version)))


def export_samples(db: Database, data_dir: Path, out: Path, fmt: str, classes: list[str],
                   thresholds: dict[str, float] | None = None, default_threshold: float = 0.5,
                   since: datetime | None = None, rejects_only: bool = False,
                   model_thresholds: dict[str, dict[str, float]] | None = None) -> SamplesReport:
    """Stored views into `out/images/c<container id>_v<view>.<ext>` with their pre-annotations.

    A detection is a pre-annotation when its score reached the threshold the line recorded
    with it (the one the decision applied). Detections stored before thresholds were
    recorded (revision 0006) are drawn at the thresholds of the model version their
    container names (`model_thresholds`: version -> class -> threshold, as its engine
    applied them), else at `thresholds` / `default_threshold`; `report.thresholds`
    counts the detections of each source.
    """
    if fmt not in FORMATS:
        raise StorageError(f"unknown samples format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise StorageError(f"{out} exists and is not empty; name a new folder for the samples")
    thresholds, model_thresholds = thresholds or {}, model_thresholds or {}
    query = (select(View).join(Container).where(View.image_state == STORED)
             .options(selectinload(View.detections), selectinload(View.labels), selectinload(View.container))
             .order_by(Container.t_gate, View.view))
    if since is not None:
        query = query.where(Container.t_gate >= since)
    if rejects_only:
        query = query.where(Container.decision != "pass")
    report, images, known = SamplesReport(), [], set(classes)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with db.session() as session:
        views = session.scalars(query).all()
        for v in tqdm(views, desc="samples", unit="view", disable=len(views) < 100):
            relative = f"images/c{v.container_id}_v{v.view}{Path(v.image_file).suffix}"
            source = Path(data_dir) / v.image_file
            image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
            if image is None:
                report.skipped.append(f"{v.image_file}: missing or unreadable; skipped")
                continue
            shutil.copyfile(source, out / relative)
            if v.labelled:
                boxes = [(lb.class_name, lb.box, None) for lb in v.labels]
            else:
                by_model = model_thresholds.get(v.container.model_version.version) \
                    if v.container.model_version else None
                boxes = []
                for d in v.detections:
                    threshold, source = _threshold(d, by_model, thresholds, default_threshold)
                    report.thresholds[source] += 1
                    if d.score >= threshold:
                        boxes.append((d.class_name, d.box, d.score))
                boxes.sort(key=lambda b: -b[2])
            unknown = sorted({name for name, _, _ in boxes} - known)
            if unknown:
                report.skipped.append(f"{relative}: classes {unknown} are not in the vocabulary; those boxes left out")
            boxes = [b for b in boxes if b[0] in known]
            images.append(LabelledImage(
                file=relative, width=image.shape[1], height=image.shape[0],
                boxes=np.array([b for _, b, _ in boxes], np.float32).reshape(-1, 4), classes=[n for n, _, _ in boxes],
                container_seq=v.container.seq, view=v.view, container_id=v.container_id,
                scores=None if v.labelled else [s for _, _, s in boxes]))
            report.boxes += len(boxes)
    if fmt == "coco":  # CVAT's "COCO 1.0" and datumaro's layout: names relative to images/
        write_coco(out / "annotations" / "instances_default.json",
                   [replace(image, file=Path(image.file).name) for image in images], classes)
    elif fmt == "yolo":
        write_yolo(out, images, classes)
    else:
        write_cvat(out / "annotations.xml", images, classes)
    report.images = len(images)
    return report


def _threshold(detection: Detection, by_model: dict[str, float] | None, thresholds: dict[str, float],
               default: float) -> tuple[float, str]:
    """The threshold a detection counted at, and where it comes from (a key of SamplesReport.thresholds)."""
    if detection.threshold is not None:
        return detection.threshold, "recorded"
    if by_model is not None and detection.class_name in by_model:
        return by_model[detection.class_name], "model"
    return thresholds.get(detection.class_name, default), "config"


def import_labels(db: Database, data_dir: Path, config: StorageConfig, path: Path,
                  classes: list[str]) -> SamplesReport:
    """Store the labels in `path` against their views; mark those views labelled and lossless."""
    labels, layout = read_labels(path)
    report = SamplesReport(skipped=list(labels.skipped), layout=layout, read=len(labels.images))
    store, known = ImageStore(Path(data_dir), config), set(classes)
    for image in tqdm(labels.images, desc="import", unit="image", disable=len(labels.images) < 100):
        try:
            n = _import_one(db, store, labels.root, image, known, str(path), report.skipped)
        except StorageError as exc:
            report.skipped.append(f"{image.file}: {exc}; skipped")
            continue
        if n is not None:
            report.images += 1
            report.boxes += n
    return report


def _import_one(db: Database, store: ImageStore, root: Path, image: LabelledImage, known: set[str],
                source: str, skipped: list[str]) -> int | None:
    with db.session() as session:
        view = _find_view(session, image)
        if view is None:
            skipped.append(f"{image.file}: {NO_MATCH}; skipped")
            return None
        pixels = _pixels(store, view, root / image.file)
        if not image.sized:  # the label file did not say: the stored view does
            image = with_size(image, pixels.shape[1], pixels.shape[0], skipped)
        if pixels.shape[1] != image.width or pixels.shape[0] != image.height:
            raise StorageError(f"labels are for {image.width}x{image.height}, the view is "
                               f"{pixels.shape[1]}x{pixels.shape[0]}")
        old_file, container, view_id, view_index = view.image_file, view.container, view.id, view.view
    rows = []
    for box, name in zip(image.boxes.tolist(), image.classes):
        if name not in known:
            skipped.append(f"{image.file}: class {name!r} is not in the vocabulary {sorted(known)}; box skipped")
            continue
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height):
            skipped.append(f"{image.file}: box {box} lies outside the {image.width}x{image.height} image; skipped")
            continue
        rows.append({"view_id": view_id, "class_name": name, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                     "source": source[-255:], "created": utc_now()})
    png = store.relative_path(container.line_id, container.t_gate, container.seq, view_index, "png") \
        if old_file is None else str(Path(old_file).with_suffix(".png"))
    size = store.write(png, pixels) if png != old_file else store.path(png).stat().st_size
    with db.session.begin() as session:
        session.execute(delete(Label).where(Label.view_id == view_id))
        if rows:
            session.execute(insert(Label), rows)
        view = session.get(View, view_id)
        view.labelled, view.image_file, view.image_bytes, view.image_state = True, png, size, STORED
    if old_file and old_file != png:
        store.delete(old_file)  # after the commit: a crash before leaves an orphan, which repair removes
    return len(rows)


def _find_view(session, image: LabelledImage) -> View | None:
    """By container id (a c<id>_v<view> name or field), else by seq (the latest such container)."""
    if image.view is None:
        return None
    if image.container_id is not None:
        return session.scalar(select(View).where(View.container_id == image.container_id, View.view == image.view)
                              .options(selectinload(View.container)))
    if image.container_seq is None:
        return None
    return session.scalar(select(View).join(Container)
                          .where(Container.seq == image.container_seq, View.view == image.view)
                          .order_by(Container.t_gate.desc()).limit(1).options(selectinload(View.container)))


def _pixels(store: ImageStore, view: View, imported: Path) -> np.ndarray:
    """The stored image if still there, else the one that came with the labels (it was purged since)."""
    for candidate in ([store.path(view.image_file)] if view.image_state == STORED else []) + [imported]:
        pixels = read_image(candidate)
        if pixels is not None:
            return pixels
    raise StorageError("neither the stored image nor the labelled file can be read")
