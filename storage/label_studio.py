"""Label Studio's own JSON export (its "JSON" button): a list of tasks, read into a LabelSet.

Each task names its image in `data.image` (a UI upload `/data/upload/<project>/<8 hex>-<name>`,
or any URL) and holds the labellers' `annotations`; the boxes are `rectanglelabels` results
in percent of the image, each with the image's size. The last annotation that was not
cancelled counts (a task labelled again has the newer one last); a task nobody labelled
is skipped, so that it does not mark its view labelled with no defect. Only the file's
name is kept: the pixels are the stored view's. An image without boxes has no size here;
an import takes it from the stored view.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import numpy as np

from storage.errors import StorageError
from storage.labels import LabelledImage, LabelSet, fit_box, identified


def is_label_studio(path: Path) -> bool:
    """A JSON file that holds a list (Label Studio's tasks), not an object (COCO)."""
    try:
        with Path(path).open("rb") as f:
            return f.read(256).lstrip()[:1] == b"["
    except OSError:
        return False


def read_label_studio(path: Path) -> LabelSet:
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(f"{path}: not readable Label Studio JSON ({exc})") from None
    if not isinstance(tasks, list):
        raise StorageError(f"{path}: not a Label Studio JSON export (a list of tasks)")
    skipped: list[str] = []
    images, classes = [], []
    for task in tasks:
        image = _task(task, skipped)
        if image is not None:
            images.append(image)
            classes += [name for name in image.classes if name not in classes]
    return LabelSet(root=path.parent, images=images, classes=classes, skipped=skipped)


def _task(task: object, skipped: list[str]) -> LabelledImage | None:
    try:
        url = str(task["data"]["image"])
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    except (KeyError, TypeError, AttributeError):
        skipped.append(f"task {str(task)[:80]}: needs data.image and a list of annotations; skipped")
        return None
    name = PurePosixPath(unquote(urlparse(url).path)).name
    if name in ("", ".", ".."):
        skipped.append(f"task {task.get('id')}: image {url!r} names no file; skipped")
        return None
    if not annotations:
        skipped.append(f"{name}: not labelled (no annotation that was not cancelled); skipped")
        return None
    boxes, names, sizes = [], [], set()
    for result in annotations[-1].get("result") or []:
        where = f"{name}: result {result.get('id')!r}"
        if result.get("type") != "rectanglelabels":
            skipped.append(f"{where}: only rectangle labels are read ({result.get('type')}); skipped")
            continue
        try:
            value = result["value"]
            width, height = int(result["original_width"]), int(result["original_height"])
            x, y, w, h = (float(value[key]) for key in ("x", "y", "width", "height"))
            label = str(value["rectanglelabels"][0])
            rotation = float(value.get("rotation") or 0)
        except (KeyError, IndexError, TypeError, ValueError):
            skipped.append(f"{where}: needs x, y, width, height, a label and the original size; skipped")
            continue
        if rotation % 360:
            skipped.append(f"{where}: rotated boxes are not read; skipped")
            continue
        if not (width > 0 and height > 0):
            skipped.append(f"{where}: original size {width}x{height} is not positive; skipped")
            continue
        box = fit_box(x * width / 100, y * height / 100, (x + w) * width / 100, (y + h) * height / 100,
                      width, height, where, skipped)
        if box is not None:
            boxes.append(box)
            names.append(label)
            sizes.add((width, height))
    if len(sizes) > 1:
        skipped.append(f"{name}: its boxes name different image sizes {sorted(sizes)}; skipped")
        return None
    width, height = sizes.pop() if sizes else (0, 0)
    return identified(LabelledImage(file=name, width=width, height=height,
                                    boxes=np.asarray(boxes, np.float32).reshape(-1, 4), classes=names))
