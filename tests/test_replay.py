"""`edge replay` of a batch captured by `edge run` gives the same decisions with the same model."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from test_line_support import line_config, ship_onnx, tiny_package


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
