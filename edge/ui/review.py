"""An operator's verdict on one view, stored as labels: what `edge samples import` writes.

confirmed      the view's boxes as they stand (the operator may have moved or renamed them)
false reject   no defect: the view is labelled with no boxes
missed defect  the boxes the operator drew (plus any confirmed ones sent with them)

Stored through storage.samples' own import path, so a view labelled here is exactly like
one labelled in CVAT: earlier labels replaced, `labelled` set (kept by the quota), image
re-encoded to PNG; `edge samples export` and `edge retrain --from-db` see it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storage.config import StorageConfig
from edge.ui.images import image_size
from storage.db import STORED, Database, View
from storage.errors import StorageError
from storage.images import ImageStore
from storage.labels import LabelledImage
from storage.samples import _import_one

VERDICTS = ("confirmed", "false reject", "missed defect")


def save_verdict(db: Database, data_dir: Path, storage: StorageConfig, view_id: int, verdict: str,
                 boxes: list[dict], classes: list[str], user: str) -> int:
    """Store `boxes` ([{"class", "box": [x1, y1, x2, y2]}] in view pixels) as the view's labels;
    returns how many were stored. A new class name is allowed: the detector is prompted by names."""
    if verdict not in VERDICTS:
        raise StorageError(f"verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
    if verdict == "false reject":
        boxes = []
    elif not boxes:
        raise StorageError(f"{verdict}: mark at least one box, or choose false reject")
    names = [str(b.get("class", "")).strip() for b in boxes]
    if any(not n or len(n) > 64 for n in names):
        raise StorageError("every box needs a class name of 1 to 64 characters")
    try:
        coords = np.array([[float(v) for v in b["box"]] for b in boxes], np.float32).reshape(-1, 4)
    except (KeyError, TypeError, ValueError):
        raise StorageError("a box needs four coordinates") from None
    with db.session() as session:
        found = session.get(View, view_id)
        if found is None or found.image_state != STORED:
            raise StorageError(f"view {view_id} has no stored image to label")
        file, container_id, view = found.image_file, found.container_id, found.view
    size = image_size(Path(data_dir) / file)
    if size is None:
        raise StorageError(f"view {view_id}: image {file} cannot be read")
    image = LabelledImage(file=f"c{container_id}_v{view}.png", width=size[0], height=size[1], boxes=coords,
                          classes=names, container_id=container_id, view=view)
    skipped: list[str] = []
    stored = _import_one(db, ImageStore(Path(data_dir), storage), Path(data_dir), image,
                         set(classes) | set(names), f"ui:{user}:{verdict}", skipped)
    if skipped:
        raise StorageError("; ".join(skipped))
    return stored or 0
