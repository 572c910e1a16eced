"""Retraining: a better model is promoted, a worse one (class-swapped labels) is refused."""

from __future__ import annotations

import sys
from pathlib import Path

from engines.config import EngineConfig
from engines.training.datasets import load_labels
from engines.training.retrain import retrain
from engines.training.train import train
from storage.registry import Registry

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
