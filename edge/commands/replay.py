"""`edge replay`: run a captured batch through the line's path with one or two models."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from edge.commands import config_option
from edge.commands.samples import echo_skipped
from edge.config import load_config
from storage.errors import StorageError


@click.command("replay")
@click.argument("batch", type=click.Path(path_type=Path, exists=True, file_okay=False))
@config_option("Line configuration (cameras, engine, thresholds, data folder).")
@click.option("--model", default="active", show_default=True,
              help="Model version (registry), package folder, or 'active'.")
@click.option("--compare", default=None, help="A second model to compare with, on the same batch.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for report.md and its pictures (default: <data_dir>/replays/<name>/report).")
def command(batch: Path, config_path: Path, model: str, compare: str | None, report_dir: Path | None) -> None:
    """Replay BATCH (from `edge capture export`) through station, workers and decisions.

    Each model's decisions go to a database of its own under <data_dir>/replays/; the report
    gives decisions, rejects by reason, class and camera, agreement with the captured run and
    between the two models (disagreeing views drawn), and COCO AP and escape rate where the
    batch has labels.
    """
    from edge.replay import run_replay, write_report
    from storage.batches import read_batch
    from engines.registry import Registry

    config = load_config(config_path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    vocabulary = Registry(config.data_dir).resolve(model).vocabulary
    contents = read_batch(batch, classes=list(vocabulary))
    echo_skipped(contents.skipped)  # the batch cameras play exactly what this reader kept
    if not contents.containers:
        raise StorageError(f"{batch}: no usable container (see the skipped lines); nothing to replay")
    click.echo(f"{batch}: {len(contents.containers)} containers"
               + (f", {len(contents.skipped)} things skipped (all listed in the report)" if contents.skipped else ""))
    outcomes = []
    for i, name in enumerate(filter(None, (model, compare))):
        safe = Path(str(name)).name.replace("/", "_")
        outcomes.append(run_replay(config, batch.resolve(), name, f"{batch.name}-{safe}-{stamp}-{i}",
                                   echo=click.echo))
    report_dir = report_dir or Path(config.data_dir) / "replays" / f"{batch.name}-{stamp}-report"
    path = write_report(report_dir, contents, outcomes, vocabulary)
    for outcome in outcomes:
        rejects = sum(d == "reject" for d, _ in outcome.decisions.values())
        click.echo(f"{outcome.model}: {len(outcome.decisions)} containers, {rejects} rejected")
    click.echo(f"report: {path}")
