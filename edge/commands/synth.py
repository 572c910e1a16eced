"""`edge synth`: write a labelled dataset of synthetic glass containers (camera/synth_dataset.py).

The folder gets a recipe.json (renderer version, seed, counts, classes, picture size)
that model manifests record, so `edge retrain` can render it again where it is gone.
"""

from __future__ import annotations

from pathlib import Path

import click

from camera.errors import CameraError
from camera.synth import CATALOGUES, CLASSES, catalogue_classes
from camera.synth_dataset import SynthRecipe, write_dataset


def parse_classes(text: str | None, catalogue: str = "classic") -> list[str]:
    known = catalogue_classes(catalogue)
    if text is None:
        return list(known)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        given = ", ".join(map(repr, unknown)) or "(none given)"
        raise CameraError(f"--classes: unknown defect class {given} in the {catalogue} catalogue; "
                          f"choose from: {', '.join(known)}")
    return list(dict.fromkeys(names))


@click.command("synth")
@click.option("--containers", "-n", type=int, required=True, help="How many containers (6 views each).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="New (or empty) folder for images/, annotations.json, labels/, classes.txt, "
                   "data.yaml and recipe.json.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same pixels.")
@click.option("--classes", default=None,
              help=f"Comma-separated defect classes to draw (default: all of the catalogue's; classic: "
                   f"{', '.join(CLASSES)}).")
@click.option("--catalogue", type=click.Choice(CATALOGUES), default="classic", show_default=True,
              help="classic: the paper's five classes on the body; full: the glass-industry catalogue "
                   "(camera/defect_catalogue.yaml) on finish, shoulder, body, heel and base, with non-defects.")
@click.option("--defect-free-share", type=float, default=0.3, show_default=True,
              help="Share of containers drawn without any defect (0..1).")
def command(containers: int, out: Path, seed: int, classes: str | None, catalogue: str,
            defect_free_share: float) -> None:
    """Render synthetic back-lit glass containers with labelled defects into OUT.

    Writes images/<seq>_v<view>.png, COCO annotations.json (with container_seq and
    view per image), YOLO labels/*.txt with classes.txt and data.yaml, and recipe.json
    (what `edge retrain` renders the folder again from).
    """
    if containers <= 0:
        raise CameraError(f"--containers must be at least 1, got {containers}")
    if not 0 <= defect_free_share <= 1:
        raise CameraError(f"--defect-free-share must be within 0..1, got {defect_free_share}")
    names = parse_classes(classes, catalogue)
    images = write_dataset(out, SynthRecipe(containers=containers, seed=seed, classes=tuple(names),
                                            defect_free_share=defect_free_share, catalogue=catalogue))
    boxes = sum(len(image.boxes) for image in images)
    click.echo(f"{out}: {containers} containers, {len(images)} views, {boxes} labelled defects "
               f"({', '.join(names)})")
