"""The leave-families-out escape figure: containers with held-out defects only, judged by a real engine."""

from __future__ import annotations

import pytest

from camera.defect_catalogue import NAMES
from camera.synth_dataset import SynthRecipe, write_dataset
from engines.config import EngineConfig
from engines.package import ModelPackage
from engines.training.datasets import load_labels
from engines.training.leave_families_out import escape_vocabularies, held_out, held_out_escape
from line_support import IMGSZ

pytestmark = pytest.mark.usefixtures("one_thread")


def test_splits_rotate_over_the_whole_catalogue() -> None:
    splits = [held_out(k, 3) for k in range(3)]
    assert sorted(n for s in splits for n in s) == sorted(NAMES)  # each family held out exactly once
    assert all(len(s) >= 5 for s in splits)
    seen = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")
    from_seen = [held_out(k, 3, seen) for k in range(3)]  # fine-tuning a model that knows five
    assert sorted(n for s in from_seen for n in s) == sorted(set(NAMES) - set(seen))
    assert all(len(s) == 4 for s in from_seen)


def test_held_out_escape_counts_every_held_out_container(tmp_path, model) -> None:
    package = ModelPackage.load(next(model.iterdir()))
    novel = tuple(n for n in held_out(1, 3) if n not in package.vocabulary)[:2]  # the tiny model knows five
    write_dataset(tmp_path / "escape", SynthRecipe(containers=6, seed=7, classes=novel, catalogue="full"))
    labels = load_labels(tmp_path / "escape")
    assert {c for im in labels.images for c in im.classes} <= set(novel)
    defective = {im.container_seq for im in labels.images if im.classes}
    good = {im.container_seq for im in labels.images} - defective
    assert defective and good

    arms = escape_vocabularies(package.vocabulary, novel)
    assert len(arms) == 4
    generic = "with held-out names + defect"  # the generic prompt is a word the package was not built with
    figures = held_out_escape(package, tmp_path / "escape", {tag: arms[tag] for tag in (generic, "base names only")},
                              EngineConfig(runtime="onnxruntime", imgsz=IMGSZ, threads=1), tmp_path / "data")
    assert figures[generic]["vocabulary"] == [*package.vocabulary, *novel, "defect"]
    assert figures["base names only"]["vocabulary"] == list(package.vocabulary)
    for tag, f in figures.items():
        # the held-out containers are defective whether or not the model was told their names
        assert (f["defective_containers"], f["good_containers"]) == (len(defective), len(good)), tag
        assert f["false_reject_rate"] == 0.0  # 1% of a few good containers allows none
        assert 0.0 <= f["escape_rate"] <= 1.0 and f["target_false_reject_rate"] == 0.01
