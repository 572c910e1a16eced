"""COCO and YOLO label files: round trips, and every kind of bad box reported, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from storage.errors import StorageError
from storage.labels import LabelledImage, read_coco, read_yolo, write_coco, write_yolo

CLASSES = ["oil", "black spot", "bubble"]


def _images(root: Path) -> list[LabelledImage]:
    """Two real PNGs, one with two boxes and one without."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for stem in ("000001_v0", "000001_v1"):
        cv2.imwrite(str(root / "images" / f"{stem}.png"), np.full((80, 60, 3), 200, np.uint8))
    return [
        LabelledImage("images/000001_v0.png", 60, 80,
                      np.array([[1.5, 2.0, 10.25, 20.0], [30, 40, 59, 79]], np.float32),
                      ["oil", "bubble"], container_seq=1, view=0),
        LabelledImage("images/000001_v1.png", 60, 80, np.zeros((0, 4), np.float32), [],
                      container_seq=1, view=1),
    ]


def test_coco_round_trip_and_pycocotools(tmp_path: Path) -> None:
    images = _images(tmp_path)
    write_coco(tmp_path / "annotations.json", images, CLASSES)
    coco = COCO(str(tmp_path / "annotations.json"))
    assert len(coco.getImgIds()) == 2 and len(coco.getAnnIds()) == 2
    assert sorted(coco.getCatIds()) == [1, 2, 3]
    labels = read_coco(tmp_path / "annotations.json", check_images=True)
    assert labels.skipped == [] and labels.classes == CLASSES
    first = labels.images[0]
    assert (first.file, first.container_seq, first.view) == ("images/000001_v0.png", 1, 0)
    np.testing.assert_allclose(first.boxes, images[0].boxes, atol=0.01)
    assert first.classes == ["oil", "bubble"]
    assert len(labels.images[1].boxes) == 0


def test_coco_keeps_look_alikes_as_negatives_and_names_bad_ones(tmp_path: Path) -> None:
    images = _images(tmp_path)
    images[1].negatives = np.array([[5, 6, 15, 18]], np.float32)  # a water drop on a good view
    write_coco(tmp_path / "annotations.json", images, CLASSES)
    document = json.loads((tmp_path / "annotations.json").read_text())
    assert "negatives" not in document["images"][0] and document["images"][1]["negatives"] == [[5, 6, 10, 12]]
    assert len(COCO(str(tmp_path / "annotations.json")).getAnnIds()) == 2  # not annotations: no defect
    back = read_coco(tmp_path / "annotations.json")
    assert back.skipped == [] and len(back.images[0].negatives) == 0
    np.testing.assert_allclose(back.images[1].negatives, [[5, 6, 15, 18]])
    document["images"][0]["negatives"] = [[1, 2, 3], [50, 70, 20, 20], "x"]
    document["images"][1]["negatives"] = {"x": 1}
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    bad = read_coco(tmp_path / "annotations.json")
    text = "\n".join(bad.skipped)
    assert "negative [1, 2, 3] is not a 4-number box" in text and "negative 'x' is not a 4-number box" in text
    assert "'negatives' is dict, not a list of boxes" in text and "partly outside" in text
    np.testing.assert_allclose(bad.images[0].negatives, [[50, 70, 60, 80]])  # clipped to the 60x80 view
    assert len(bad.images[1].negatives) == 0 and bad.images[0].classes == ["oil", "bubble"]


def test_yolo_round_trip(tmp_path: Path) -> None:
    images = _images(tmp_path)
    write_yolo(tmp_path, images, CLASSES)
    assert (tmp_path / "classes.txt").read_text().splitlines() == CLASSES
    assert (tmp_path / "labels" / "000001_v1.txt").read_text() == ""
    labels = read_yolo(tmp_path, check_images=True)
    assert labels.skipped == []
    by_file = {image.file: image for image in labels.images}
    back = by_file["images/000001_v0.png"]
    assert (back.width, back.height, back.container_seq, back.view) == (60, 80, 1, 0)
    np.testing.assert_allclose(back.boxes, images[0].boxes, atol=1e-3)
    assert back.classes == ["oil", "bubble"]


def test_writers_refuse_unknown_class(tmp_path: Path) -> None:
    image = LabelledImage("a.png", 10, 10, np.array([[0, 0, 5, 5]]), ["scratch"])
    with pytest.raises(ValueError, match="scratch"):
        write_coco(tmp_path / "a.json", [image], CLASSES)


