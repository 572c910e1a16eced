"""`edge detect IMAGE...`: run the detector on image files, draw what it found, print a table.

For a person who wants to look: each image is written to the output folder with its
boxes and labels drawn, and one line per detection is printed. The engine is the one
the line would use (config.yaml's engine section), unless --runtime says otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import click
import cv2
import numpy as np

from engines.detections import Detections
from engines.errors import EngineError
from engines.runtimes import RUNTIMES
from edge.commands import config_option, engine_setup
from storage import files
from storage.draw import Mark, draw

log = logging.getLogger(__name__)

model_option = click.option("--model", default=None,
                            help="'active', a registered version, or a model package folder "
                                 "[default: engine.model from the config].")
vocab_option = click.option("--vocab", default=None,
                            help='Comma-separated class names, e.g. "oil,black spot" [default: the model\'s].')


def parse_vocab(vocab: str | None) -> list[str] | None:
    return [name.strip() for name in vocab.split(",")] if vocab else None


def marks(detections: Detections) -> list[Mark]:
    return [Mark(box.tolist(), detections.vocabulary[c], float(score))
            for box, score, c in zip(detections.boxes, detections.scores, detections.classes)]


def output_names(paths: Sequence[Path]) -> list[str]:
    """One file name per input, unique: a name given twice (two folders) gets -2, -3, ... ."""
    names, seen = [], set()
    for path in paths:
        name = path.name if path.suffix else f"{path.name}.png"
        stem, suffix, n = Path(name).stem, Path(name).suffix, 1
        while name in seen:
            n += 1
            name = f"{stem}-{n}{suffix}"
        seen.add(name)
        names.append(name)
    return names


def read_image(path: Path) -> np.ndarray:
    """The image's pixels, or one line naming the file: corrupt, not an image, or too large."""
    image = files.read_image(path)
    if image is None:
        raise EngineError(f"{path}: not a readable image (png, jpg, bmp, tiff; at most "
                          f"{files.MAX_PIXELS} pixels)")
    return image


@click.command("detect")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@model_option
@click.option("--runtime", type=click.Choice(sorted(RUNTIMES)), default=None,
              help="Runtime to use [default: engine.runtime from the config].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the annotated images [default: <data_dir>/detections].")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="One score threshold for every class [default: the config's per-class thresholds].")
@click.option("--imgsz", type=int, default=None, help="Input size, a multiple of 32 [default: engine.imgsz].")
@vocab_option
@config_option("config.yaml: engine settings and the data folder (defaults apply when the file is absent).")
def command(images: tuple[Path, ...], model: str | None, runtime: str | None, out_dir: Path | None,
            threshold: float | None, imgsz: int | None, vocab: str | None, config_path: Path) -> None:
    """Detect defects in IMAGE files; draw boxes into --out and print one line per detection."""
    from engines.runtimes import open_engine

    views = [read_image(path) for path in images]  # a bad file is named before any model loads
    config, data_dir = engine_setup(config_path)
    config = config.model_copy(update={k: v for k, v in (("runtime", runtime), ("imgsz", imgsz)) if v})
    out_dir = out_dir or data_dir / "detections"
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_engine(model or config.model, config, data_dir, vocabulary=parse_vocab(vocab),
                     score_floor=threshold) as engine:
        results = engine.infer(views)
    click.echo(f"model {engine.version} ({config.runtime}), classes: {', '.join(engine.vocabulary)}")
    click.echo(f"{'image':<32} {'class':<20} {'score':>6}  {'x1':>7} {'y1':>7} {'x2':>7} {'y2':>7}")
    for name, image, detections in zip(output_names(images), views, results):
        target = out_dir / name
        if not cv2.imwrite(str(target), draw(image, marks(detections), engine.vocabulary)):
            raise EngineError(f"{target}: cannot write the annotated image")
        if not len(detections):
            click.echo(f"{name:<32} {'-':<20}")
        for row in detections.to_list():
            x1, y1, x2, y2 = row["box"]
            click.echo(f"{name:<32} {row['class']:<20} {row['score']:>6.3f}  {x1:>7.1f} {y1:>7.1f} "
                       f"{x2:>7.1f} {y2:>7.1f}")
    click.echo(f"{sum(len(d) for d in results)} detection(s) in {len(images)} image(s); drawn into {out_dir}")
