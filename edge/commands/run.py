"""`edge run`: the inspection line, until stopped (or N containers)."""

from __future__ import annotations

from pathlib import Path

import click

from edge.config import load_config
from edge.commands import config_option


@click.command("run")
@config_option("Line configuration.")
@click.option("--containers", type=click.IntRange(min=1), default=None,
              help="Stop after N containers (all decided and stored); default: run until stopped.")
def command(config_path: Path, containers: int | None) -> None:
    """Run the line: cameras, inference workers, decisions, reject relay, storage.

    Runs in the foreground; under systemd (Type=notify) it reports READY once the line
    inspects and pings the watchdog from its health check. SIGTERM or Ctrl-C stop taking
    containers, decide and store those in flight, and exit 0.
    """
    from edge.supervisor import Supervisor

    config = load_config(config_path)
    code = Supervisor(config, containers=containers, echo=click.echo).run()
    raise SystemExit(code)
