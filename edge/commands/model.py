"""`edge model list | activate V | rollback | remove V | info [V|PATH]`: the model registry by hand."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge.commands import config_option, engine_setup
from engines.registry import Registry


def data_dir_of(config_path: Path) -> Path:
    """The data folder config.yaml names (the registry lives in <data_dir>/models)."""
    return engine_setup(config_path)[1]




@click.group("model")
def command() -> None:
    """List, activate, roll back, remove and describe model versions in the registry."""


@command.command("list")
@config_option("config.yaml naming the data folder.")
def list_versions(config_path: Path) -> None:
    """Every registered version, oldest first; * marks the active one."""
    registry = Registry(data_dir_of(config_path))
    rows = registry.list()
    if not rows:
        click.echo(f"no models in {registry.root}; train one with `edge train`")
    for row in rows:
        val = ((row.get("metrics") or {}).get("val") or row.get("metrics") or {})
        ap = f"AP {val['ap']:.3f}" if isinstance(val.get("ap"), float) else "AP n/a"
        click.echo(f"{'*' if row['active'] else ' '} {row['version']:<32} {row.get('created') or '':<26} "
                   f"parent {row.get('parent') or '-':<28} {ap}  {row['status']}")


@command.command("activate")
@click.argument("version")
@config_option("config.yaml naming the data folder.")
def activate(version: str, config_path: Path) -> None:
    """Make VERSION the live model (running workers switch without a restart)."""
    package = Registry(data_dir_of(config_path)).activate(version)
    click.echo(f"active model: {package.version}")


@command.command("register")
@click.argument("path", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--activate", "make_active", is_flag=True, help="Also make it the live model.")
@config_option("config.yaml naming the data folder.")
def register(path: Path, make_active: bool, config_path: Path) -> None:
    """Copy the model package at PATH into the registry (verified first)."""
    registry = Registry(data_dir_of(config_path))
    package = registry.register(path)
    click.echo(f"registered {package.version} ({package.path})")
    if make_active:
        registry.activate(package.version)
        click.echo(f"active model: {package.version}")


@command.command("rollback")
@config_option("config.yaml naming the data folder.")
def rollback(config_path: Path) -> None:
    """Return to the version that was live before the current one."""
    package = Registry(data_dir_of(config_path)).rollback()
    click.echo(f"rolled back; active model: {package.version}")


@command.command("remove")
@click.argument("version")
@config_option("config.yaml naming the data folder.")
def remove(version: str, config_path: Path) -> None:
    """Delete VERSION and its exported graphs (never the live one, nor the rollback target)."""
    registry = Registry(data_dir_of(config_path))
    registry.remove(version)
    click.echo(f"removed {version}; {len(registry.versions())} versions left in {registry.root}")


@command.command("info")
@click.argument("model", default="active")
@config_option("config.yaml naming the data folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and summary as JSON.")
def info(model: str, config_path: Path, as_json: bool) -> None:
    """Registry facts and parameter counts/FLOPs of MODEL (active, a version, or a package folder)."""
    from engines.export import load_model
    from engines.rtvp.info import summarize

    registry = Registry(data_dir_of(config_path))
    package = registry.resolve(model)
    summary = summarize(load_model(package))
    manifest = {k: v for k, v in package.manifest.items() if k != "files"}
    if as_json:
        click.echo(json.dumps({"manifest": manifest, "summary": summary}, indent=2, default=str))
        return
    click.echo(f"version     {package.version}  ({package.path})")
    click.echo(f"active      {registry.active_version() == package.version}")
    for key in ("parent", "created", "data", "vocabulary", "text_encoder", "sam", "thresholds"):
        click.echo(f"{key:<11} {json.dumps(manifest.get(key), default=str)}")
    metrics = manifest.get("metrics") or {}
    for name, figures in metrics.items():
        if isinstance(figures, dict) and "ap" in figures:
            target = figures.get("at_target", {})
            click.echo(f"metrics     {name}: AP {figures['ap']:.3f} AP50 {figures['ap50']:.3f} "
                       f"escape {target.get('escape_rate')} at false reject <= "
                       f"{target.get('target_false_reject_rate')}")
    click.echo(f"arch        {json.dumps(package.arch)}")
    click.echo("summary     " + json.dumps(summary, default=str, indent=2).replace("\n", "\n            "))
