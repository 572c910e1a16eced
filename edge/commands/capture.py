"""`edge capture export`: a captured batch (views + manifest + labels) for replay and retraining."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from edge.commands import config_option
from edge.commands.db import WHEN
from edge.commands.samples import echo_skipped, vocabulary
from edge.config import load_config
from storage.batches import export_batch
from storage.db import open_database
from storage.errors import StorageError


def parse_ranges(text: str) -> set[int]:
    """'1,2,5-9' -> {1, 2, 5, 6, 7, 8, 9}."""
    seqs: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            low, _, high = part.partition("-")
            first, last = int(low), int(high or low)
        except ValueError:
            raise click.BadParameter(f"{part!r}: expected a number or a range like 5-9") from None
        if last < first:
            raise click.BadParameter(f"{part!r}: range runs backwards")
        seqs.update(range(first, last + 1))
    return seqs


@click.group("capture")
def command() -> None:
    """Captured batches: stored containers as a folder another model can replay."""


@command.command("export")
@config_option("The line's config file (data folder, database URL).")
@click.option("--from", "since", type=WHEN, help="Containers gated from this UTC time or age (e.g. 2h).")
@click.option("--to", "until", type=WHEN, help="... up to this UTC time.")
@click.option("--containers", help="Container sequence numbers, e.g. 1,2,5-9 (with --from/--to if seqs restarted).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="A new batch folder.")
def export_command(config_path: Path, since: datetime | None, until: datetime | None, containers: str | None,
                   out: Path) -> None:
    """Write the stored views of the selected containers as a batch folder (manifest.json, views/, labels.json)."""
    if since is None and until is None and containers is None:
        raise click.UsageError("select containers with --from/--to and/or --containers")
    config = load_config(config_path)
    seqs = parse_ranges(containers) if containers else None
    try:
        classes = vocabulary(config)
    except StorageError:
        classes = None  # labels keep the classes they were stored with
    db = open_database(config.database_url)
    report = export_batch(db, config.data_dir, out, config.line.id, since=since, until=until, seqs=seqs,
                          classes=classes)
    db.close()
    echo_skipped(report.skipped)
    click.echo(f"{out}: {report.containers} containers, {report.views} views, {report.labelled_views} labelled")
