"""`edge service install` writes a unit that systemd-analyze accepts, with the line's paths,
the NVIDIA devices for a GPU runtime only, and warnings for what the hardening would hide.

systemd-analyze (Debian's `systemd` package, which .ci/run installs) checks the written
units; without it those checks skip with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.commands import service
from line_support import ROOT

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed "
                                   "(apt-get install systemd)")
# Measured with systemd 252 (Debian 12) on the written unit, CPU and GPU alike: docs/line.md.
EXPOSURE_AT_MOST = 2.2


def write_config(tmp_path: Path, runtime: str = "onnxruntime") -> Path:
    config = tmp_path / f"{runtime}.yaml"
    text = (ROOT / "config.yaml").read_text().replace("data_dir: data", f"data_dir: {tmp_path}/data")
    config.write_text(text.replace("runtime: onnxruntime", f"runtime: {runtime}"))
    return config


def install(tmp_path: Path, config: Path) -> tuple[Path, str]:
    """The unit written for `config` under a staging prefix, and the command's output."""
    result = CliRunner().invoke(main, ["service", "install", "--config", str(config), "--prefix",
                                       str(tmp_path / "stage"), "--unit-dir", "/etc/systemd/system"])
    assert result.exit_code == 0, result.output
    return tmp_path / "stage" / "etc" / "systemd" / "system" / "edge.service", result.output


def service_section(unit: Path) -> list[tuple[str, str]]:
    """The [Service] section's settings in order (keys repeat: DeviceAllow)."""
    section, settings = None, []
    for line in unit.read_text().splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.append((key, value))
    return settings


def exposure(unit: Path) -> float:
    check = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    return float(re.search(r"Overall exposure level for edge\.service: ([\d.]+)", check.stdout).group(1))


def test_installed_unit_verifies_and_names_this_line(tmp_path):
    config = write_config(tmp_path)
    unit, _ = install(tmp_path, config)
    text = unit.read_text()
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "RestartPreventExitStatus=2",
                 "User=edge", "NoNewPrivileges=yes", "ProtectHome=yes", f"ReadWritePaths={tmp_path}/data",
                 f"--config {config}"):
        assert line in text
    documentation = re.search(r"^Documentation=file://(.+)$", text, flags=re.M).group(1)
    assert Path(documentation).is_file() and Path(documentation).name == "line.md"
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    check = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert check.returncode == 0 and "ignoring" not in check.stderr, check.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("ExecStart=/", "ExecStart=/nonexistent/"))
    assert subprocess.run([SYSTEMD_ANALYZE, "verify", str(broken)], capture_output=True).returncode != 0


def test_a_cpu_config_gets_no_gpu_devices(tmp_path):
    unit, output = install(tmp_path, write_config(tmp_path, "onnxruntime"))
    allowed = [value for key, value in service_section(unit) if key == "DeviceAllow"]
    assert allowed and not any("nvidia" in value for value in allowed)
    assert ("DevicePolicy", "closed") in service_section(unit)
    assert "nvidia" not in output


@pytest.mark.parametrize("runtime", ["tensorrt", "onnxruntime-gpu"])
def test_a_gpu_config_gets_the_nvidia_devices(tmp_path, runtime):
    unit, output = install(tmp_path, write_config(tmp_path, runtime))
    settings = service_section(unit)
    assert ("DevicePolicy", "closed") in settings and ("DeviceAllow", "char-nvidia* rw") in settings
    assert settings.count(("DeviceAllow", "char-nvidia* rw")) == 1
    assert f"NVIDIA GPU access for runtime {runtime}" in output
    if not Path("/dev/nvidia-uvm").exists():
        assert "WARNING: " in output and "/dev/nvidia-uvm" in output and "ProtectKernelModules" in output


@needs_systemd
@pytest.mark.parametrize("runtime", ["onnxruntime", "tensorrt"])
def test_units_pass_verify_and_keep_their_exposure_score(tmp_path, runtime):
    unit, _ = install(tmp_path, write_config(tmp_path, runtime))
    check = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert check.returncode == 0 and "ignoring" not in check.stderr and "Unknown" not in check.stderr, check.stderr
    assert exposure(unit) <= EXPOSURE_AT_MOST


def test_paths_that_protect_home_hides_are_warned_about(tmp_path, monkeypatch):
    warnings = service.install_warnings({"the config file": Path("/home/op/line/config.yaml"),
                                         "the data folder": Path("/var/lib/edge"),
                                         "the edge executable": Path("/run/user/1000/venv/bin/edge")}, gpu=False)
    assert len(warnings) == 2
    assert warnings[0].startswith("the config file /home/op/line/config.yaml lies under /home, which the unit's "
                                  "ProtectHome=yes hides")
    assert "/run/user/1000/venv/bin/edge lies under /run/user" in warnings[1]
    assert service.install_warnings({"the data folder": Path("/var/lib/edge")}, gpu=False) == []

    monkeypatch.setattr(service, "_edge_executable", lambda: "/root/venv/bin/edge")
    _, output = install(tmp_path, write_config(tmp_path))
    assert "WARNING: the edge executable /root/venv/bin/edge lies under /root" in output
    monkeypatch.setattr(service, "_edge_executable", lambda: "/opt/edge/bin/edge")
    _, output = install(tmp_path, write_config(tmp_path))
    assert "WARNING" not in output  # the config and data folder are in /tmp


def test_unwritable_unit_dir_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["service", "install", "--config", str(ROOT / "config.yaml"),
                                       "--unit-dir", str(blocker / "units")])
    assert result.exit_code == 2 and "cannot write the unit" in result.output


def test_documentation_and_template_exist_after_a_pip_install(tmp_path):
    """A regular (not editable) install: the unit's Documentation= names a file it installed."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "edge", "camera", "pipeline", "engines", "storage", "packaging", "docs"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    prefix = tmp_path / "prefix"
    # --ignore-installed: never uninstall the development install this suite runs from.
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--ignore-installed", "--no-build-isolation", "--prefix", str(prefix), str(source)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    script = ("from pathlib import Path; from edge.commands.service import render_unit; "
              "print(render_unit('/usr/bin/edge', Path('/etc/edge/config.yaml'), Path('/var/lib/edge'), 'edge'))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": site})
    assert run.returncode == 0, run.stderr
    documentation = Path(re.search(r"^Documentation=file://(.+)$", run.stdout, flags=re.M).group(1))
    assert documentation == prefix / "share" / "doc" / "glass-edge" / "line.md"
    assert documentation.read_text() == (ROOT / "docs" / "line.md").read_text()
    assert (prefix / "share" / "glass-edge" / "edge.service").is_file()


def test_extend_timeout_reaches_the_socket(tmp_path, monkeypatch):
    from edge.systemd import Notifier

    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    Notifier().extend_timeout(60)
    assert sock.recv(256) == b"EXTEND_TIMEOUT_USEC=60000000"
    monkeypatch.delenv("NOTIFY_SOCKET")
    Notifier().extend_timeout(60)  # no systemd: nothing to send, no error
