"""The labelled views the line recorded, as a LabelSet for `edge retrain`.

Operators label views at the station (`edge ui`); those labels are rows of the line's
database and the images files of its data folder. Retraining reads them here, so that
engines/training/ works on a LabelSet and never queries the database.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from storage.db import STORED, Container, View, open_database
from storage.labels import LabelledImage, LabelSet


def labels_from_db(database_url: str, data_dir: Path, since: datetime | None = None) -> LabelSet:
    """Labelled views recorded by the line (storage.db `labels` rows), images from the data folder."""
    db = open_database(database_url)
    try:
        with db.session() as session:
            query = (select(View).join(Container).where(View.labelled.is_(True), View.image_state == STORED)
                     .options(selectinload(View.labels), selectinload(View.container)))
            if since is not None:
                query = query.where(Container.t_gate >= since)
            views = session.scalars(query).all()
    finally:
        db.close()
    images, skipped = [], []
    for view in views:
        pixels = cv2.imread(str(Path(data_dir) / view.image_file), cv2.IMREAD_COLOR)
        if pixels is None:
            skipped.append(f"view {view.id} ({view.image_file}): image missing or corrupt; skipped")
            continue
        boxes = np.array([label.box for label in view.labels], np.float32).reshape(-1, 4)
        images.append(LabelledImage(view.image_file, pixels.shape[1], pixels.shape[0], boxes,
                                    [label.class_name for label in view.labels],
                                    container_seq=view.container.seq, view=view.view,
                                    container_id=view.container_id))
    classes = sorted({name for image in images for name in image.classes})
    return LabelSet(root=Path(data_dir), images=images, classes=classes, skipped=skipped)
