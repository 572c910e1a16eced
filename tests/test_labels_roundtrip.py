"""Labels through the labelling tools' own layouts and back, and the thresholds pre-annotations use.

A small line database is exported with `edge samples export`; its boxes are written out
in each tool's export layout and imported with `edge samples import`, which must store
exactly those boxes. Label Studio's layouts are made by label-studio-converter itself
(the code Label Studio exports with; the test extra installs it) from a Label Studio JSON
export whose images were uploaded through its UI (`<8 hex>-c4_v0.jpg`). CVAT and
Ultralytics layouts are written here from their documented formats (CVAT 2.x "Export
dataset": COCO 1.0, YOLO 1.1, CVAT for images 1.1; docs.ultralytics.com/datasets/detect:
data.yaml, images/ and labels/ per split), with and without images; the same layouts as
datumaro (CVAT's export code) writes them are checked-in fixtures (tests/test_label_tools.py).
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from edge.config import load_config
from storage.db import Detection, Label, View, open_database
from labels_support import CLASSES, H, LINE_THRESHOLD, W, edge, exported, same, stored_labels


# -- the layouts, as each tool writes them ------------------------------------------------

def label_studio_json(truth: dict, images: Path, out: Path) -> tuple[Path, str]:
    """A Label Studio JSON export of UI uploads, and the labelling config of the project."""
    tasks = []
    for n, (stem, boxes) in enumerate(sorted(truth.items()), start=1):
        upload = f"{n:08x}-{stem}.jpg"
        shutil.copyfile(images / f"{stem}.jpg", out / "upload" / "1" / upload)
        result = [{"id": f"r{n}-{i}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                   "original_width": W, "original_height": H, "image_rotation": 0,
                   "value": {"x": 100 * x1 / W, "y": 100 * y1 / H, "width": 100 * (x2 - x1) / W,
                             "height": 100 * (y2 - y1) / H, "rotation": 0, "rectanglelabels": [name]}}
                  for i, (name, (x1, y1, x2, y2)) in enumerate(boxes)]
        tasks.append({"id": n, "data": {"image": f"/data/upload/1/{upload}"},
                      "annotations": [{"id": n, "result": result, "was_cancelled": False}]})
    path = out / "project.json"
    path.write_text(json.dumps(tasks))
    labels = "".join(f'<Label value="{c}"/>' for c in CLASSES)
    config = (f'<View><Image name="image" value="$image"/>'
              f'<RectangleLabels name="label" toName="image">{labels}</RectangleLabels></View>')
    return path, config


def label_studio(truth: dict, images: Path, out: Path, fmt: str, with_images: bool) -> Path:
    converter_module = pytest.importorskip("label_studio_converter")
    (out / "upload" / "1").mkdir(parents=True)
    source, config = label_studio_json(truth, images, out)
    converter = converter_module.Converter(config, project_dir=str(out), upload_dir=str(out / "upload"),
                                           download_resources=with_images)
    target = out / "export"
    if fmt == "coco":
        converter.convert_to_coco(str(source), str(target), is_dir=False)
        return target / "result.json"
    converter.convert_to_yolo(str(source), str(target), is_dir=False)
    return target


def cvat_coco(truth: dict, images: Path, out: Path, with_images: bool) -> Path:
    """CVAT "COCO 1.0": annotations/instances_default.json, images/ beside it (with images)."""
    (out / "annotations").mkdir(parents=True)
    categories = [{"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(CLASSES)]
    document = {"licenses": [{"name": "", "id": 0, "url": ""}],
                "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "",
                         "year": ""},
                "categories": categories, "images": [], "annotations": []}
    for n, (stem, boxes) in enumerate(sorted(truth.items()), start=1):
        document["images"].append({"id": n, "width": W, "height": H, "file_name": f"{stem}.jpg", "license": 0,
                                   "flickr_url": "", "coco_url": "", "date_captured": 0})
        for name, (x1, y1, x2, y2) in boxes:
            document["annotations"].append({
                "id": len(document["annotations"]) + 1, "image_id": n, "category_id": CLASSES.index(name) + 1,
                "segmentation": [], "area": (x2 - x1) * (y2 - y1), "bbox": [x1, y1, x2 - x1, y2 - y1],
                "iscrowd": 0, "attributes": {"occluded": False, "rotation": 0.0}})
    (out / "annotations" / "instances_default.json").write_text(json.dumps(document))
    if with_images:
        shutil.copytree(images, out / "images")
    return out


def cvat_yolo(truth: dict, images: Path, out: Path, with_images: bool) -> Path:
    """CVAT "YOLO 1.1": obj.names, obj.data, train.txt and obj_train_data/<stem>.txt."""
    (out / "obj_train_data").mkdir(parents=True)
    (out / "obj.names").write_text("\n".join(CLASSES) + "\n")
    (out / "obj.data").write_text(f"classes = {len(CLASSES)}\ntrain = data/train.txt\nnames = data/obj.names\n"
                                  "backup = backup/\n")
    (out / "train.txt").write_text("".join(f"data/obj_train_data/{stem}.jpg\n" for stem in sorted(truth)))
    for stem, boxes in truth.items():
        (out / "obj_train_data" / f"{stem}.txt").write_text(yolo_lines(boxes))
        if with_images:
            shutil.copyfile(images / f"{stem}.jpg", out / "obj_train_data" / f"{stem}.jpg")
    return out


def cvat_xml(truth: dict, images: Path, out: Path, with_images: bool) -> Path:
    """CVAT "CVAT for images 1.1": annotations.xml (meta of a job), images/ beside it."""
    out.mkdir(parents=True)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    job = ET.SubElement(ET.SubElement(root, "meta"), "job")
    labels = ET.SubElement(job, "labels")
    for name in CLASSES:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
    for n, (stem, boxes) in enumerate(sorted(truth.items())):
        image = ET.SubElement(root, "image", id=str(n), name=f"{stem}.jpg", width=str(W), height=str(H))
        for name, (x1, y1, x2, y2) in boxes:
            ET.SubElement(image, "box", label=name, source="manual", occluded="0", xtl=f"{x1:.2f}",
                          ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}", z_order="0")
    ET.ElementTree(root).write(out / "annotations.xml", encoding="utf-8", xml_declaration=True)
    if with_images:
        shutil.copytree(images, out / "images")
    return out


def ultralytics(truth: dict, images: Path, out: Path, with_images: bool) -> Path:
    """data.yaml (the absolute `path` of the PC that wrote it), images/<split>, labels/<split>."""
    stems = sorted(truth)
    for split, chosen in (("train", stems[::2]), ("val", stems[1::2])):
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        for stem in chosen:
            (out / "labels" / split / f"{stem}.txt").write_text(yolo_lines(truth[stem]))
            if with_images:
                shutil.copyfile(images / f"{stem}.jpg", out / "images" / split / f"{stem}.jpg")
    (out / "data.yaml").write_text(yaml.safe_dump({"path": "/home/labeller/datasets/glass", "train": "images/train",
                                                   "val": "images/val", "names": dict(enumerate(CLASSES))}))
    return out


def yolo_lines(boxes) -> str:
    return "".join(f"{CLASSES.index(name)} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} "
                   f"{(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}\n" for name, (x1, y1, x2, y2) in boxes)


LAYOUTS = {
    "label studio coco": lambda t, i, o, w: label_studio(t, i, o, "coco", w),
    "label studio yolo": lambda t, i, o, w: label_studio(t, i, o, "yolo", w),
    "cvat coco 1.0": cvat_coco, "cvat yolo 1.1": cvat_yolo, "cvat xml 1.1": cvat_xml, "ultralytics": ultralytics,
}


# -- tests ----------------------------------------------------------------------------------

def test_pre_annotations_use_the_thresholds_the_line_decided_at(decided_line, tmp_path):
    db = open_database(load_config(decided_line).database_url)
    with db.session() as s:
        assert {d.threshold for d in s.scalars(select(Detection))} == {LINE_THRESHOLD}
    db.close()
    truth = exported(decided_line, tmp_path / "coco")
    # 0.07 is below the config's 0.5 but above the 0.06 the line rejected at: it is there.
    assert sum(len(b) for b in truth.values()) == 3 * 3 * 3
    document = json.loads((tmp_path / "coco" / "annotations" / "instances_default.json").read_text())
    assert sorted({a["attributes"]["score"] for a in document["annotations"]}) == [0.07, 0.3, 0.82]
    assert all(a["score"] == a["attributes"]["score"] for a in document["annotations"])
    assert {i["container_id"] for i in document["images"]} == {1, 2, 3}
    edge("samples", "export", "--config", decided_line, "--format", "cvat", "--out", tmp_path / "cvat")
    boxes = ET.parse(tmp_path / "cvat" / "annotations.xml").getroot().findall("image/box")
    assert len(boxes) == 27 and {b.find("attribute[@name='score']").text for b in boxes} == {
        "0.8200", "0.0700", "0.3000"}


@pytest.mark.parametrize("with_images", [True, False], ids=["with images", "without images"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_imports_the_boxes_that_were_exported(decided_line, tmp_path, layout, with_images):
    truth = exported(decided_line, tmp_path / "export")
    labelled = LAYOUTS[layout](truth, tmp_path / "export" / "images", tmp_path / "tool", with_images)
    output = edge("samples", "import", "--config", decided_line, labelled)
    assert f"on {len(truth)} views stored as labelled" in output, output
    assert same(stored_labels(decided_line), truth)


def test_edits_in_cvat_arrive_exactly(decided_line, tmp_path):
    truth = exported(decided_line, tmp_path / "export")
    edited = {stem: list(boxes) for stem, boxes in truth.items()}
    added = ("oil", (5.0, 6.0, 25.0, 36.0))
    edited["c1_v1"].append(added)                       # a missed defect
    del edited["c2_v0"][0]                              # a false detection
    name, box = edited["c3_v2"][1]
    edited["c3_v2"][1] = (CLASSES[(CLASSES.index(name) + 1) % len(CLASSES)], box)  # the wrong class
    folder = cvat_xml(edited, tmp_path / "export" / "images", tmp_path / "cvat", with_images=False)
    edge("samples", "import", "--config", decided_line, folder)
    stored = stored_labels(decided_line)
    assert same(stored, edited) and not same(stored, truth)
    assert added in stored["c1_v1"]


def test_a_set_that_matches_nothing_exits_non_zero_and_says_why(decided_line, tmp_path):
    truth = exported(decided_line, tmp_path / "export")
    strangers = {f"photo_{i}": boxes for i, boxes in enumerate(truth.values())}
    images = tmp_path / "strangers"
    images.mkdir()
    for stem, old in zip(strangers, truth):
        shutil.copyfile(tmp_path / "export" / "images" / f"{old}.jpg", images / f"{stem}.jpg")
    folder = cvat_coco(strangers, images, tmp_path / "cvat", with_images=True)
    output = edge("samples", "import", "--config", decided_line, folder, code=2)
    assert "nothing imported (CVAT COCO 1.0)" in output and "c<container id>_v<view>" in output
    assert not stored_labels(decided_line)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no labelling tool's layout found" in edge("samples", "import", "--config", decided_line, empty, code=2)


def test_a_label_file_names_nothing_outside_its_folder(decided_line, tmp_path):
    truth = exported(decided_line, tmp_path / "export")
    folder = cvat_xml(truth, tmp_path / "export" / "images", tmp_path / "cvat", with_images=False)
    text = (folder / "annotations.xml").read_text().replace('name="c1_v0.jpg"', 'name="../../etc/c1_v0.jpg"')
    (folder / "annotations.xml").write_text(text)
    output = edge("samples", "import", "--config", decided_line, folder)
    assert "'..' in the path" in output and f"on {len(truth) - 1} views" in output
    db = open_database(load_config(decided_line).database_url)
    with db.session() as s:
        assert not s.scalars(select(Label).join(View).where(View.container_id == 1, View.view == 0)).all()
    db.close()
