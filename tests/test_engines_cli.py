"""edge export / detect / engine build, run as a user would (click's runner, real files)."""

from __future__ import annotations

import importlib.util
import json

import cv2
import pytest
from click.testing import CliRunner

from edge.cli import main
from engines.export import read_metadata
from engines_support import IMGSZ, make_package, views


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder without config.yaml (defaults apply, data folder ./data) holding one package."""
    monkeypatch.chdir(tmp_path)
    make_package(tmp_path / "data" / "models" / "v1")
    for i, image in enumerate(views([(820, 700), (400, 600)], seed=3)):
        cv2.imwrite(str(tmp_path / f"view{i}.png"), image)
    return tmp_path


def test_export_writes_a_checked_graph_where_asked(workdir) -> None:
    result = CliRunner().invoke(main, ["export", "data/models/v1", "--vocab", "bubble, oil", "--imgsz",
                                       str(IMGSZ), "--batch", "6", "--out", "out/m.onnx"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(workdir / "out" / "m.onnx")
    assert json.loads(meta["vocabulary"]) == ["bubble", "oil"] and meta["batch"] == "6"
    assert "2 classes (bubble, oil)" in result.output


def test_export_refuses_a_bad_batch_in_one_line(workdir) -> None:
    result = CliRunner().invoke(main, ["export", "data/models/v1", "--batch", "zero"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "--batch 'zero'" in result.output


def test_detect_draws_boxes_and_prints_a_table(workdir) -> None:
    result = CliRunner().invoke(main, ["detect", "view0.png", "view1.png", "--model", "data/models/v1",
                                       "--imgsz", str(IMGSZ), "--threshold", "0.99", "--out", "drawn"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("view")]
    found = [row for row in rows if row[1] != "-"]  # a view with nothing found prints "-"
    assert found and all(len(row) >= 7 and 0.99 <= float(row[-5]) <= 1 for row in found)
    assert {row[0] for row in rows} == {"view0.png", "view1.png"}
    drawn, original = cv2.imread(str(workdir / "drawn" / "view0.png")), cv2.imread(str(workdir / "view0.png"))
    assert drawn.shape == original.shape and (drawn != original).any(), "nothing drawn"


def test_detect_on_an_unreadable_image_is_one_line(workdir) -> None:
    (workdir / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(main, ["detect", "broken.png", "--model", "data/models/v1", "--imgsz", str(IMGSZ)])
    assert result.exit_code == 2 and "broken.png: not a readable image" in result.output


def test_engine_build_without_tensorrt_explains(workdir) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed: the build itself is tested in test_engines_tensorrt.py")
    result = CliRunner().invoke(main, ["engine", "build", "data/models/v1"])
    assert result.exit_code == 2 and "tensorrt" in result.output
