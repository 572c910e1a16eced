"""`edge report`: the shift report, one self-contained HTML file (storage/report.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from edge.commands import config_option
from edge.commands.db import WHEN
from edge.config import ConfigError, load_config
from edge.ui.tally import shift_start
from storage.db import open_database
from storage.report import write_report


def shift_window(which: str, starts: list[str], now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the current shift (end: now) or the last complete one (ui.shift_starts)."""
    current = shift_start(now, starts)
    if which == "current":
        return current, now
    return shift_start(current - timedelta(microseconds=1), starts), current


@click.command("report")
@config_option("The line's config file (database, data folder, shifts, SPC).")
@click.option("--shift", "shift", type=click.Choice(["current", "last"]),
              help="The current shift (so far) or the last complete one (ui.shift_starts, local time).")
@click.option("--from", "since", type=WHEN, help="Window start (UTC ISO time or an age such as 8h).")
@click.option("--to", "until", type=WHEN, help="Window end [default: now].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The HTML file [default: report-<line>-<start>.html in the current folder].")
def command(config_path: Path, shift: str | None, since: datetime | None, until: datetime | None,
            out: Path | None) -> None:
    """Yield over time, defect Pareto, per-cavity control charts with alarms, example images of
    the worst cavities, camera health, model version: one HTML file with everything inside."""
    config = load_config(config_path)
    now = datetime.now(timezone.utc)
    if shift and since:
        raise ConfigError("give either --shift or --from/--to, not both")
    if shift:
        since, until = shift_window(shift, config.ui.shift_starts, now)
    elif since is None:
        raise ConfigError("which window? give --shift current|last, or --from TIME [--to TIME]")
    until = until or now
    if until <= since:
        raise ConfigError(f"--to ({until.isoformat()}) must come after --from ({since.isoformat()})")
    out = out or Path(f"report-{config.line.id}-{since.astimezone(timezone.utc):%Y%m%dT%H%M}.html")
    db = open_database(config.database_url)
    try:
        report = write_report(db, config.data_dir, config, since.astimezone(timezone.utc),
                              until.astimezone(timezone.utc), out)
    finally:
        db.close()
    s = report.stats
    click.echo(f"{out}: {s.containers} containers, {s.rejected} rejected, yield {s.yield_:.2%}, "
               f"{len(report.alarms)} control-chart alarms, {len(report.examples)} example images")
