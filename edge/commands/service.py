"""`edge service install`: write the systemd unit (packaging/edge.service) for this machine.

The unit is the shipped template with this machine's paths filled in, plus what the
config needs: the NVIDIA devices for a GPU runtime. Paths that the unit's hardening
hides from the service (ProtectHome=yes) are warned about at install, not found out
at the first start.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import sys
from pathlib import Path

import click

from edge.commands import config_option
from edge.config import load_config
from engines.runtimes import GPU_RUNTIMES
from pipeline.errors import PipelineError
from storage.files import atomic_write

SOURCE_ROOT = Path(__file__).resolve().parents[2]
# Files setup.py installs as data_files: source-tree path -> path under the install prefix.
SHIPPED = {"packaging/edge.service": "share/glass-edge/edge.service",
           "docs/line.md": "share/doc/glass-edge/line.md"}
# What ProtectHome=yes makes inaccessible to the service.
HOME_DIRS = (Path("/root"), Path("/home"), Path("/run/user"))
# Every device group named nvidia* in /proc/devices: /dev/nvidia0.., /dev/nvidiactl,
# /dev/nvidia-modeset (nvidia / nvidia-frontend), /dev/nvidia-uvm, /dev/nvidia-uvm-tools
# (nvidia-uvm), /dev/nvidia-caps/* (nvidia-caps). A glob, as systemd.resource-control allows.
NVIDIA_DEVICES = "DeviceAllow=char-nvidia* rw"
# What CUDA opens first; the service cannot create them itself (see docs/line.md).
NVIDIA_NODES = (Path("/dev/nvidiactl"), Path("/dev/nvidia-uvm"))


def shipped_file(source: str) -> Path | None:
    """A file of the package: the source tree's (checkout, editable install), else the installed copy."""
    if (SOURCE_ROOT / "setup.py").is_file() and (SOURCE_ROOT / source).is_file():
        return SOURCE_ROOT / source
    try:
        files = importlib.metadata.distribution("glass-edge").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.as_posix().endswith(SHIPPED[source]):
            path = Path(file.locate()).resolve()
            return path if path.is_file() else None
    return None


def render_unit(executable: str, config_path: Path, data_dir: Path, user: str, *, gpu: bool = False) -> str:
    """The shipped unit with this machine's paths and user filled in, and GPU access if asked."""
    template = shipped_file("packaging/edge.service")
    if template is None:
        raise PipelineError("packaging/edge.service: the unit template is missing; reinstall glass-edge")
    text = template.read_text()
    documentation = shipped_file("docs/line.md")
    fields = {
        "Documentation": f"file://{documentation}" if documentation else None,
        "ExecStart": f"{executable} run --config {config_path}",
        "WorkingDirectory": str(data_dir),
        "ReadWritePaths": str(data_dir),
        "User": user,
        "Group": user,
    }
    for key, value in fields.items():
        if value is None:
            text = re.sub(rf"^{key}=.*\n", "", text, count=1, flags=re.M)
        else:
            text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, count=1, flags=re.M)
    if gpu:
        last = list(re.finditer(r"^DeviceAllow=.*\n(#.*\n)*", text, flags=re.M))[-1]
        text = text[:last.end()] + NVIDIA_DEVICES + "\n" + text[last.end():]
    return text


def install_warnings(paths: dict[str, Path], gpu: bool) -> list[str]:
    """What would stop the installed service although the command works in a terminal."""
    warnings = []
    for what, path in paths.items():
        home = next((h for h in HOME_DIRS if path.is_relative_to(h)), None)
        if home is not None:
            warnings.append(f"{what} {path} lies under {home}, which the unit's ProtectHome=yes hides from "
                            "the service; move it (e.g. /etc/edge, /var/lib/edge, a venv in /opt)")
    missing = [str(node) for node in NVIDIA_NODES if not node.exists()]
    if gpu and missing:
        warnings.append(f"{', '.join(missing)} missing: the service cannot load the NVIDIA modules nor make "
                        "their devices (ProtectKernelModules=yes, NoNewPrivileges=yes); have them made at boot "
                        "(docs/line.md, 'NVIDIA GPU')")
    return warnings


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
    executable, data_dir = _edge_executable(), Path(config.data_dir).resolve()
    gpu = config.engine.runtime in GPU_RUNTIMES
    unit = render_unit(executable, config_path.resolve(), data_dir, user, gpu=gpu)
    folder = prefix / unit_dir.relative_to(unit_dir.anchor) if prefix else unit_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.service"
        with atomic_write(path, fsync=False) as fh:
            fh.write(unit)
    except OSError as exc:
        raise PipelineError(f"{folder}: cannot write the unit ({exc.strerror}); run as root or pass "
                            "--unit-dir/--prefix") from None
    click.echo(f"wrote {path}" + (f" (NVIDIA GPU access for runtime {config.engine.runtime})" if gpu else ""))
    paths = {"the edge executable": Path(executable), "the config file": config_path.resolve(),
             "the data folder": data_dir}
    for warning in install_warnings(paths, gpu):
        click.echo(f"WARNING: {warning}", err=True)
    click.echo(f"next: useradd --system --home {config.data_dir} --groups dialout {user}; "
               f"chown -R {user}: {config.data_dir}; systemctl daemon-reload; "
               f"systemctl enable --now {name}")
