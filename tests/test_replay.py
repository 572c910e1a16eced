"""`edge replay` of a batch captured by `edge run` gives the same decisions with the same model."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from line_support import line_config, ship_onnx, tiny_package


def edge(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=400)


def decisions(db) -> dict[int, tuple]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT c.seq, c.decision, c.reason, count(d.id) FROM containers c "
                           "JOIN views v ON v.container_id = c.id LEFT JOIN detections d ON d.view_id = v.id "
                           "GROUP BY c.seq").fetchall()
    return {seq: (decision, reason, n) for seq, decision, reason, n in rows}


@pytest.mark.timeout(1500)
def test_replay_of_a_captured_batch_decides_as_the_line_did(tmp_path):
    package = tiny_package(tmp_path / "models" / "tiny-1")
    ship_onnx(package)
    config = line_config(tmp_path, package.path, travel_ms=8000,
                         storage={"keep_images": "all", "image_format": "png"})
    run = edge("run", "--config", str(config), "--containers", "5", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    line = decisions(tmp_path / "data" / "edge.db")
    assert len(line) == 5 and all(reason == "defect" for _, reason, _ in line.values())

    batch = tmp_path / "batch"
    export = edge("capture", "export", "--config", str(config), "--containers", "0-100", "--out", str(batch),
                  cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    replay = edge("replay", str(batch), "--config", str(config), "--model", str(package.path),
                  "--report", str(tmp_path / "report"), cwd=tmp_path)
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    (db,) = (tmp_path / "data" / "replays").glob("batch-*/edge.db")
    assert decisions(db) == line  # same decision, reason and number of detections per container
    report = (tmp_path / "report" / "report.md").read_text()
    assert "same on 5/5 (100.0 %)" in report and "| defect | 5 |" in report


def test_replay_of_a_broken_batch_is_a_one_line_error(tmp_path):
    config = line_config(tmp_path, tmp_path / "nowhere")
    (tmp_path / "batch").mkdir()
    replay = edge("replay", str(tmp_path / "batch"), "--config", str(config), "--model", str(tmp_path),
                  cwd=tmp_path)
    assert replay.returncode == 2 and replay.stderr.count("\n") == 1, replay.stderr


def test_report_compares_two_models_draws_disagreements_and_scores_labels(tmp_path):
    import cv2
    import numpy as np

    from edge.replay import Outcome, write_report
    from storage.stats import Stats
    from storage.batches import Batch, BatchContainer, BatchView
    from storage.labels import LabelledImage, LabelSet

    vocabulary = ("oil", "bubble")
    (tmp_path / "views").mkdir()
    containers, images = [], []
    for seq in (1, 2):
        views = []
        for view in range(6):
            file = tmp_path / "views" / f"{seq:06d}_v{view}.png"
            cv2.imwrite(str(file), np.full((82, 70, 3), 128, np.uint8))
            views.append(BatchView(view, f"cam{view}", file))
            boxes = np.array([[10, 10, 30, 30]], np.float32) if (seq, view) == (1, 0) else np.zeros((0, 4), np.float32)
            images.append(LabelledImage(f"views/{seq:06d}_v{view}.png", 70, 82, boxes,
                                        ["oil"] if len(boxes) else [], seq, view))
        containers.append(BatchContainer(seq, None, "reject" if seq == 1 else "pass", "v1", views))
    batch = Batch(tmp_path, "line-1", None, containers, LabelSet(tmp_path, images, list(vocabulary), []))
    hit = {"class": "oil", "score": 0.9, "box": [10, 10, 30, 30]}
    a = Outcome("v1", {1: ("reject", "defect"), 2: ("pass", "ok")}, {"v1"},
                {(1, 0): [hit]}, {(s, v): f"cam{v}" for s in (1, 2) for v in range(6)},
                Stats(containers=2, passed=1, rejected=1, by_reason={"defect": 1}, by_class={"oil": 1},
                      by_camera={"cam0": 1}))  # storage/stats.py's tally of its database
    b = Outcome("v2", {1: ("pass", "ok"), 2: ("pass", "ok")}, {"v2"}, {},
                {(s, v): f"cam{v}" for s in (1, 2) for v in range(6)})
    report = write_report(tmp_path / "report", batch, [a, b], vocabulary).read_text()
    assert "`v1` vs the decisions recorded at capture: same on 2/2 (100.0 %)" in report
    assert "`v2` vs the decisions recorded at capture: same on 1/2 (50.0 %)" in report
    assert "same decision on 1/2 (50.0 %) containers" in report
    assert "![container 1 view 0](images/000001_v0.jpg)" in report
    assert (tmp_path / "report" / "images" / "000001_v0.jpg").is_file()
    assert "| oil | 1 |" in report and "| cam0 | 1 |" in report
    assert "`v1`: COCO AP 1.000" in report and "escape rate (defective containers passed): 0/1" in report
    assert "`v2`: COCO AP 0.000" in report and "escape rate (defective containers passed): 1/1 (100.0 %)" in report
