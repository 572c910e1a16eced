"""`edge synth`: write a labelled dataset of synthetic glass containers.

The dataset is built in a hidden folder beside DIR and renamed to DIR only when every
image and label file is written, so an interrupted or failed run leaves nothing that
looks like a dataset.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click
import cv2
from tqdm import tqdm

from camera.errors import CameraError
from camera.frame import VIEWS
from camera.synth import CLASSES, GlassRenderer
from storage.labels import LabelledImage, write_coco, write_yolo


def parse_classes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CLASSES]
    if unknown or not names:
        given = ", ".join(map(repr, unknown)) or "(none given)"
        raise CameraError(f"--classes: unknown defect class {given}; choose from: {', '.join(CLASSES)}")
    return list(dict.fromkeys(names))


def _staging_folder(out: Path) -> tuple[Path, list[Path]]:
    """Refuse a non-empty DIR; make the hidden folder the dataset is built in.

    Returns it and the parent folders that had to be created, so a failure can
    remove them too.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CameraError(f"--out {out}: exists and is not an empty folder; choose a new folder")
    created = [parent for parent in out.absolute().parents if not parent.exists()]
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        (staging / "images").mkdir(parents=True)
    except OSError as exc:
        _remove_empty(created)
        raise CameraError(f"--out {out}: cannot create a folder there ({exc.strerror}); "
                          "choose a writable location") from None
    return staging, created


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first
        try:
            folder.rmdir()
        except OSError:
            pass


def write_dataset(out: Path, containers: int, seed: int, classes: list[str],
                  defect_free_share: float) -> list[LabelledImage]:
    renderer = GlassRenderer(classes=classes, defect_free_share=defect_free_share)
    staging, created = _staging_folder(out)
    try:
        images = []
        for seq in tqdm(range(containers), desc="containers", unit="ctr"):
            container = renderer.container(seed, seq)
            for view in range(VIEWS):
                rendered = renderer.render(container, view)
                file = f"images/{seq:06d}_v{view}.png"
                if not cv2.imwrite(str(staging / file), rendered.image):
                    raise CameraError(f"--out {out}: could not write {file}")
                height, width = rendered.image.shape[:2]
                images.append(LabelledImage(file=file, width=width, height=height, boxes=rendered.boxes,
                                            classes=rendered.classes, container_seq=seq, view=view))
        write_coco(staging / "annotations.json", images, classes)
        write_yolo(staging, images, classes)
        if out.exists():
            out.rmdir()  # checked empty above; rename needs it gone
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise
    return images


@click.command("synth")
@click.option("--containers", "-n", type=int, required=True, help="How many containers (6 views each).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="New (or empty) folder for images/, annotations.json, labels/ and classes.txt.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same pixels.")
@click.option("--classes", default=",".join(CLASSES), show_default=True,
              help="Comma-separated defect classes to draw.")
@click.option("--defect-free-share", type=float, default=0.3, show_default=True,
              help="Share of containers drawn without any defect (0..1).")
def command(containers: int, out: Path, seed: int, classes: str, defect_free_share: float) -> None:
    """Render synthetic back-lit glass containers with labelled defects into OUT.

    Writes images/<seq>_v<view>.png, COCO annotations.json (with container_seq and
    view per image) and YOLO labels/*.txt with classes.txt.
    """
    if containers <= 0:
        raise CameraError(f"--containers must be at least 1, got {containers}")
    if not 0 <= defect_free_share <= 1:
        raise CameraError(f"--defect-free-share must be within 0..1, got {defect_free_share}")
    names = parse_classes(classes)
    images = write_dataset(out, containers, seed, names, defect_free_share)
    boxes = sum(len(image.boxes) for image in images)
    click.echo(f"{out}: {containers} containers, {len(images)} views, {boxes} labelled defects "
               f"({', '.join(names)})")
