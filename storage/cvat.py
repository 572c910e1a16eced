"""CVAT for images 1.1 XML: pre-annotations for CVAT ("Upload annotations"), and CVAT's export read back.

The layout is CVAT's (and datumaro's `cvat` format): `annotations.xml` beside an
`images/` folder, each `<image name=...>` named relative to that folder. Only boxes are
read: polygons, points and tracks are named in `skipped`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from storage.errors import StorageError
from storage.files import MAX_PIXELS, OutsideRoot, atomic_write, inside
from storage.labels import LabelledImage, LabelSet, fit_box, identified

SHAPES = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton", "tag")


def write_cvat(path: Path, images: list[LabelledImage], classes: list[str], source: str = "auto") -> None:
    """annotations.xml with one <image> per view, its boxes as <box label= xtl= ytl= xbr= ybr=>.

    Image names are the file names inside images/ (no folder: CVAT and datumaro look them
    up there); a pre-annotation's score is its `score` attribute.
    """
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "size").text = str(len(images))
    labels = ET.SubElement(task, "labels")
    for name in classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
        attribute = ET.SubElement(ET.SubElement(label, "attributes"), "attribute")
        for key, value in (("name", "score"), ("mutable", "False"), ("input_type", "text"),
                           ("default_value", ""), ("values", "")):
            ET.SubElement(attribute, key).text = value
    for i, image in enumerate(images):
        node = ET.SubElement(root, "image", id=str(i), name=Path(image.file).name, width=str(image.width),
                             height=str(image.height))
        for j, ((x1, y1, x2, y2), name) in enumerate(zip(image.boxes.tolist(), image.classes)):
            box = ET.SubElement(node, "box", label=name, source=source, occluded="0", z_order="0",
                                xtl=f"{x1:.2f}", ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}")
            if image.scores:
                ET.SubElement(box, "attribute", name="score").text = f"{image.scores[j]:.4f}"
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb", fsync=False) as fh:
        ET.ElementTree(root).write(fh, encoding="utf-8", xml_declaration=True)


def read_cvat(path: Path) -> LabelSet:
    """Read CVAT for images 1.1 XML; image names are relative to images/ beside it (or its folder).

    An unparsable file raises StorageError; an image or box that cannot be used is named
    in `skipped` and left out.
    """
    path = Path(path)
    try:
        document = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise StorageError(f"{path}: not readable CVAT XML ({exc}); export 'CVAT for images 1.1' from CVAT") from None
    if document.tag != "annotations":
        raise StorageError(f"{path}: not CVAT for images XML (root <{document.tag}>, expected <annotations>)")
    root = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    classes = list(dict.fromkeys(node.text.strip() for node in document.iterfind("meta//labels/label/name")
                                 if node.text and node.text.strip()))
    skipped: list[str] = []
    if document.find("track") is not None:
        skipped.append(f"{path.name}: tracks (CVAT for video) are not read; export 'CVAT for images 1.1'")
    images = []
    for node in document.iterfind("image"):
        image = _image(node, root, classes, skipped)
        if image is not None:
            images.append(image)
    return LabelSet(root=root, images=images, classes=classes, skipped=skipped)


def _image(node: ET.Element, root: Path, classes: list[str], skipped: list[str]) -> LabelledImage | None:
    name = node.get("name", "")
    try:
        width, height = int(node.get("width", "")), int(node.get("height", ""))
        inside(root, name)
    except OutsideRoot as exc:  # a ValueError too: first
        skipped.append(f"{name} ({exc}; image and its boxes skipped)")
        return None
    except ValueError:
        skipped.append(f"<image name={name!r}>: needs integer width and height; skipped")
        return None
    if not 0 < width * height <= MAX_PIXELS or width <= 0:
        skipped.append(f"{name}: size {width}x{height} is not positive or beyond {MAX_PIXELS} pixels; skipped")
        return None
    boxes, names = [], []
    for shape in node:
        where = f"{name}: <{shape.tag} label={shape.get('label')!r}>"
        if shape.tag in SHAPES:
            skipped.append(f"{where}: only boxes are read; skipped")
            continue
        if shape.tag != "box":
            continue
        try:
            x1, y1, x2, y2 = (float(shape.get(key, "")) for key in ("xtl", "ytl", "xbr", "ybr"))
            rotation = float(shape.get("rotation") or 0)
        except ValueError:
            skipped.append(f"{where}: needs numeric xtl, ytl, xbr, ybr (and rotation); skipped")
            continue
        if rotation % 360:
            skipped.append(f"{where}: rotated boxes are not read; skipped")
            continue
        label = shape.get("label", "")
        if label not in classes:
            classes.append(label)
        box = fit_box(x1, y1, x2, y2, width, height, where, skipped)
        if box is not None:
            boxes.append(box)
            names.append(label)
    return identified(LabelledImage(file=name, width=width, height=height,
                                    boxes=np.asarray(boxes, np.float32).reshape(-1, 4), classes=names))
