"""Labelled views for training and evaluation, whatever folder they come from.

One loader reads every labelled source the project has (a COCO JSON file, a YOLO
folder, `edge synth` output, a captured batch with labels.json) into a LabelSet, and
one function restricts it to a vocabulary. Everything that cannot be used is found
here, before the first step, and reported; nothing is discovered mid-epoch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from engines.errors import EngineError
from storage.errors import StorageError
from storage.labels import LabelledImage, LabelSet, container_key, read_coco, read_yolo

log = logging.getLogger(__name__)

COCO_NAMES = ("labels.json", "annotations.json", "coco.json")


def load_labels(path: str | Path, check_images: bool = True) -> LabelSet:
    """Read a COCO file, or a folder holding labels.json (batch, synth), a COCO file or YOLO labels.

    `check_images` decodes every image once, so that a corrupt file is skipped and
    reported now rather than breaking an epoch later.
    """
    path = Path(path)
    try:
        if path.is_file():
            labels = read_coco(path, check_images=check_images)
        elif path.is_dir():
            coco = [path / name for name in COCO_NAMES if (path / name).is_file()]
            if coco:
                labels = read_coco(coco[0], check_images=check_images)
            elif (path / "classes.txt").is_file():
                labels = read_yolo(path, check_images=check_images)
            else:
                raise EngineError(f"{path}: no labels found (expected one of {', '.join(COCO_NAMES)}, "
                                  "or classes.txt and labels/ for YOLO)")
        else:
            raise EngineError(f"{path}: no such dataset file or folder")
    except StorageError as exc:
        raise EngineError(str(exc)) from None
    for line in labels.skipped:
        log.warning("%s: %s", path, line)
    return labels


@dataclass(frozen=True)
class Split:
    """The zero-shot protocol: train on base names only, test on novel names."""

    base: tuple[str, ...]
    novel: tuple[str, ...]


def read_split(path: str | Path) -> Split:
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineError(f"split file {path} does not exist; it must be JSON "
                          '{"base": [names...], "novel": [names...]}') from None
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError(f"split file {path} is not readable JSON ({exc})") from None
    if not isinstance(document, dict) or not all(
            isinstance(document.get(k), list) and document[k] for k in ("base", "novel")):
        raise EngineError(f"split file {path}: needs non-empty lists 'base' and 'novel'")
    base, novel = tuple(map(str, document["base"])), tuple(map(str, document["novel"]))
    overlap = set(base) & set(novel)
    if overlap:
        raise EngineError(f"split file {path}: {sorted(overlap)} are both base and novel")
    return Split(base, novel)


def restrict(labels: LabelSet, vocabulary: list[str] | tuple[str, ...],
             exclude_images_with: tuple[str, ...] = ()) -> LabelSet:
    """Keep boxes whose class is in `vocabulary`; drop whole images holding an excluded class.

    Zero-shot training excludes images with a novel instance (a novel defect must not
    even appear as background). Boxes of other classes are dropped and reported.
    """
    keep, skipped = set(vocabulary), list(labels.skipped)
    excluded, images = set(exclude_images_with), []
    dropped_images, dropped = 0, {}
    for image in labels.images:
        if excluded & set(image.classes):
            dropped_images += 1
            continue
        mask = np.array([name in keep for name in image.classes], bool)
        for name in image.classes:
            if name not in keep:
                dropped[name] = dropped.get(name, 0) + 1
        images.append(replace(image, boxes=image.boxes[mask],
                              classes=[n for n, m in zip(image.classes, mask) if m]))
    if dropped_images:
        skipped.append(f"{dropped_images} images hold a class in {sorted(excluded)}; left out")
    for name, count in sorted(dropped.items()):
        skipped.append(f"{count} boxes of class {name!r} (not in the vocabulary); left out")
    return LabelSet(root=labels.root, images=images, classes=list(vocabulary), skipped=skipped)


def split_containers(labels: LabelSet, share: float, seed: int = 0) -> tuple[LabelSet, LabelSet]:
    """Hold out `share` of the containers (all views of one container on the same side)."""
    keys = sorted({container_key(im) for im in labels.images}, key=str)
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(len(keys))[:max(1, round(share * len(keys)))].tolist())
    held_keys = {keys[i] for i in held}
    a, b = [], []
    for image in labels.images:
        (b if container_key(image) in held_keys else a).append(image)
    return replace(labels, images=a), replace(labels, images=b)


def require_images(labels: LabelSet, what: str) -> None:
    """An empty set stops here, before any model is built, with the reasons it is empty."""
    if not labels.images:
        reasons = "; ".join(labels.skipped[:5]) or "the label file lists no images"
        raise EngineError(f"{what} has no usable images ({reasons})")


def read_image(labels: LabelSet, image: LabelledImage) -> np.ndarray:
    """BGR uint8 pixels (a corrupt file was already reported by load_labels)."""
    pixels = cv2.imread(str(labels.root / image.file), cv2.IMREAD_COLOR)
    if pixels is None:
        raise EngineError(f"{labels.root / image.file}: cannot be decoded; run with image "
                          "checking on (the default) to skip it")
    return pixels


class CropDataset(torch.utils.data.Dataset):
    """Training samples: augmented native-resolution crops, one RNG stream per (epoch, image).

    Seeding each sample from (seed, epoch, index) makes a resumed run draw exactly the
    crops the interrupted one would have, whatever the number of loader workers.
    """

    def __init__(self, labels: LabelSet, augment, seed: int = 0) -> None:
        self.labels, self.augment, self.seed, self.epoch = labels, augment, seed, 0
        self.index = {name: i for i, name in enumerate(labels.classes)}

    def __len__(self) -> int:
        return len(self.labels.images)

    def __getitem__(self, i: int):
        image = self.labels.images[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        pixels, boxes, classes = self.augment(read_image(self.labels, image), image.boxes,
                                              image.classes, rng, image.negatives)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels[:, :, ::-1].transpose(2, 0, 1)))
        target = {"boxes": torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4),
                  "labels": torch.tensor([self.index[c] for c in classes], dtype=torch.long)}
        return tensor, target


def collate(batch):
    """uint8 crops of one size -> float (B, 3, H, W) in [0, 1]; targets stay a list."""
    images = torch.stack([b[0] for b in batch]).float().div_(255)
    return images, [b[1] for b in batch]
