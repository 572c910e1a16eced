"""Retraining: a better model is promoted, a worse one (class-swapped labels) is refused."""

from __future__ import annotations

import sys
from pathlib import Path

from engines.config import EngineConfig
from engines.training.datasets import load_labels
from engines.training.retrain import retrain
from engines.training.train import train
from engines.registry import Registry

sys.path.insert(0, str(Path(__file__).parent))
from test_training import config, easy_dataset  # noqa: E402


def test_retrain_promotes_better_and_refuses_worse(tmp_path):
    samples = easy_dataset(tmp_path / "samples", containers=6, seed=1)
    swapped = easy_dataset(tmp_path / "swapped", containers=6, seed=1, swap=True)
    holdout = load_labels(easy_dataset(tmp_path / "holdout", containers=4, seed=2))
    data_dir = tmp_path / "data"
    registry = Registry(data_dir)
    engine = EngineConfig(runtime="torch", imgsz=160, threads=1)

    # a barely trained model is live
    weak = train(config(samples, tmp_path / "weak", max_steps=1, crop=160, batch=8, version="weak"))
    registry.register(weak.package.path)
    registry.activate("weak")
    common = dict(out=None, epochs=15, crop=160, batch=8, lr=2e-3, holdout=holdout, progress=False, threads=1)

    better = retrain(load_labels(samples), str(samples), registry, engine, data_dir,
                     **{**common, "out": tmp_path / "better"})
    assert better.promoted, better.reason
    assert better.new["ap"] > better.active["ap"]
    assert registry.active_version() == better.package.version
    assert better.package.manifest["parent"] == "weak"

    worse = retrain(load_labels(swapped), str(swapped), registry, engine, data_dir,
                    **{**common, "out": tmp_path / "worse", "replay_share": 0.0})
    assert not worse.promoted
    assert "worse" in worse.reason
    assert worse.new["ap"] < worse.active["ap"]
    # registered for the record, but the line keeps the better model
    assert registry.active_version() == better.package.version
    assert set(registry.versions()) == {"weak", better.package.version, worse.package.version}


def test_labelled_views_come_from_the_database(tmp_path):
    from datetime import datetime, timezone

    import cv2
    import numpy as np

    from storage.recorded_labels import labels_from_db
    from storage.db import STORED, Container, Label, View, open_database

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((40, 60, 3), 128, np.uint8))
    db = open_database(f"sqlite:///{tmp_path / 'edge.db'}")
    t = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    with db.session() as session:
        for seq, labelled in ((7, True), (8, False)):
            c = Container(line_id="l", seq=seq, t_gate=t, decision="reject", n_views=1)
            v = View(view=2, camera_id="cam", image_file="images/a.png", image_state=STORED, labelled=labelled)
            if labelled:
                v.labels.append(Label(class_name="oil", x1=1, y1=2, x2=11, y2=12, source="test", created=t))
            c.views.append(v)
            session.add(c)
        session.commit()
    db.close()
    labels = labels_from_db(f"sqlite:///{tmp_path / 'edge.db'}", tmp_path)
    assert len(labels.images) == 1
    image = labels.images[0]
    assert (image.container_seq, image.view, image.width, image.height) == (7, 2, 60, 40)
    assert image.classes == ["oil"] and image.boxes.tolist() == [[1, 2, 11, 12]]
    assert labels_from_db(f"sqlite:///{tmp_path / 'edge.db'}", tmp_path, since=datetime(2027, 1, 1,
                                                                                        tzinfo=timezone.utc)).images == []


def test_mixed_sources_keep_their_own_containers_and_files(tmp_path):
    import numpy as np

    from engines.training.retrain import _rooted
    from storage.labels import LabelledImage

    def view(seq, v):
        return LabelledImage(f"images/{seq:06d}_v{v}.png", 10, 10, np.zeros((0, 4), np.float32), [], seq, v)

    mixed = _rooted([(tmp_path / "new", view(7, 0)), (tmp_path / "new", view(7, 1)),
                     (tmp_path / "old", view(7, 0))], ("oil",))
    seqs = [im.container_seq for im in mixed.images]
    assert seqs[0] == seqs[1] != seqs[2]
    assert mixed.images[2].file == str((tmp_path / "old" / "images/000007_v0.png").resolve())
