"""`edge service install` writes a unit that systemd-analyze accepts, with the line's paths."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner

from edge.cli import main
from test_line_support import ROOT


def test_installed_unit_verifies_and_names_this_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.yaml").read_text().replace("data_dir: data", f"data_dir: {tmp_path}/data"))
    result = CliRunner().invoke(main, ["service", "install", "--config", str(config), "--prefix",
                                       str(tmp_path / "stage"), "--unit-dir", "/etc/systemd/system"])
    assert result.exit_code == 0, result.output
    unit = tmp_path / "stage" / "etc" / "systemd" / "system" / "edge.service"
    text = unit.read_text()
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "User=edge", "NoNewPrivileges=yes",
                 f"ReadWritePaths={tmp_path}/data", f"--config {config}"):
        assert line in text
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert check.returncode == 0 and "ignoring" not in check.stderr, check.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("ExecStart=/", "ExecStart=/nonexistent/"))
    assert subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True).returncode != 0


def test_unwritable_unit_dir_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["service", "install", "--config", str(ROOT / "config.yaml"),
                                       "--unit-dir", str(blocker / "units")])
    assert result.exit_code == 2 and "cannot write the unit" in result.output
