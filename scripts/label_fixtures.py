"""Regenerate tests/fixtures/labels/: small label sets written by the labelling tools' own code.

    python -m scripts.label_fixtures [--tools /tmp/labeltools]    # from the repository root

The source is what `edge samples export --format coco` writes (storage.labels.write_coco)
for five views of containers 1-3 of tests/test_label_tools.py's line, edited as a
labeller would (a missed box added, a false one deleted, one reclassified). datumaro
(the library CVAT exports with) and label-studio-converter (Label Studio's) then write
the edited set in each layout `edge samples import` reads. They run in their own venv
(`--tools`, made here if missing): datumaro pulls a second OpenCV that the project's
environment must not get. No images are written: each layout is one a tool exports
"without images"; the import takes their sizes from the stored views.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from storage.labels import LabelledImage, write_coco
from storage.synthetic import CLASSES, HEIGHT, WIDTH

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "labels"
TOOLS = {"datumaro": "1.13.12", "label-studio-converter": "0.0.59"}
# The exported pre-annotations: stem -> [(class, x1, y1, x2, y2, score)].
SOURCE = {
    "c1_v0": [("oil", 40, 60, 100, 110, 0.82), ("bubble", 130, 60, 190, 110, 0.3)],
    "c1_v1": [("black spot", 210.5, 300.25, 260, 380, 0.41)],
    "c2_v0": [("oil", 50, 500, 120, 560, 0.77), ("quenched grain", 400, 80, 470, 150, 0.09)],
    "c2_v3": [],
    "c3_v2": [("plastering thread", 300, 600, 420, 640, 0.66), ("bubble", 520, 700, 560, 760, 0.52)],
}
SUBSETS = {"train": ["c1_v0", "c1_v1", "c2_v0"], "val": ["c2_v3", "c3_v2"]}
EDITS = "c1_v1: a missed oil box added; c2_v0: the quenched grain box deleted; c3_v2: bubble reclassified oil"
UPLOAD = "/data/upload/1"  # where Label Studio keeps UI uploads, each renamed <8 hex>-<name>
# datumaro's own converter (what `datum convert -if coco_instances -f FORMAT` runs; its CLI
# wants extras this venv does not need).
DATUMARO = """
import sys, datumaro as dm
dataset = dm.Dataset.import_from(sys.argv[1], "coco_instances")
dataset.export(sys.argv[3], sys.argv[2], save_media=False)
"""
# Label Studio's "COCO" and "YOLO" exports (without images): its server runs the converter
# so, with the project's upload folder and download_resources off; the CLI cannot say either.
LABEL_STUDIO = """
import sys
from label_studio_converter import Converter
config, tasks, fmt, out, uploads = sys.argv[1:]
converter = Converter(open(config).read(), project_dir=uploads, upload_dir=uploads, download_resources=False)
getattr(converter, "convert_to_" + fmt)(tasks, out, is_dir=False)
"""
DATUMARO_LAYOUTS = {"cvat_coco": "coco_instances", "cvat_yolo": "yolo", "ultralytics": "yolo_ultralytics",
                    "cvat_xml": "cvat"}


def edited() -> dict[str, list[tuple]]:
    boxes = {stem: [b[:5] for b in found] for stem, found in SOURCE.items()}
    boxes["c1_v1"].append(("oil", 15, 20, 45, 70))
    del boxes["c2_v0"][1]
    boxes["c3_v2"][1] = ("oil", *boxes["c3_v2"][1][1:])
    return boxes


def images(boxes: dict[str, list[tuple]], names: dict[str, str] | None = None) -> list[LabelledImage]:
    return [LabelledImage(file=(names or {}).get(stem, f"{stem}.jpg"), width=WIDTH, height=HEIGHT,
                          boxes=np.array([b[1:5] for b in found], np.float32).reshape(-1, 4),
                          classes=[b[0] for b in found], container_id=int(stem[1]), view=int(stem[-1]),
                          scores=[b[5] for b in found] if found and len(found[0]) > 5 else None)
            for stem, found in boxes.items()]


def run(*command: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def tools_python(venv: Path) -> str:
    if not (venv / "bin" / "python").exists():
        run(sys.executable, "-m", "venv", str(venv))
        run(str(venv / "bin" / "pip"), "install", "-q", *(f"{name}=={v}" for name, v in TOOLS.items()))
    return str(venv / "bin" / "python")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=Path, default=Path("/tmp/labeltools"), help="venv for the tools")
    venv = parser.parse_args().tools
    python = tools_python(venv)
    work = Path(tempfile.mkdtemp(prefix="label-fixtures-"))
    try:
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir(parents=True)
        source = {stem: [list(b) for b in found] for stem, found in SOURCE.items()}
        expected = {stem: [list(b) for b in found] for stem, found in edited().items()}
        (OUT / "expected.json").write_text(json.dumps({"tools": TOOLS, "width": WIDTH, "height": HEIGHT,
                                                       "edits": EDITS, "exported": source, "labelled": expected},
                                                      indent=1) + "\n")
        # What the labeller's tool holds after the edits, in our export's COCO layout.
        for subset, stems in SUBSETS.items():  # Ultralytics needs train/val, as CVAT subsets name them
            write_coco(work / "edited" / "annotations" / f"instances_{subset}.json",
                       images({stem: edited()[stem] for stem in stems}), list(CLASSES))
        (work / "edited" / "images").mkdir()  # datumaro wants the folder, not the files
        for layout, fmt in DATUMARO_LAYOUTS.items():
            run(python, "-c", DATUMARO, str(work / "edited"), fmt, str(OUT / layout))
        # Label Studio: the images uploaded through its UI, the edited boxes as the project's
        # annotations (its JSON export), then its own COCO and YOLO exports of that project.
        uploads = {stem: f"{n:08x}-{stem}.jpg" for n, stem in enumerate(SOURCE, start=0x3f2a9c10)}
        write_coco(work / "uploads.json", images(edited(), uploads), list(CLASSES))
        run(str(venv / "bin" / "label-studio-converter"), "import", "coco", "-i", str(work / "uploads.json"),
            "-o", str(work / "tasks.json"), "--image-root-url", UPLOAD, "--out-type", "annotations")
        tasks = json.loads((work / "tasks.json").read_text())  # Label Studio numbers the tasks it imports
        for n, task in enumerate(tasks, start=1):
            task["id"] = n
            for annotation in task["annotations"]:
                annotation.update(id=n, was_cancelled=False)
        studio = OUT / "label_studio_json" / "project.json"  # what its "JSON" export gives
        studio.parent.mkdir()
        studio.write_text(json.dumps(tasks, indent=1) + "\n")
        (work / "upload").mkdir()
        for fmt in ("coco", "yolo"):
            run(python, "-c", LABEL_STUDIO, str(work / "tasks.label_config.xml"), str(studio), fmt,
                str(OUT / f"label_studio_{fmt}"), str(work / "upload"))
        for folder in sorted(OUT.rglob("*"), reverse=True):  # as a clone has them: git keeps no empty folder
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
