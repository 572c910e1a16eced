"""`edge config check`: validate a config file without starting anything."""

from __future__ import annotations

from pathlib import Path

import click

from edge.config import DEFAULT_PATH, load_config


@click.group("config")
def command() -> None:
    """Inspect and validate config.yaml."""


@command.command("check")
@click.argument("path", type=click.Path(path_type=Path), default=DEFAULT_PATH)
def check(path: Path) -> None:
    """Validate PATH (default ./config.yaml); exit 2 naming each wrong key."""
    config = load_config(path)
    exposure = config.metrics.exposure()
    if exposure:
        click.echo(f"warning: {exposure}", err=True)
    drivers = ", ".join(sorted({cam.driver for cam in config.cameras}))
    click.echo(f"{path}: ok (line {config.line.id}, {config.line.speed_cpm:g} containers/min, "
               f"cameras: {drivers}, gate: {config.gate.driver}, engine: {config.engine.runtime}, "
               f"reject: {config.reject.driver})")
