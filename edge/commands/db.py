"""`edge db`: upgrade the schema in place, repair after a crash, and line statistics."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from edge.config import load_config
from storage.check import repair
from storage.db import current_revision, head_revision, make_engine, open_database
from storage.images import ImageStore
from storage.stats import DIMENSIONS, Group, Stats, breakdown, line_stats, stats_json
from edge.commands import config_option

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class When(click.ParamType):
    """A UTC time: ISO 8601 (naive means UTC) or an age such as 30m, 12h, 7d."""

    name = "TIME"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        match = _AGO.match(value.strip())
        if match:
            return datetime.now(timezone.utc) - timedelta(**{_UNITS[match[2]]: float(match[1])})
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is neither an ISO time (2026-11-25T08:00) nor an age (30m, 12h, 7d)", param, ctx)
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


WHEN = When()


@click.group("db")
def command() -> None:
    """The line's database: schema upgrades, repair, statistics."""


@command.command("upgrade")
@config_option("The line's config file (data folder, database URL).")
def upgrade_command(config_path: Path) -> None:
    """Upgrade the database schema in place to this software's revision (also done at start-up)."""
    config = load_config(config_path)
    engine = make_engine(config.database_url)
    before = current_revision(engine)
    open_database(config.database_url).close()
    click.echo(f"database schema: {before or 'empty'} -> {head_revision()}")
    engine.dispose()


@command.command("check")
@config_option("The line's config file (data folder, database URL).")
def check_command(config_path: Path) -> None:
    """Repair database and image store after a crash (run with the line stopped).

    Deletes temporary and orphan image files, marks rows whose file is gone, removes
    partially written containers. The storage writer does the same at each start.
    """
    config = load_config(config_path)
    db = open_database(config.database_url)
    shared = db.engine.dialect.name != "sqlite"  # a server database: only this line's rows are ours
    report = repair(db, ImageStore(config.data_dir, config.storage), config.line.id if shared else None)
    db.close()
    for line in report.details[:50]:
        click.echo(line)
    click.echo("storage check: " + ("clean" if report.clean else report.summary()))


@command.command("stats")
@config_option("The line's config file (data folder, database URL).")
@click.option("--since", type=WHEN, help="From this UTC time or age (e.g. 24h); default: everything.")
@click.option("--until", type=WHEN, help="Up to this UTC time or age.")
@click.option("--line", "line_id", help="Only this line (a plant database holds several); default: all.")
@click.option("--by", "by", callback=lambda ctx, param, value: _dimensions(value), metavar="DIM[,DIM]",
              help=f"Also a table grouped by {', '.join(DIMENSIONS)}; several, comma-separated (cavity,hour).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
def stats_command(config_path: Path, since: datetime | None, until: datetime | None, line_id: str | None,
                  by: list[str], as_json: bool) -> None:
    """Yield, and reject rates by reason, defect class, camera and hour; --by cavity, section, ..."""
    config = load_config(config_path)
    db = open_database(config.database_url)
    thresholds, default = config.engine.thresholds, config.engine.default_threshold
    s = line_stats(db, since, until, thresholds, default, line_id)
    groups = breakdown(db, by, since, until, thresholds, default, line_id) if by else []
    db.close()
    if as_json:
        click.echo(json.dumps(stats_json(s, by, groups), indent=2))
        return
    _print_stats(s)
    if by:
        _print_groups(by, groups)


def _dimensions(value: str | None) -> list[str]:
    dims = [d.strip() for d in (value or "").split(",") if d.strip()]
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: group by {', '.join(DIMENSIONS)}, e.g. --by cavity,hour")
    return dims


def _print_groups(by: list[str], groups: list[Group]) -> None:
    head = "  ".join(f"{d:<16}" for d in by)
    click.echo(f"by {', '.join(by)}:")
    click.echo(f"  {head}  containers    passed  rejected     rate  reasons")
    for g in groups:
        keys = "  ".join(f"{g.key[d]:<16}" for d in by)
        passed = "-" if g.passed is None else g.passed
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(g.by_reason.items(), key=lambda x: -x[1]))
        click.echo(f"  {keys}  {g.containers:>10}  {passed:>8}  {g.rejected:>8}  {g.rate:7.2%}  {reasons}")


def _print_stats(s: Stats) -> None:
    click.echo(f"containers {s.containers}  passed {s.passed}  rejected {s.rejected}  yield {s.yield_:.2%}")
    sections = [("rejects by reason", s.by_reason), ("rejects by class", s.by_class),
                ("rejects by camera", s.by_camera), ("missing views by camera", s.missing_by_camera),
                ("events", s.events)]
    for title, counts in sections:
        if counts:
            click.echo(f"{title}:")
            for key, n in counts.items():
                click.echo(f"  {key:<24} {n:>8}  {s.rate(n):7.2%}" if title != "events" else f"  {key:<24} {n:>8}")
    if s.by_hour:
        click.echo("by hour (UTC):           containers  rejected")
        for hour, (n, rejected) in s.by_hour.items():
            click.echo(f"  {hour:<22} {n:>10}  {rejected:>8}  {rejected / n:7.2%}")
