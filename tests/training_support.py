"""A labelled set a tiny model learns in a few dozen steps, and the training settings the
training tests share (a module, not a test file)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.training.train import TrainConfig
from storage.labels import LabelledImage, write_coco

CLASSES = ["dark square", "bright ring"]


def easy_dataset(root: Path, containers: int, seed: int = 0, swap: bool = False, size: int = 160) -> Path:
    """Views a tiny model can learn in a few dozen steps: dark squares and bright rings on grey.

    `swap` exchanges the two class names in the labels (the pixels stay), which makes a
    model trained on it worse on correctly labelled views.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for seq in range(containers):
        for view in range(2):
            img = np.full((size, size, 3), 128, np.uint8) + rng.integers(0, 8, (size, size, 3), dtype=np.uint8)
            boxes, names = [], []
            for _ in range(int(rng.integers(0, 3)) if seq % 3 else 0):  # every third container good
                k = int(rng.integers(0, 2))
                s = int(rng.integers(14, 26))
                x, y = (int(v) for v in rng.integers(4, size - s - 4, 2))
                if k == 0:
                    cv2.rectangle(img, (x, y), (x + s, y + s), (30, 30, 30), -1)
                else:
                    cv2.circle(img, (x + s // 2, y + s // 2), s // 2, (250, 250, 250), 3)
                boxes.append([x, y, x + s + 1, y + s + 1])
                names.append(CLASSES[1 - k] if swap else CLASSES[k])
            file = f"images/{seq:06d}_v{view}.png"
            cv2.imwrite(str(root / file), img)
            images.append(LabelledImage(file, size, size, np.array(boxes, np.float32).reshape(-1, 4), names,
                                        container_seq=seq, view=view))
    write_coco(root / "annotations.json", images, CLASSES)
    return root


def config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=data, out=out, model="rtvp-tiny", epochs=2, crop=96, batch=4, imgsz=160, threads=1,
                val_share=0.1, progress=False, version="tiny-test", lr=2e-3)
    return TrainConfig(**{**base, **kw})
