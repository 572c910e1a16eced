"""The harvesters driver against the GenTL demo producer that the genicam wheel ships (viky.cti).

viky runs free (no trigger features, no timestamps): these tests cover acquisition,
tagging, reconnection and errors; trigger settings are exercised on real producers only.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import TypeAdapter

genicam = pytest.importorskip("genicam")
pytest.importorskip("harvesters.core")

from camera.base import build_camera  # noqa: E402
from camera.config import CameraConfig, GateConfig  # noqa: E402
from camera.errors import CameraError  # noqa: E402
from camera.station import build_station  # noqa: E402
from edge.config import LineConfig  # noqa: E402
from camera_support import unplug_and_return  # noqa: E402

CTI = Path(genicam.__file__).parent / "viky.cti"
GATE = TypeAdapter(GateConfig).validate_python({"driver": "simulated"})
LINE = LineConfig(speed_cpm=300, travel_time_ms=2000, rotation_delay_ms=20)


def viky(view: int, serial: str | None, **settings):
    return TypeAdapter(CameraConfig).validate_python(
        {"id": f"viky-{view}", "driver": "genicam", "view": view, "bank": "left", "cti": str(CTI),
         "serial": serial, "width": 700, "height": 800, "grab_timeout_ms": 3000, **settings})


def mixed_line() -> list:
    """Views 0-2 on the three viky devices, 3-5 on the synthetic renderer."""
    synthetic = [TypeAdapter(CameraConfig).validate_python(
        {"id": f"synth-{view}", "driver": "synthetic", "view": view, "bank": "right", "width": 350,
         "height": 410, "grab_timeout_ms": 3000}) for view in (3, 4, 5)]
    return [viky(view, str(view)) for view in (0, 1, 2)] + synthetic


def test_viky_cameras_give_tagged_views_in_a_station():
    pytest.importorskip("camera.synth")
    with build_station(mixed_line(), GATE, LINE) as station:
        frames = []
        station.run(frames.append, threading.Event(), containers=5)
        stats = station.stats()
    assert sorted((f.container_seq, f.view) for f in frames) == [(s, v) for s in range(1, 6) for v in range(6)]
    assert all(f.missing is None for f in frames), [f.missing for f in frames if f.missing]
    left = sorted((f for f in frames if f.view == 0), key=lambda f: f.container_seq)
    assert all(f.pixels.shape == (800, 700, 3) and f.pixel_format == "BGR8" for f in left)
    counters = [f.meta["frame_counter"] for f in left]
    assert counters == sorted(counters) and len(set(counters)) == 5  # one fresh image per container
    assert all(f.t_capture_ns > f.t_gate_ns for f in left)
    assert stats["cameras"]["viky-0"]["frames"] == 5
    assert stats["cameras"]["viky-0"]["unmatched"] == 0  # a free-running camera's older images are no fault


def test_mono8_and_describe():
    camera = build_camera(viky(0, "2", pixel_format="Mono8", width=320, height=240))
    camera.start()
    try:
        camera.trigger(1)
        capture = camera.grab(3.0)
        assert capture.pixels.shape == (240, 320) and capture.pixel_format == "Mono8"
        assert camera.describe()["model"] == "Viky" and camera.describe()["serial"] == "2"
    finally:
        camera.close()


def test_closed_device_is_lost_then_reconnected():
    pytest.importorskip("camera.synth")
    station = build_station(mixed_line(), GATE, LINE)
    stop = threading.Event()
    frames = []
    # the producer closes the device under us
    emit = unplug_and_return(1, 2, lambda: station.workers[1].camera._ia.destroy(), frames, stop)
    with station:
        station.run(emit, stop, containers=100)
        stats = station.stats()
    lost = [f for f in frames if f.view == 1 and (f.missing or "").startswith("camera lost")]
    assert lost and all(f.container_seq > 2 for f in lost)
    assert any(f.view == 1 and f.pixels is not None and f.container_seq > lost[-1].container_seq for f in frames)
    assert stats["cameras"]["viky-1"]["lost"] == 1 and stats["cameras"]["viky-1"]["reconnects"] == 1


def test_unknown_serial_names_camera_and_devices():
    with pytest.raises(CameraError, match=r"camera 'viky-0'.*'77'.*present: 0 \(Viky\)"):
        build_camera(viky(0, "77")).start()


def test_trigger_line_on_a_device_without_triggers_is_refused():
    with pytest.raises(CameraError, match=r"camera 'viky-0'.*no trigger features.*line1"):
        build_camera(viky(0, "0", trigger="line1")).start()


def test_missing_producer_file_is_named(tmp_path):
    with pytest.raises(CameraError, match=r"nothing\.cti does not exist"):
        build_camera(viky(0, "0", cti=str(tmp_path / "nothing.cti"))).start()
