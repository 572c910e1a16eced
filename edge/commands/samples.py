"""`edge samples`: views for a labelling tool (COCO, YOLO, CVAT) and its labels back."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import click

from edge.commands import config_option
from edge.commands.db import WHEN
from edge.config import AppConfig, load_config
from storage.db import Database, open_database
from storage.errors import StorageError
from storage.samples import (FORMATS, NO_MATCH, SamplesReport, export_samples, import_labels,
                             versions_without_thresholds)

log = logging.getLogger(__name__)


def vocabulary(config: AppConfig) -> list[str]:
    """The active model's class names (the shipped model's on a new line, as `edge run` would
    register it); the configured thresholds' classes when no model can be found."""
    from engines.errors import EngineError
    from engines.registry import Registry

    try:
        return list(Registry(config.data_dir).resolve("active").vocabulary)
    except EngineError:
        if config.engine.thresholds:
            return list(config.engine.thresholds)
        raise StorageError("no active model and no engine.thresholds classes in the config: "
                           "the class vocabulary is unknown; register a model first") from None


def model_thresholds(config: AppConfig, db: Database) -> dict[str, dict[str, float]]:
    """Per model version with detections stored before each recorded its own threshold, the
    class thresholds its engine applied (config.yaml's engine.thresholds, else the package's
    calibration, else the default): what those were decided at. A version no longer in the
    registry (or modified since) is left out."""
    from engines.engine import class_thresholds
    from engines.errors import EngineError
    from engines.registry import Registry

    registry, found = Registry(config.data_dir), {}
    for version in versions_without_thresholds(db):
        try:
            package = registry.get(version)
        except EngineError as exc:
            log.warning("model version %s: %s; its containers' older detections use config.yaml's thresholds",
                        version, exc)
            continue
        found[version] = {name: float(t) for name, t in
                          zip(package.vocabulary, class_thresholds(package.vocabulary, config.engine,
                                                                  package.thresholds))}
    return found


def threshold_sources(report: SamplesReport) -> str:
    """One line: how many detections were drawn at which thresholds."""
    words = {"recorded": "the threshold the line recorded with them",
             "model": "their model version's thresholds (its package, as the engine applied them; "
                      "stored before thresholds were recorded)",
             "config": "config.yaml's engine thresholds (stored before thresholds were recorded; "
                       "model version unknown or not in the registry)"}
    counts = [f"{report.thresholds[key]} at {text}" for key, text in words.items() if report.thresholds[key]]
    return f"pre-annotations: detections {'; '.join(counts)}" if counts else "pre-annotations: no detections"


def echo_skipped(skipped: list[str], limit: int = 30) -> None:
    for line in skipped[:limit]:
        click.echo(f"skipped: {line}", err=True)
    if len(skipped) > limit:
        click.echo(f"skipped: ... and {len(skipped) - limit} more", err=True)


@click.group("samples")
def command() -> None:
    """Labelled samples for retraining: export to, and import from, labelling tools."""


@command.command("export")
@config_option("The line's config file (data folder, database URL).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="coco", show_default=True,
              help="coco (Label Studio, CVAT), yolo, or cvat (CVAT for images 1.1 XML).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="A new folder.")
@click.option("--since", type=WHEN, help="Containers gated since this UTC time or age (e.g. 7d).")
@click.option("--rejects-only", is_flag=True, help="Only views of rejected containers.")
def export_command(config_path: Path, fmt: str, out: Path, since: datetime | None, rejects_only: bool) -> None:
    """Write stored views with pre-annotations: labels where known, detections otherwise."""
    config = load_config(config_path)
    db = open_database(config.database_url)
    classes = vocabulary(config)
    report = export_samples(db, config.data_dir, out, fmt, classes, config.engine.thresholds,
                            config.engine.default_threshold, since, rejects_only, model_thresholds(config, db))
    db.close()
    echo_skipped(report.skipped)
    click.echo(threshold_sources(report))
    click.echo(f"{out}: {report.images} images, {report.boxes} boxes ({fmt})")


@command.command("import")
@config_option("The line's config file (data folder, database URL).")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
def import_command(config_path: Path, file: Path) -> None:
    """Store labels from FILE against their views: an export of CVAT (COCO 1.0, YOLO 1.1,
    CVAT for images 1.1), Label Studio (COCO, YOLO) or Ultralytics (data.yaml), the file
    or its folder.

    Views are found by a c<container id>_v<view> anywhere in the image name, or COCO
    container_id / view fields. Boxes and class names are checked; what cannot be used is
    listed and the rest stored. Labelled views are kept by the quota and stored lossless
    (PNG). Nothing matched: exit code 2.
    """
    config = load_config(config_path)
    db = open_database(config.database_url)
    report = import_labels(db, config.data_dir, config.storage, file, vocabulary(config))
    db.close()
    echo_skipped(report.skipped)
    if not report.images:
        why = (f"none of its {report.read} images matches a stored view: {NO_MATCH}" if report.read
               else "it holds no images")
        raise StorageError(f"{file}: nothing imported ({report.layout}): {why}")
    click.echo(f"{file}: {report.boxes} boxes on {report.images} views stored as labelled "
               f"({report.layout}, {report.read} views read)")
