"""The station with the synthetic and captured-batch drivers, and the trigger/image matching rules."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from pydantic import TypeAdapter

from camera.base import build_camera
from camera.config import GateConfig
from camera.errors import CameraError
from camera.station import build_station
from camera.worker import TriggerMatcher
from edge.config import LineConfig
from line_support import wait_for
from station_support import GATE, LINE, camera_configs, write_batch


def run(station, containers=None, stop=None) -> list:
    frames = []
    station.run(frames.append, stop or threading.Event(), containers=containers)
    return frames


def test_batch_replay_keeps_the_batch_seqs_and_reports_absent_views(tmp_path):
    batch = write_batch(tmp_path / "batch", [17, 18, 40], absent={(18, 4)})
    gated, frames = [], []
    with build_station(camera_configs("batch", path=str(batch)), GATE, LINE) as station:
        assert station.playlist == [17, 18, 40]

        def emit(frame):
            assert frame.container_seq in [seq for seq, _ in gated]  # announced before its frames
            frames.append(frame)

        station.run(emit, threading.Event(), on_gate=lambda seq, t: gated.append((seq, t)))  # ends with the batch
    assert [seq for seq, _ in gated] == [17, 18, 40]
    assert {(f.container_seq, f.t_gate_ns) for f in frames} == set(gated)
    assert sorted((f.container_seq, f.view) for f in frames) == [(s, v) for s in (17, 18, 40) for v in range(6)]
    for f in frames:
        if (f.container_seq, f.view) == (18, 4):
            assert f.pixels is None and "not in batch" in f.missing
        else:
            assert tuple(f.pixels[0, 0]) == (f.container_seq, f.view, 0)
            assert f.meta["batch_camera_id"] == f"line-cam-{f.view}"


def test_batch_that_is_not_a_batch_names_camera_and_folder(tmp_path):
    with pytest.raises(CameraError, match=r"camera 'batch-0'.*manifest.json"):
        build_station(camera_configs("batch", path=str(tmp_path)), GATE, LINE)


def test_synthetic_cameras_show_one_container_from_six_sides():
    pytest.importorskip("camera.synth")
    with build_station(camera_configs("synthetic", seed=3), GATE, LINE) as station:
        frames = run(station, containers=2)
        stats = station.stats()
    assert sorted((f.container_seq, f.view) for f in frames) == [(s, v) for s in (1, 2) for v in range(6)]
    assert all(f.pixels.shape == (820, 700, 3) and f.pixel_format == "BGR8" for f in frames)
    views = {(f.container_seq, f.view): f.pixels for f in frames}
    assert not np.array_equal(views[(1, 0)], views[(1, 3)])
    assert not np.array_equal(views[(1, 0)], views[(2, 0)])
    camera = build_camera(camera_configs("synthetic", seed=3)[3])
    camera.start()
    camera.trigger(1)
    assert np.array_equal(camera.grab(1.0).pixels, views[(1, 3)])  # deterministic in seed, seq, view
    assert stats["views_missing"] == 0 and stats["gate"]["events"] == 2


def test_stop_ends_the_run_with_six_frames_per_container(tmp_path):
    batch = write_batch(tmp_path / "batch", range(1, 200))
    stop = threading.Event()
    frames = []

    def emit(frame):
        frames.append(frame)
        if frame.container_seq == 3:
            stop.set()

    slow = LineConfig(speed_cpm=600, travel_time_ms=1000, rotation_delay_ms=50)
    with build_station(camera_configs("batch", path=str(batch)), GATE, slow) as station:
        station.run(emit, stop)
        dispatched = station.stats()["containers"]
    assert 3 <= dispatched < 199
    assert len(frames) == 6 * dispatched


def test_matcher_discards_a_late_image_and_resyncs_after_a_dropped_trigger():
    matcher = TriggerMatcher()
    assert matcher.classify(100, matcher.next_trigger()) == "match"  # trigger 0 -> counter 100
    first = matcher.next_trigger()  # trigger 1: its image is late
    matcher.timed_out(first)
    second = matcher.next_trigger()
    assert matcher.classify(101, second) == "stale"  # trigger 1's late image is not container 2's
    assert matcher.classify(102, second) == "match"
    dropped = matcher.next_trigger()  # the camera was busy and dropped this trigger
    matcher.timed_out(dropped)
    after = matcher.next_trigger()
    assert matcher.classify(103, after) == "stale"  # looks late: one more view lost, none misattributed
    matcher.timed_out(after)
    assert matcher.classify(104, matcher.next_trigger()) == "match"  # back in step


def test_matcher_never_counts_a_trigger_that_was_not_sent():
    matcher = TriggerMatcher()
    assert matcher.classify(0, matcher.next_trigger()) == "match"
    matcher.next_trigger()
    matcher.cancel()  # camera busy: trigger not sent
    assert matcher.classify(1, matcher.next_trigger()) == "match"


def test_unknown_driver_is_a_camera_error():
    from camera.base import CAMERAS

    with pytest.raises(CameraError, match="unknown camera driver 'teleport'"):
        CAMERAS.load("teleport")


def test_second_sensor_fires_the_right_bank_and_a_missed_turn_is_reported(tmp_path):
    """Both sensors on pyserial loop:// ports (RTS drives CTS); the right one misses container 3."""
    batch = write_batch(tmp_path / "batch", [1, 2, 3, 4])
    modem = {"driver": "serial_modem", "port": "loop://", "debounce_ms": 10}
    gate = TypeAdapter(GateConfig).validate_python({**modem, "right_bank": modem})
    line = LineConfig(speed_cpm=60, travel_time_ms=2000, rotation_delay_ms=150)  # window +-150 ms
    station = build_station(camera_configs("batch", path=str(batch)), gate, line)
    frames = []
    runner = threading.Thread(target=station.run, args=(frames.append, threading.Event()))

    def pulse(gate):
        """A sensor pulse, each level held until the gate's poll has seen it: none is missed under
        load. The gates are polled from run() on, so the first pulse waits for that too."""
        wait_for(lambda: not gate._level, 5, "the gate seeing its sensor off")
        gate.port.rts = True
        wait_for(lambda: gate._level, 5, "the gate seeing its sensor on")
        gate.port.rts = False

    def at(started: float, offset_s: float) -> None:
        """Pace the simulated line (not a wait for the station): `offset_s` after the gate pulse."""
        time.sleep(max(0.0, started + offset_s - time.monotonic()))

    with station:
        station.gate.port.rts = station.right_gate.port.rts = False  # loop:// opens with RTS on
        runner.start()
        for container in (1, 2, 3, 4):
            pulse(station.gate)
            started = time.monotonic()  # the gate has seen it
            at(started, 0.15)  # the turn: rotation_delay_ms after the gate
            if container != 3:
                pulse(station.right_gate)
            if container == 2:
                at(started, 0.44)
                pulse(station.right_gate)  # a reflection: fits no container
            at(started, 0.6)  # the next container, at 60 containers/min
        runner.join(10)
        stats = station.stats()
    assert not runner.is_alive()
    views = {(f.container_seq, f.view): f for f in frames}
    assert sorted(views) == [(s, v) for s in (1, 2, 3, 4) for v in range(6)]
    for (seq, view), frame in views.items():
        if seq == 3 and view >= 3:
            assert "no right-bank gate event" in frame.missing
        else:
            assert frame.pixels is not None, frame.missing
    assert stats["right_gate"]["events"] == 4 and stats["right_gate"]["unmatched"] == 1


def test_a_failing_gate_port_is_counted_and_reopened_not_fatal(tmp_path):
    """The PLC's pseudo-terminal goes away mid-run: the station logs it, retries, and still stops on request."""
    master, slave = os.openpty()
    batch = write_batch(tmp_path / "batch", [1, 2, 3])
    gate = TypeAdapter(GateConfig).validate_python({"driver": "serial_lines", "port": os.ttyname(slave)})
    station = build_station(camera_configs("batch", path=str(batch)), gate, LINE)
    stop = threading.Event()
    frames = []

    def emit(frame):
        frames.append(frame)
        if len(frames) == 6:
            os.close(master)  # the other end is gone: reads on the port now fail

    runner = threading.Thread(target=station.run, args=(emit, stop))
    with station:
        runner.start()
        os.write(master, b"1\n")  # waits in the pseudo-terminal until the gate reads it
        wait_for(lambda: station.stats()["gate_errors"], 10, "the gate's read failing")
        stop.set()
        runner.join(10)
        stats = station.stats()
    os.close(slave)
    assert not runner.is_alive()
    assert stats["gate_errors"] >= 1
    assert sorted((f.container_seq, f.view) for f in frames) == [(1, v) for v in range(6)]
