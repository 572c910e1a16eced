"""config.yaml: the shipped file validates; broken files fail naming the key, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.config import ConfigError, load_config


def write_variant(tmp_path: Path, shipped: Path, change) -> Path:
    raw = yaml.safe_load(shipped.read_text())
    change(raw)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_shipped_config_validates(shipped_config_path: Path) -> None:
    config = load_config(shipped_config_path)
    assert sorted(cam.view for cam in config.cameras) == [0, 1, 2, 3, 4, 5]
    assert config.engine.runtime == "onnxruntime"
    assert config.line.late_result == "reject"
    # Relative paths resolve against the file's folder, not the working directory.
    assert config.data_dir == shipped_config_path.parent / "data"
    assert config.database_url == f"sqlite:///{shipped_config_path.parent / 'data'}/edge.db"


def _unknown_key(raw):
    raw["line"]["sped_cpm"] = 10


def _wrong_type(raw):
    raw["line"]["speed_cpm"] = "fast"


def _missing_camera(raw):
    del raw["cameras"][5]


def _duplicate_view(raw):
    raw["cameras"][4]["view"] = 3


def _negative_delay(raw):
    raw["line"]["rotation_delay_ms"] = -5


def _view_out_of_range(raw):
    raw["cameras"][0]["view"] = 7


def _unknown_driver(raw):
    raw["cameras"][2]["driver"] = "webcam"


def _no_time_to_decide(raw):
    raw["line"]["travel_time_ms"] = 100


@pytest.mark.parametrize("change, expected", [
    (_unknown_key, ["line.sped_cpm", "unknown key"]),
    (_wrong_type, ["line.speed_cpm", "'fast'", "number"]),
    (_missing_camera, ["cameras", "at least 6"]),
    (_duplicate_view, ["view 3", "'cam-r3'", "'cam-r4'"]),
    (_negative_delay, ["line.rotation_delay_ms", "-5", "greater than or equal to 0"]),
    (_view_out_of_range, ["cameras[0].view", "7", "less than or equal to 5"]),
    (_unknown_driver, ["cameras[2]", "'webcam'", "synthetic", "pylon"]),
    (_no_time_to_decide, ["travel_time_ms", "no time would be left"]),
])
def test_broken_config_names_the_key(tmp_path, shipped_config_path, change, expected) -> None:
    path = write_variant(tmp_path, shipped_config_path, change)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    for fragment in expected:
        assert fragment in message, message
    assert str(path) in message


def test_error_points_at_the_yaml_line(tmp_path, shipped_config_path) -> None:
    text = shipped_config_path.read_text().replace("speed_cpm: 30", "speed_cpm: -30")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "speed_cpm: -30" in row)
    with pytest.raises(ConfigError, match=f"config.yaml:{line}: line.speed_cpm = -30"):
        load_config(path)


def test_cli_check_exit_codes(tmp_path, shipped_config_path) -> None:
    ok = subprocess.run([sys.executable, "-m", "edge.cli", "config", "check", str(shipped_config_path)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout

    broken = write_variant(tmp_path, shipped_config_path, _duplicate_view)
    bad = subprocess.run([sys.executable, "-m", "edge.cli", "config", "check", str(broken)],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert "view 3" in bad.stderr

    missing = subprocess.run([sys.executable, "-m", "edge.cli", "config", "check",
                              str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_not_yaml(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("line: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
