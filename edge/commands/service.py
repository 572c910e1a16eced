"""`edge service install`: write the systemd unit (packaging/edge.service) for this machine."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import click

from edge.config import load_config
from pipeline.errors import PipelineError
from edge.commands import config_option

TEMPLATE = Path(__file__).resolve().parents[2] / "packaging" / "edge.service"


def render_unit(executable: str, config_path: Path, data_dir: Path, user: str) -> str:
    """The shipped unit with this machine's paths and user filled in."""
    try:
        text = TEMPLATE.read_text()
    except OSError as exc:
        raise PipelineError(f"{TEMPLATE}: the unit template is missing ({exc.strerror}); reinstall "
                            "glass-edge from its source tree") from None
    fields = {
        "ExecStart": f"{executable} run --config {config_path}",
        "WorkingDirectory": str(data_dir),
        "ReadWritePaths": str(data_dir),
        "User": user,
        "Group": user,
    }
    for key, value in fields.items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, count=1, flags=re.M)
    return text


def _edge_executable() -> str:
    found = shutil.which("edge") or str(Path(sys.executable).with_name("edge"))
    return str(Path(found).resolve())


@click.group("service")
def command() -> None:
    """Run the line as a systemd service."""


@command.command("install")
@config_option("Line configuration the service runs.")
@click.option("--unit-dir", type=click.Path(path_type=Path), default=Path("/etc/systemd/system"),
              show_default=True, help="Folder the unit file goes to.")
@click.option("--prefix", type=click.Path(path_type=Path), default=None,
              help="Staging root prepended to --unit-dir (packaging, DESTDIR).")
@click.option("--user", default="edge", show_default=True, help="Dedicated user the line runs as.")
@click.option("--name", default="edge", show_default=True, help="Unit name (several lines on one PC).")
def install(config_path: Path, unit_dir: Path, prefix: Path | None, user: str, name: str) -> None:
    """Write <unit-dir>/<name>.service for CONFIG; print the commands that enable it."""
    config = load_config(config_path)
    unit = render_unit(_edge_executable(), config_path.resolve(), Path(config.data_dir).resolve(), user)
    folder = prefix / unit_dir.relative_to(unit_dir.anchor) if prefix else unit_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.service"
        tmp = path.with_suffix(".service.tmp")
        tmp.write_text(unit)
        tmp.replace(path)
    except OSError as exc:
        raise PipelineError(f"{folder}: cannot write the unit ({exc.strerror}); run as root or pass "
                            "--unit-dir/--prefix") from None
    click.echo(f"wrote {path}")
    click.echo(f"next: useradd --system --home {config.data_dir} --groups dialout {user}; "
               f"chown -R {user}: {config.data_dir}; systemctl daemon-reload; "
               f"systemctl enable --now {name}")
