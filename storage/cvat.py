"""CVAT for images 1.1 XML: the format CVAT imports as pre-annotations ("Upload annotations").

Only writing is needed here: corrected labels come back from CVAT exported as COCO or
YOLO, which `edge samples import` reads.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from storage.labels import LabelledImage


def write_cvat(path: Path, images: list[LabelledImage], classes: list[str], source: str = "auto") -> None:
    """annotations.xml with one <image> per view, its boxes as <box label= xtl= ytl= xbr= ybr=>."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "size").text = str(len(images))
    labels = ET.SubElement(task, "labels")
    for name in classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
        ET.SubElement(label, "attributes")
    for i, image in enumerate(images):
        node = ET.SubElement(root, "image", id=str(i), name=image.file, width=str(image.width),
                             height=str(image.height))
        for (x1, y1, x2, y2), name in zip(image.boxes.tolist(), image.classes):
            ET.SubElement(node, "box", label=name, source=source, occluded="0", z_order="0",
                          xtl=f"{x1:.2f}", ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}")
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
