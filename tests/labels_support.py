"""A small line database decided at calibrated thresholds, `edge` on the command line, and its
exported and stored boxes compared: what the labelling tests share (a module, not a test file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from edge.cli import main
from edge.config import load_config
from pipeline.decision import DecisionBook
from pipeline.writer import to_record
from storage import synthetic
from storage.db import View, open_database
from storage.writer import Recorder

CLASSES = list(synthetic.CLASSES)
W, H = synthetic.WIDTH, synthetic.HEIGHT
LINE_THRESHOLD = 0.06  # calibrated, as the line's engine applied it (the config's default is 0.5)


def decided(seq: int, scores: list[float], version: str = "v1") -> dict:
    """A decision as the decision stage makes it: the engine's detections carry its threshold."""
    book = DecisionBook(line_id="line-1", travel_time_ms=8000, relay_lead_ms=30, late_result="reject",
                        thresholds={}, default_threshold=0.0)
    t_gate = seq * 1_000_000_000
    decision = None
    for view in range(6):
        dets = [{"class": CLASSES[(view + i) % len(CLASSES)], "score": s, "threshold": LINE_THRESHOLD,
                 "box": [40.0 + 90 * i, 60.0 + 30 * view, 100.0 + 90 * i, 110.0 + 30 * view]}
                for i, s in enumerate(scores) if view % 2 == 0]
        decision = book.view({"seq": seq, "t_gate_ns": t_gate, "view": view, "camera_id": f"cam-{view}",
                              "outcome": "inferred", "detections": dets, "model_version": version,
                              "t_capture_ns": t_gate + 5_000_000}, t_gate + 10_000_000) or decision
    return decision


def line_config(tmp_path: Path, shipped_config_path: Path) -> Path:
    """The shipped config, every view kept, config.yaml's thresholds the default 0.5."""
    raw = yaml.safe_load(shipped_config_path.read_text())
    raw["storage"].update({"data_dir": str(tmp_path / "data"), "keep_images": "all"})
    raw["engine"].update({"thresholds": {}, "default_threshold": 0.5})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def record(path: Path, scores: list[float], versions: tuple[str, ...] = ("v1", "v1", "v1")) -> None:
    """Containers 1, 2, ... decided by the line at calibrated thresholds, each by its model version."""
    config = load_config(path)
    with Recorder(config.database_url, config.data_dir, config.storage) as rec:
        for seq, version in enumerate(versions, start=1):
            rec.record(to_record(decided(seq, scores, version)), synthetic.images(seq))


def edge(*args, code: int = 0) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def exported(line: Path, out: Path) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    """`edge samples export` as COCO; its boxes per image stem (c<id>_v<view>)."""
    edge("samples", "export", "--config", line, "--format", "coco", "--out", out)
    return coco_boxes(out)


def coco_boxes(out: Path) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    """A COCO export's boxes (x1, y1, x2, y2) per image stem (c<id>_v<view>)."""
    document = json.loads((out / "annotations" / "instances_default.json").read_text())
    names = {c["id"]: c["name"] for c in document["categories"]}
    truth = {Path(i["file_name"]).stem: [] for i in document["images"]}
    stems = {i["id"]: Path(i["file_name"]).stem for i in document["images"]}
    for a in document["annotations"]:
        x, y, w, h = a["bbox"]
        truth[stems[a["image_id"]]].append((names[a["category_id"]], (x, y, x + w, y + h)))
    return truth


def stored_labels(line: Path) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    db = open_database(load_config(line).database_url)
    with db.session() as s:
        views = s.scalars(select(View).where(View.labelled)).all()
        out = {f"c{v.container_id}_v{v.view}": [(lb.class_name, tuple(lb.box)) for lb in v.labels] for v in views}
    db.close()
    return out


def same(a: dict, b: dict) -> bool:
    """The same boxes per view, to 0.05 px (COCO keeps 2 decimals, YOLO 6 of the image size)."""
    def norm(boxes):  # in order of class and whole pixels; compared unrounded (300.25 is not 300.2503)
        return sorted(((name, tuple(box)) for name, box in boxes), key=lambda b: (b[0], [round(v) for v in b[1]]))
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = norm(a[key]), norm(b[key])
        if len(x) != len(y) or any(n1 != n2 or np.abs(np.subtract(b1, b2)).max() > 0.05
                                   for (n1, b1), (n2, b2) in zip(x, y)):
            return False
    return True