def _bad_coco(tmp_path: Path) -> Path:
    (tmp_path / "ok.png").write_bytes(cv2.imencode(".png", np.zeros((100, 100, 3), np.uint8))[1].tobytes())
    (tmp_path / "corrupt.png").write_bytes(b"not a png at all")
    document = {
        "images": [
            {"id": 1, "file_name": "ok.png", "width": 100, "height": 100},
            {"id": 1, "file_name": "dup.png", "width": 100, "height": 100},
            {"id": 2, "file_name": "missing.png", "width": 100, "height": 100},
            {"id": 3, "file_name": "corrupt.png", "width": 100, "height": 100},
        ],
        "categories": [{"id": 1, "name": "oil"}, {"id": 2, "name": "bubble"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},    # good
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},    # duplicate id
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10, 10, 20, 20]},    # unknown class
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [90, 90, 20, 20]},    # partly outside
            {"id": 4, "image_id": 1, "category_id": 2, "bbox": [150, 10, 20, 20]},   # fully outside
            {"id": 5, "image_id": 1, "category_id": 2, "bbox": [10, 10, 0, 20]},     # zero area
            {"id": 6, "image_id": 1, "category_id": 2, "bbox": [10, 10, 20, -5]},    # negative
            {"id": 7, "image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20]},    # missing image
            {"id": 8, "image_id": 1, "category_id": 1, "bbox": [1, 2]},              # malformed
        ],
    }
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(document))
    return path


def test_read_coco_reports_each_bad_box(tmp_path: Path) -> None:
    labels = read_coco(_bad_coco(tmp_path))  # no image decoding: missing files are not noticed
    text = "\n".join(labels.skipped)
    for expected in ("duplicate image id", "duplicate annotation id", "unknown class (category id 9)",
                     "partly outside", "fully outside", "zero or negative area", "4-number bbox"):
        assert expected in text, expected
    assert sum("zero or negative area" in line for line in labels.skipped) == 2
    ok = next(image for image in labels.images if image.file == "ok.png")
    assert ok.classes == ["oil", "bubble"]
    np.testing.assert_allclose(ok.boxes, [[10, 10, 30, 30], [90, 90, 100, 100]])  # second clipped
    assert {image.file for image in labels.images} == {"ok.png", "missing.png", "corrupt.png"}


def test_read_coco_checks_image_files_when_asked(tmp_path: Path) -> None:
    labels = read_coco(_bad_coco(tmp_path), check_images=True)
    text = "\n".join(labels.skipped)
    assert "missing.png is missing" in text and "corrupt.png cannot be decoded" in text
    assert "image id 2 is unknown or was skipped" in text
    assert [image.file for image in labels.images] == ["ok.png"]


def test_read_coco_missing_or_broken_file_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        read_coco(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(StorageError, match="not readable COCO JSON"):
        read_coco(tmp_path / "broken.json")


def test_read_yolo_reports_each_bad_line(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((100, 200, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((100, 200, 3), np.uint8))
    (tmp_path / "images" / "bad.png").write_bytes(b"garbage")
    (tmp_path / "classes.txt").write_text("oil\nbubble\n")
    (tmp_path / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.1 0.1\n"       # good: 90..110 x 45..55
        "7 0.5 0.5 0.1 0.1\n"       # unknown class
        "1 0.99 0.5 0.1 0.1\n"      # partly outside
        "1 1.5 0.5 0.1 0.1\n"       # fully outside
        "1 0.5 0.5 0 0.1\n"         # zero area
        "1 0.5 0.5\n"               # malformed
    )
    (tmp_path / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    labels = read_yolo(tmp_path, check_images=True)
    text = "\n".join(labels.skipped)
    for expected in ("unknown class index 7", "partly outside", "fully outside",
                     "zero or negative area", "expected 'class cx cy w h'",
                     "orphan.txt: no image file", "a.png: duplicate of images/a.jpg",
                     "bad.png: cannot be read"):
        assert expected in text, expected
    assert len(labels.images) == 1
    image = labels.images[0]
    assert image.file == "images/a.jpg" and image.classes == ["oil", "bubble"]
    np.testing.assert_allclose(image.boxes, [[90, 45, 110, 55], [188, 45, 200, 55]], atol=1e-3)
