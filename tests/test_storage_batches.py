"""Captured batches, labelled samples and the `edge db|capture|samples` commands, end to end."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from click.testing import CliRunner
from sqlalchemy import select

from edge.cli import main
from edge.config import load_config
from storage import synthetic
from storage.batches import read_batch, replay_store
from storage.db import STORED, Container, Label, View, head_revision, open_database
from storage.labels import LabelledImage, read_coco, write_coco
from storage.writer import Recorder
from storage_support import IMAGES

CLASSES = list(synthetic.CLASSES)


def edge(*args: str) -> str:
    result = CliRunner().invoke(main, list(map(str, args)))
    assert result.exit_code == 0, result.output
    return result.output


def test_capture_export_writes_the_seam_layout(line, tmp_path):
    out = tmp_path / "batch"
    edge("capture", "export", "--config", line, "--containers", "2,5-7", "--out", out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "edge-batch/1" and manifest["line"] == "line-1"
    assert [c["seq"] for c in manifest["containers"]] == [2, 5, 6, 7]
    c5 = manifest["containers"][1]
    assert c5["decision"] == "reject" and c5["model_version"] == "v1"
    assert c5["views"][3] == {"view": 3, "camera_id": "cam-3", "file": "views/000005_v3.jpg",
                              "t_capture": synthetic.container(5).views[3].t_capture.isoformat()}
    batch = read_batch(out)
    assert batch.skipped == [] and batch.labels is None
    assert [len(c.views) for c in batch.containers] == [6, 6, 6, 6]
    assert batch.containers[1].views[0].load().shape == (synthetic.HEIGHT, synthetic.WIDTH, 3)

    by_time = tmp_path / "by-time"
    t = synthetic.container(3).t_gate.isoformat()
    edge("capture", "export", "--config", line, "--from", t, "--to", synthetic.container(5).t_gate.isoformat(),
         "--out", by_time)
    assert [c.seq for c in read_batch(by_time).containers] == [3, 4]


def test_capture_export_refuses_a_non_empty_folder(line, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = CliRunner().invoke(main, ["capture", "export", "--config", str(line), "--containers", "1",
                                       "--out", str(tmp_path / "full")])
    assert result.exit_code == 2 and "not empty" in result.output


def test_samples_round_trip_through_a_labelling_tool(line, tmp_path):
    config = load_config(line)
    out = tmp_path / "coco"
    edge("samples", "export", "--config", line, "--format", "coco", "--out", out, "--rejects-only")
    exported = read_coco(out / "annotations" / "instances_default.json", images_root=out / "images")
    assert len(exported.images) == 12 and exported.classes == CLASSES  # containers 5 and 10
    assert all(img.file.startswith("c") for img in exported.images)
    # Pre-annotations are the detections at or above the thresholds (0.5 in the shipped config).
    pre = exported.images[0]
    expected = [d for d in synthetic.container(pre.container_seq).views[pre.view].detections if d["score"] >= 0.5]
    assert sorted(pre.classes) == sorted(d["class"] for d in expected)

    # The labeller corrects two views; one box has a class the model does not know,
    # one lies outside the image, one image is not from this line.
    a, b = exported.images[0], exported.images[7]
    labelled = [
        LabelledImage(a.file, a.width, a.height, [[10, 10, 50, 60], [100, 100, 120, 130]], ["bubble", "oil"]),
        LabelledImage(b.file, b.width, b.height, [[5, 5, 30, 30], [600, 700, 900, 900]], ["crack", "oil"]),
        LabelledImage("images/c999_v0.jpg", a.width, a.height, [], []),
    ]
    write_coco(out / "labels.json", labelled, [*CLASSES, "crack"])
    document = json.loads((out / "labels.json").read_text())
    document["annotations"][-1]["bbox"] = [800, 900, 30, 20]  # outside the 700x820 image
    (out / "labels.json").write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["samples", "import", "--config", str(line), str(out / "labels.json")])
    assert result.exit_code == 0, result.output
    assert "'crack' is not in the vocabulary" in result.output
    assert "c999_v0" in result.output and "outside" in result.output
    assert "2 boxes on 2 views" in result.output

    db = open_database(config.database_url)
    with db.session() as s:
        views = s.scalars(select(View).where(View.labelled.is_(True))).all()
        assert len(views) == 2
        assert all(v.image_file.endswith(".png") and v.image_state == STORED for v in views)
        assert all((config.data_dir / v.image_file).is_file() for v in views)
        boxes = {(lb.class_name, tuple(lb.box)) for lb in s.scalars(select(Label))}
        assert ("bubble", (10, 10, 50, 60)) in boxes and ("oil", (100, 100, 120, 130)) in boxes
        assert not any(name == "crack" for name, _ in boxes)
        labelled_seq = s.get(Container, views[0].container_id).seq
    assert list(config.data_dir.rglob("*.jpg"))  # only the labelled views were converted
    db.close()

    # The labels travel with a captured batch, for replay's AP and retraining.
    batch_dir = tmp_path / "batch"
    edge("capture", "export", "--config", line, "--containers", labelled_seq, "--out", batch_dir)
    batch = read_batch(batch_dir, classes=CLASSES)
    view = next(v for v in batch.containers[0].views if v.file.suffix == ".png")
    labels = batch.labels_for(labelled_seq, view.view)
    assert labels is not None and len(labels.classes) >= 1


def test_yolo_and_cvat_exports(line, tmp_path):
    edge("samples", "export", "--config", line, "--format", "yolo", "--out", tmp_path / "yolo", "--rejects-only")
    assert (tmp_path / "yolo" / "classes.txt").read_text().split("\n")[:5] == CLASSES
    assert len(list((tmp_path / "yolo" / "labels").glob("*.txt"))) == 12
    first = sorted((tmp_path / "yolo" / "labels").glob("*.txt"))[0]
    first.write_text("1 0.5 0.5 0.1 0.1\n")  # a labeller's black spot
    output = edge("samples", "import", "--config", line, tmp_path / "yolo")
    assert "on 12 views" in output

    edge("samples", "export", "--config", line, "--format", "cvat", "--out", tmp_path / "cvat",
         "--since", synthetic.container(10).t_gate.isoformat())
    root = ET.parse(tmp_path / "cvat" / "annotations.xml").getroot()
    assert [lb.text for lb in root.iterfind("meta/task/labels/label/name")] == CLASSES
    images = root.findall("image")  # named inside images/, as CVAT and datumaro look them up
    assert len(images) == 6 and all("/" not in i.get("name") for i in images)
    assert all((tmp_path / "cvat" / "images" / i.get("name")).is_file() for i in images)


def test_bad_batch_is_reported_and_the_rest_proceeds(line, tmp_path):
    out = tmp_path / "batch"
    edge("capture", "export", "--config", line, "--containers", "1-3", "--out", out)
    (out / "views/000001_v0.jpg").unlink()
    (out / "views/000002_v4.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    write_coco(out / "labels.json", [
        LabelledImage("views/000003_v1.jpg", synthetic.WIDTH, synthetic.HEIGHT,
                      [[1, 1, 20, 20], [10, 10, 30, 30]], ["crack", "bubble"]),
        LabelledImage("views/000003_v2.jpg", synthetic.WIDTH, synthetic.HEIGHT,
                      [[690, 800, 990, 1900]], ["oil"])], [*CLASSES, "crack"])
    document = json.loads((out / "labels.json").read_text())
    document["annotations"][-1]["bbox"] = [900, 1000, 50, 50]  # entirely outside the image
    (out / "labels.json").write_text(json.dumps(document))
    batch = read_batch(out, classes=CLASSES)
    text = "\n".join(batch.skipped)
    assert "000001_v0.jpg is missing" in text
    assert "000002_v4.jpg is corrupt" in text
    assert "'crack' is not in the vocabulary" in text
    assert "000003_v2.jpg" in text and len(batch.skipped) == 4
    assert [len(c.views) for c in batch.containers] == [5, 5, 6]
    assert batch.labels_for(3, 1).classes == ["bubble"]
    assert batch.labels_for(3, 2).classes == []

    (out / "manifest.json").write_text('{"format": "edge-batch/1", "containers": [')
    rebuilt = read_batch(out)
    assert "does not parse" in rebuilt.skipped[0]
    assert [c.seq for c in rebuilt.containers] == [1, 2, 3] and rebuilt.containers[0].t_gate is None


def test_db_commands(line, tmp_path):
    output = edge("db", "stats", "--config", line)
    assert "containers 10  passed 8  rejected 2  yield 80.00%" in output
    assert "defect" in output and "2026-11-25 08:00" in output
    assert "containers 0" in edge("db", "stats", "--config", line, "--since", "1h")
    assert "clean" in edge("db", "check", "--config", line)
    assert f"-> {head_revision()}" in edge("db", "upgrade", "--config", line)


def test_replay_store_is_apart_from_the_line(line, tmp_path):
    config = load_config(line)
    url, folder = replay_store(config.data_dir, "run-1")
    assert url != config.database_url and folder.is_relative_to(config.data_dir)
    with Recorder(url, folder, config.storage) as rec:
        rec.record(synthetic.container(1), synthetic.images(1, IMAGES))
    db = open_database(config.database_url)
    with db.session() as s:
        assert len(s.scalars(select(Container)).all()) == 10
    db.close()
