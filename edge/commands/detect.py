"""`edge detect IMAGE...`: run the detector on image files, draw what it found, print a table.

For a person who wants to look: each image is written to the output folder with its
boxes and labels drawn, and one line per detection is printed. The engine is the one
the line would use (config.yaml's engine section), unless --runtime says otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import cv2
import numpy as np

from edge.config import DEFAULT_PATH, load_config
from engines.config import EngineConfig
from engines.detections import Detections
from engines.errors import EngineError
from engines.package import ModelPackage
from engines.runtimes import RUNTIMES
from edge.commands import config_option
from storage import files

log = logging.getLogger(__name__)

# Distinct, readable on grey glass; class i gets PALETTE[i % len].
PALETTE = [(0, 0, 255), (0, 200, 255), (255, 0, 255), (255, 128, 0), (0, 220, 0), (255, 255, 0), (128, 0, 255)]

model_option = click.option("--model", default=None,
                            help="'active', a registered version, or a model package folder "
                                 "[default: engine.model from the config].")
vocab_option = click.option("--vocab", default=None,
                            help='Comma-separated class names, e.g. "oil,black spot" [default: the model\'s].')


def engine_setup(config_path: Path) -> tuple[EngineConfig, Path]:
    """The engine section and data folder of config.yaml, or the defaults without one."""
    if config_path.is_file():
        config = load_config(config_path)
        return config.engine, Path(config.data_dir)
    if config_path != DEFAULT_PATH:
        raise EngineError(f"{config_path}: no such config file")
    return EngineConfig(), Path("data")


def resolve_model(model: str, data_dir: Path) -> ModelPackage:
    """A package folder directly; 'active' or a version name through the registry."""
    if Path(model).is_dir():
        return ModelPackage.load(model)
    from storage.registry import Registry

    registry = Registry(data_dir)
    if model == "active":
        registry.ensure_default()
    return registry.resolve(model)


def parse_vocab(vocab: str | None) -> list[str] | None:
    return [name.strip() for name in vocab.split(",")] if vocab else None


def draw(image: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of `image` with each detection's box and 'class score' label."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for box, score, cls in zip(detections.boxes, detections.scores, detections.classes):
        color = PALETTE[int(cls) % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        label = f"{detections.vocabulary[cls]} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, thickness)
        top = y1 - th - base if y1 - th - base >= 0 else y2
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), color, -1)
        cv2.putText(out, label, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 0, 0),
                    thickness, cv2.LINE_AA)
    return out


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
    from engines.runtimes import load_engine

    views = [read_image(path) for path in images]  # a bad file is named before any model loads
    config, data_dir = engine_setup(config_path)
    config = config.model_copy(update={k: v for k, v in (("runtime", runtime), ("imgsz", imgsz)) if v})
    package = resolve_model(model or config.model, data_dir)
    out_dir = out_dir or data_dir / "detections"
    out_dir.mkdir(parents=True, exist_ok=True)
    with load_engine(package, config, data_dir / "cache", vocabulary=parse_vocab(vocab),
                     score_floor=threshold, data_dir=data_dir) as engine:
        results = engine.infer(views)
    click.echo(f"model {engine.version} ({config.runtime}), classes: {', '.join(engine.vocabulary)}")
    click.echo(f"{'image':<32} {'class':<20} {'score':>6}  {'x1':>7} {'y1':>7} {'x2':>7} {'y2':>7}")
    for path, image, detections in zip(images, views, results):
        target = out_dir / path.name
        if not cv2.imwrite(str(target if target.suffix else target.with_suffix(".png")), draw(image, detections)):
            raise EngineError(f"{target}: cannot write the annotated image")
        if not len(detections):
            click.echo(f"{path.name:<32} {'-':<20}")
        for row in detections.to_list():
            x1, y1, x2, y2 = row["box"]
            click.echo(f"{path.name:<32} {row['class']:<20} {row['score']:>6.3f}  {x1:>7.1f} {y1:>7.1f} "
                       f"{x2:>7.1f} {y2:>7.1f}")
    click.echo(f"{sum(len(d) for d in results)} detection(s) in {len(images)} image(s); drawn into {out_dir}")
