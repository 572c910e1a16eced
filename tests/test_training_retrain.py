"""Retraining: a better model is promoted, a worse one (class-swapped labels) is refused."""

from __future__ import annotations

from pathlib import Path

from engines.config import EngineConfig
from engines.training.datasets import load_labels
from engines.training.retrain import retrain
from engines.training.train import train
from engines.registry import Registry
from training_support import config, easy_dataset


def test_retrain_promotes_better_and_refuses_worse(tmp_path):
    samples = easy_dataset(tmp_path / "samples", containers=6, seed=1)
    swapped = easy_dataset(tmp_path / "swapped", containers=6, seed=1, swap=True)
    holdout = load_labels(easy_dataset(tmp_path / "holdout", containers=12, seed=2))
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

    # Swapped labels at ten times the rate, so that 30 steps learn the swap: at the same rate
    # both models stayed so weak (AP 0.007-0.1 on a holdout of three boxes) that one ulp in the
    # text embeddings once decided which of them scored higher.
    worse = retrain(load_labels(swapped), str(swapped), registry, engine, data_dir,
                    **{**common, "out": tmp_path / "worse", "replay_share": 0.0, "lr": 2e-2})
    assert not worse.promoted, (worse.new["ap"], worse.active["ap"])
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


def _weak_model(tmp_path: Path, data: Path, data_dir: Path) -> Registry:
    registry = Registry(data_dir)
    weak = train(config(data, tmp_path / "weak", max_steps=1, crop=96, batch=4, version="weak"))
    registry.register(weak.package.path)
    registry.activate("weak")
    return registry


def test_retrain_on_a_time_budget_stops_compares_and_reports_percentages(tmp_path, shipped_config_path):
    import json

    import yaml
    from click.testing import CliRunner

    from edge.cli import main
    from engines.training.progress import read_progress

    samples = easy_dataset(tmp_path / "samples", containers=6, seed=1)
    holdout = easy_dataset(tmp_path / "holdout", containers=3, seed=2)
    data_dir = tmp_path / "data"
    registry = _weak_model(tmp_path, samples, data_dir)
    raw = yaml.safe_load(shipped_config_path.read_text())
    raw["storage"]["data_dir"] = str(data_dir)
    raw["engine"].update(runtime="torch", imgsz=160, threads=1)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))

    result = CliRunner().invoke(main, ["retrain", "--samples", str(samples), "--holdout", str(holdout),
                                       "--epochs", "50", "--crop", "96", "--batch", "4", "--threads", "1",
                                       "--max-minutes", "0.0001", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "stopped on the time budget" in result.output
    assert "escape rate" in result.output and "false reject rate" in result.output and "%" in result.output
    new = [v for v in registry.versions() if v != "weak"]
    assert len(new) == 1
    manifest = json.loads((registry.get(new[0]).path / "manifest.json").read_text())
    assert manifest["training"]["stopped_at_step"] == 1  # the first step already passed the budget
    assert "holdout" in manifest["metrics"] and "parent_on_holdout" in manifest["metrics"]
    progress = read_progress(data_dir)
    assert progress.state == "stopped" and progress.version == new[0]
    assert "budget" in progress.message and progress.step == 1 and progress.steps > 1


def test_progress_file_follows_a_retrain_to_done(tmp_path):
    from engines.training.progress import read_progress

    samples = easy_dataset(tmp_path / "samples", containers=4, seed=1)
    data_dir = tmp_path / "data"
    registry = _weak_model(tmp_path, samples, data_dir)
    result = retrain(load_labels(samples), str(samples), registry, EngineConfig(runtime="torch", imgsz=160, threads=1),
                     data_dir, out=tmp_path / "ft", epochs=1, crop=96, batch=4, progress=False, threads=1,
                     holdout=load_labels(easy_dataset(tmp_path / "holdout", containers=2, seed=2)))
    progress = read_progress(data_dir)
    assert not result.stopped
    assert (progress.state, progress.phase, progress.version) == ("done", "compare", result.package.version)
    assert progress.step == progress.steps > 0
    assert result.package.version in progress.message


def test_gone_synthetic_training_data_is_rendered_again_from_the_recipe(tmp_path, caplog):
    import shutil

    from camera.synth_dataset import RECIPE, SynthRecipe, read_recipe, write_dataset
    from engines.package import ModelPackage
    from engines.training.retrain import replay_sets

    synth = tmp_path / "synth"
    recipe = SynthRecipe(containers=2, seed=5, classes=("oil", "bubble"), defect_free_share=0.0,
                         width=350, height=410)
    write_dataset(synth, recipe, progress=False)
    assert read_recipe(synth) == recipe and (synth / RECIPE).is_file()
    original = load_labels(synth)
    first_image = (synth / original.images[0].file).read_bytes()
    package = train(config(synth, tmp_path / "m", max_steps=1, crop=96, batch=4, version="on-synth")).package
    assert package.manifest["data"]["recipe"] == recipe.to_dict()

    shutil.rmtree(synth)
    data_dir = tmp_path / "data"
    with caplog.at_level("WARNING"):
        [(source, labels)] = replay_sets(ModelPackage.load(package.path), data_dir)
    assert source == str(synth)
    assert "is gone; rendering it again from its recipe" in caplog.text
    assert Path(labels.root).parent == data_dir / "retrain" / "replay"
    assert [im.file for im in labels.images] == [im.file for im in original.images]
    assert [im.classes for im in labels.images] == [im.classes for im in original.images]
    assert (Path(labels.root) / labels.images[0].file).read_bytes() == first_image  # same seed, same pixels
    rendered = (Path(labels.root) / labels.images[0].file).stat().st_mtime_ns
    [(_, again)] = replay_sets(ModelPackage.load(package.path), data_dir)  # the regenerated folder is reused
    assert again.root == labels.root and len(list((data_dir / "retrain" / "replay").iterdir())) == 1
    assert (Path(again.root) / again.images[0].file).stat().st_mtime_ns == rendered
