"""Hostile files (issue 13): nothing outside its folder is read, and a bad number is a skipped line.

Label files (`edge samples import`), captured batches (`edge replay`, the batch camera)
and image headers, each built as real files in tmp_path and read through the real readers,
CLI and station.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from camera.base import ViewMissing
from camera.station import build_station
from edge.cli import main
from edge.config import load_config
from storage import synthetic
from storage.batches import read_batch
from storage.db import View, open_database
from storage.labels import read_coco, read_yolo
from station_support import GATE, LINE, camera_configs, write_batch


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(map(str, args)))
    return result.exit_code, result.output


def outside_image(tmp_path: Path, name: str, size=(synthetic.HEIGHT, synthetic.WIDTH)) -> Path:
    """A real image outside every root a test reads from: it must never be read."""
    path = tmp_path / "outside" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), 7, np.uint8))
    return path


# -- label files -------------------------------------------------------------------------------

def test_samples_import_never_reads_a_label_file_name_outside_its_folder(line, tmp_path):
    config = load_config(line)
    db = open_database(config.database_url)
    with db.session() as session:
        views = session.scalars(select(View).order_by(View.id).limit(2)).all()
        targets = [(v.container_id, v.view, v.image_file) for v in views]
    db.close()
    for _, _, image_file in targets:  # purged: the import would take the labelled file's pixels
        (config.data_dir / image_file).unlink()
    dotdot = outside_image(tmp_path, f"c{targets[0][0]}_v{targets[0][1]}.png")
    absolute = outside_image(tmp_path, f"c{targets[1][0]}_v{targets[1][1]}.png")
    labels = tmp_path / "labelled" / "sub" / "labels.json"
    labels.parent.mkdir(parents=True)
    names = [f"../../outside/{dotdot.name}", str(absolute)]
    labels.write_text(json.dumps({
        "images": [{"id": i + 1, "file_name": name, "width": synthetic.WIDTH, "height": synthetic.HEIGHT}
                   for i, name in enumerate(names)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 10, 20, 20]}
                        for i in range(2)],
        "categories": [{"id": 1, "name": "oil"}]}))

    code, output = invoke("samples", "import", "--config", line, labels)
    assert code == 2, output  # nothing matched: a non-zero exit that says why (issue 15)
    for name in names:
        assert f"skipped: {name} (" in output
    assert "nothing imported" in output
    db = open_database(config.database_url)
    with db.session() as session:
        assert not session.scalars(select(View).where(View.labelled)).all()
    db.close()


def test_yolo_images_and_labels_linked_out_of_the_dataset_are_skipped(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("oil\n")
    cv2.imwrite(str(root / "images" / "000001_v0.png"), np.full((40, 30, 3), 100, np.uint8))
    (root / "images" / "000002_v0.png").symlink_to(outside_image(tmp_path, "secret.png", (40, 30)))
    (root / "labels" / "000001_v0.txt").symlink_to(tmp_path / "outside" / "secret.png")
    labels = read_yolo(root)
    assert [image.file for image in labels.images] == ["images/000001_v0.png"]
    assert labels.images[0].classes == []  # its label file leaves the folder: not read
    text = "\n".join(labels.skipped)
    assert "images/000002_v0.png (a symbolic link that leaves" in text
    assert "labels/000001_v0.txt (a symbolic link that leaves" in text


def test_coco_numbers_that_are_not_whole_numbers_are_skipped_lines(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"images": [{"id": 1e400, "file_name": "a.png", "width": 4, "height": 4},'
                    ' {"id": 2, "file_name": "b.png", "width": 4, "height": 4, "container_seq": "x"}],'
                    ' "annotations": 7, "categories": [{"id": 1e400, "name": "oil"}]}')
    labels = read_coco(path)
    assert labels.images == [] and len(labels.skipped) == 4


# -- captured batches --------------------------------------------------------------------------

def hostile_batch(tmp_path: Path) -> Path:
    """Containers 17, 18, 40 whose views name an absolute path, a link out of the folder, and
    a container whose seq is not a number, beside good ones."""
    batch = write_batch(tmp_path / "batch", [17, 18, 40])
    manifest = json.loads((batch / "manifest.json").read_text())
    manifest["containers"][0]["views"][0]["file"] = str(outside_image(tmp_path, "abs.png", (41, 35)))
    os.symlink(outside_image(tmp_path, "linked.png", (41, 35)), batch / "views" / "linked.png")
    manifest["containers"][1]["views"][1]["file"] = "views/linked.png"
    manifest["containers"][2]["views"][2]["file"] = "views/../views/000040_v2.png"
    manifest["containers"] += [{**manifest["containers"][2], "seq": "forty-one"}, {"seq": "HUGE", "views": []}]
    (batch / "manifest.json").write_text(json.dumps(manifest).replace('"HUGE"', "1e400"))  # JSON reads inf
    return batch


def test_the_batch_camera_plays_exactly_what_the_batch_reader_reports(tmp_path):
    batch_dir = hostile_batch(tmp_path)
    batch = read_batch(batch_dir)
    text = "\n".join(batch.skipped)
    assert f"{tmp_path / 'outside' / 'abs.png'} (an absolute path" in text
    assert "views/linked.png (a symbolic link that leaves" in text
    assert "views/../views/000040_v2.png ('..' in the path" in text
    assert text.count("needs a whole-number 'seq'") == 2 and len(batch.skipped) == 5
    kept = {(c.seq, v.view) for c in batch.containers for v in c.views}
    assert kept == {(s, v) for s in (17, 18, 40) for v in range(6)} - {(17, 0), (18, 1), (40, 2)}

    frames = []
    with build_station(camera_configs("batch", path=str(batch_dir)), GATE, LINE) as station:
        assert station.playlist == [17, 18, 40]  # the station does not crash on seq "forty-one"
        station.run(frames.append, threading.Event())
    played = {(f.container_seq, f.view) for f in frames if f.pixels is not None}
    assert played == kept
    assert all(tuple(f.pixels[0, 0]) != (7, 7, 7) for f in frames if f.pixels is not None)


def test_batch_camera_refuses_a_view_outside_the_folder(tmp_path):
    from camera.drivers.batch import BatchCamera

    camera = BatchCamera(camera_configs("batch", path=str(hostile_batch(tmp_path)))[0])
    camera.open()
    camera.trigger(17)
    with pytest.raises(ViewMissing, match="view 0 of container 17 is not in batch"):
        camera.grab(1.0)


def test_replay_of_a_batch_without_a_usable_container_is_skipped_lines_and_one_error(line, tmp_path):
    batch = tmp_path / "batch"
    (batch / "views").mkdir(parents=True)
    (batch / "manifest.json").write_text(json.dumps({"format": "edge-batch/1", "containers": [
        {"seq": "one", "views": []}, {"seq": 2.5, "views": []}]}))
    code, output = invoke("replay", batch, "--config", line)
    assert code == 2, output
    assert output.count("skipped: manifest.json container #") == 2
    assert output.strip().splitlines()[-1].startswith("error: ") and "no usable container" in output


# -- image headers -----------------------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds almost nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_detect_on_a_png_claiming_100000_squared_pixels_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "huge.png").write_bytes(png_header(100_000, 100_000))
    code, output = invoke("detect", "huge.png")
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith("error: huge.png: not a readable image")


def test_label_and_batch_readers_skip_a_huge_image_header(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("oil\n")
    (root / "images" / "000001_v0.png").write_bytes(png_header(100_000, 100_000))
    assert read_yolo(root).images == [] and "cannot be read" in read_yolo(root).skipped[0]
    batch = write_batch(tmp_path / "batch", [1])
    (batch / "views" / "000001_v3.png").write_bytes(png_header(100_000, 100_000))
    assert "000001_v3.png is corrupt" in read_batch(batch).skipped[0]
