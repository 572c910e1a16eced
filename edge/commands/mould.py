"""`edge mould reject|release|list`: take a mould out of production while the line runs.

Writes `<data_dir>/mould_rejects.json`; the decision stage picks a change up within about
a second and rejects every container of a listed mould with reason `mould`
(pipeline/mould_rejects.py). Moulds in config.yaml's `line.reject_moulds` stay rejected
until they are removed there.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from storage.moulds import parse_mould
from edge.commands import config_option
from edge.config import ConfigError, load_config
from pipeline.mould_rejects import change, read_file, rejects_path


def _mould(ctx, param, value: str) -> str:
    try:
        return str(parse_mould(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _checked(config, name: str) -> str:
    """`name` if the configured machine has it (ConfigError naming line.machine otherwise)."""
    if config.line.machine is not None:
        try:
            config.line.machine.check(name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return name


def _change(config, mould: str, reject: bool) -> dict[str, dict]:
    try:
        return change(config.data_dir, mould, reject=reject, by=getpass.getuser())
    except ValueError as exc:
        raise ConfigError(f"{exc}; fix or delete the file") from None


@click.group("mould")
def command() -> None:
    """Moulds (SECTION-CAVITY) whose every container is rejected."""


@command.command("reject")
@config_option("The line's config file (data folder, machine).")
@click.argument("mould", callback=_mould)
def reject(config_path: Path, mould: str) -> None:
    """Reject every container of MOULD (e.g. 3-1) from now on, reason `mould`."""
    config = load_config(config_path)
    moulds = _change(config, _checked(config, mould), reject=True)
    click.echo(f"mould {mould}: rejected (file: {', '.join(moulds)}; config: "
               f"{', '.join(config.line.reject_moulds) or 'none'})")


@command.command("release")
@config_option("The line's config file (data folder, machine).")
@click.argument("mould", callback=_mould)
def release(config_path: Path, mould: str) -> None:
    """Stop rejecting MOULD's containers (one rejected with `edge mould reject`)."""
    config = load_config(config_path)
    if mould in config.line.reject_moulds:
        raise ConfigError(f"mould {mould} is rejected by line.reject_moulds in {config_path}; remove it there "
                          "and restart the line")
    moulds = _change(config, mould, reject=False)
    still = sorted(set(moulds) | set(config.line.reject_moulds))
    click.echo(f"mould {mould}: released (still rejected: {', '.join(still) or 'none'})")


@command.command("list")
@config_option("The line's config file (data folder).")
def list_command(config_path: Path) -> None:
    """The moulds rejected now, and since when."""
    config = load_config(config_path)
    try:
        moulds = read_file(rejects_path(config.data_dir))
    except ValueError as exc:
        raise ConfigError(f"{exc}; fix or delete the file") from None
    for name in config.line.reject_moulds:
        click.echo(f"{name:<8} config.yaml line.reject_moulds")
    for name, info in moulds.items():
        click.echo(f"{name:<8} since {info.get('since', '?')} by {info.get('by', '?')}")
    if not moulds and not config.line.reject_moulds:
        click.echo("no mould is rejected")
