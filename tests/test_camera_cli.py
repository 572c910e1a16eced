"""`edge cameras list|snap` and `edge gate watch` on the pylon emulator, synthetic cameras and a pty."""

from __future__ import annotations

import os
import threading

import pytest
import yaml
from click.testing import CliRunner

from edge.cli import main


def write_config(tmp_path, shipped_config_path, cameras=None, gate=None):
    raw = yaml.safe_load(shipped_config_path.read_text())
    if cameras is not None:
        raw["cameras"] = cameras
    if gate is not None:
        raw["gate"] = gate
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def pylon_cameras(serials):
    return [{"id": f"cam-{v}", "driver": "pylon", "view": v, "bank": "left" if v < 3 else "right",
             "serial": s} for v, s in enumerate(serials)]


@pytest.fixture
def emulator(monkeypatch):
    pytest.importorskip("pypylon.pylon")
    monkeypatch.setenv("PYLON_CAMEMU", "6")
    return [f"0815-000{i}" for i in range(6)]


def test_list_shows_model_serial_and_configured_camera(tmp_path, shipped_config_path, emulator):
    path = write_config(tmp_path, shipped_config_path, pylon_cameras(emulator[:5] + ["4711-0001"]))
    result = CliRunner().invoke(main, ["cameras", "list", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "Emulation" in result.output and "serial 0815-0003" in result.output
    assert "serial 0815-0003  -> cam-3" in result.output
    assert "missing: camera cam-5 (pylon 4711-0001) is configured but not connected" in result.output


def test_snap_saves_one_png_per_camera(tmp_path, shipped_config_path, emulator):
    path = write_config(tmp_path, shipped_config_path, pylon_cameras(emulator))
    out = tmp_path / "snaps"
    result = CliRunner().invoke(main, ["cameras", "snap", "--config", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"cam-{v}_v{v}.png" for v in range(6)]
    assert "700x820 BGR8" in result.output


def test_snap_with_an_absent_camera_saves_the_others_and_exits_2(tmp_path, shipped_config_path, emulator):
    path = write_config(tmp_path, shipped_config_path, pylon_cameras(emulator[:5] + ["4711-0001"]))
    result = CliRunner().invoke(main, ["cameras", "snap", "--config", str(path), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert len(list((tmp_path / "s").iterdir())) == 5
    assert "cam-5: FAILED: camera 'cam-5': no pylon camera with serial '4711-0001'" in result.output


@pytest.mark.timeout(60)
def test_gate_watch_prints_numbered_events_from_a_pty(tmp_path, shipped_config_path):
    """The PLC repeats its burst: opening the port flushes what came before, repeats are duplicates."""
    master, slave = os.openpty()
    done = threading.Event()

    def plc():
        while not done.wait(0.1):
            os.write(master, b"41\n42\n44\n")

    writer = threading.Thread(target=plc)
    writer.start()
    try:
        path = write_config(tmp_path, shipped_config_path,
                            gate={"driver": "serial_lines", "port": os.ttyname(slave)})
        result = CliRunner().invoke(main, ["gate", "watch", "--config", str(path), "--count", "3"])
    finally:
        done.set()
        writer.join()
        os.close(master)
        os.close(slave)
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.output.splitlines() if line.startswith("gate ")] == \
        ["41", "42", "44"]
    assert "missed 1" in result.output


def test_gate_watch_on_an_absent_port_is_one_line_and_exit_2(tmp_path, shipped_config_path):
    path = write_config(tmp_path, shipped_config_path, gate={"driver": "serial_modem", "port": "/dev/ttyNOPE0"})
    result = CliRunner().invoke(main, ["gate", "watch", "--config", str(path), "--count", "1"])
    assert result.exit_code == 2
    assert "/dev/ttyNOPE0" in result.output


def test_list_includes_the_devices_of_configured_genicam_producers(tmp_path, shipped_config_path):
    genicam = pytest.importorskip("genicam")
    cti = os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
    cameras = [{"id": f"viky-{v}", "driver": "genicam", "view": v, "bank": "left", "cti": cti, "serial": str(v),
                "width": 700, "height": 800} for v in range(3)]
    cameras += [{"id": f"synth-{v}", "driver": "synthetic", "view": v, "bank": "right"} for v in (3, 4, 5)]
    path = write_config(tmp_path, shipped_config_path, cameras)
    result = CliRunner().invoke(main, ["cameras", "list", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "genicam  Viky" in result.output and "serial 1  -> viky-1" in result.output
