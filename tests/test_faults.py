"""Single faults on a real line (`edge run`: synthetic cameras, ONNX Runtime on a tiny real
model, SQLite, the relay on a pseudo-terminal read by a separate process), each followed by
the line's three promises, counted: every gated container has exactly one decision row;
every reject whose ejector time fell while a reject controller was up produced its pulse on
time; every other reject is an alarm naming the container. Nothing is silent."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from disk_support import mount_tmpfs, unmount
from line_support import (READER_SLACK_NS, TOLERANCE_NS, check_one_decision_each, counted, db_rows, explain_late,
                          finish, journal, stages, start, wait_for)

PERIOD_NS = 1_000_000_000  # 60 containers/min
TRAVEL_NS = 1_500_000_000


def kill(data: Path, stage: str) -> tuple[int, int]:
    """kill -9 a stage; (its pid, when) on the monotonic clock the line uses."""
    pid = stages(data)[stage]
    os.kill(pid, signal.SIGKILL)
    return pid, time.monotonic_ns()


def restarted(data: Path, stage: str, old_pid: int) -> int:
    """Wait for the supervisor's new process; when its relay terminal exists again (relay)."""
    wait_for(lambda: stages(data).get(stage) not in (None, old_pid), 60, f"{stage} to be restarted")
    return time.monotonic_ns()


def account(data: Path, reader_times: list[int], down: list[tuple[int, int]], kills: int) -> dict:
    """Every reject is a pulse on time or an alarm naming it; alarms only for ejector times in
    a window when no controller was up. Returns the counts."""
    rows = check_one_decision_each(data)
    rejects = {seq for seq, decision, *_ in rows if decision == "reject"}
    pulses = {p["seq"]: p for p in journal(data)}
    alarms = {a["seq"]: a for kind in ("not ejected", "missed") for a in journal(data, kind)}
    silent = rejects - pulses.keys() - alarms.keys()
    assert not silent, f"rejects with neither a pulse nor an alarm: {sorted(silent)}"
    assert not pulses.keys() & alarms.keys(), "a container both pulsed and alarmed"
    starved = 0
    for seq, alarm in alarms.items():
        due = alarm["due_ns"]
        if any(start - TOLERANCE_NS <= due <= end + TOLERANCE_NS for start, end in down):
            continue
        # Outside a restart only a controller that was kept off the CPU past its lead time (a
        # shared machine throttles even SCHED_FIFO processes) may alarm: it said how late it was.
        assert "late_ms" in alarm, f"container {seq}: alarm for an ejector time when a controller was up"
        starved += 1
    # Each pulse on time, or late for a cause the line can see (explain_late); and each really went
    # out: the reader on the other side of the pseudo-terminal saw it (that reader also follows each
    # restarted controller to its new terminal, so its own stamps get a wider slack). A kill between
    # the device write and the journal line may add a pulse the journal does not have, at most one
    # per kill. Pulses the OS starved share the alarms' budget of two.
    starved += explain_late(data, list(pulses.values()))
    assert starved <= 2, f"{starved} rejects starved (alarmed or pulsed late)"
    on = sorted(reader_times)
    assert len(pulses) <= len(on) <= len(pulses) + kills
    seen = [min(on, key=lambda t: abs(t - p["due_ns"])) - p["due_ns"] for p in pulses.values()]
    assert all(abs(e) < READER_SLACK_NS for e in seen), sorted(seen, key=abs)[-3:]
    return {"rows": len(rows), "rejects": len(rejects), "pulsed": len(pulses), "alarmed": len(alarms),
            "starved": starved}


@pytest.mark.timeout(900)
def test_relay_killed_at_seeded_moments_fires_or_alarms_every_reject(tmp_path, model):
    """Three kill -9s of the reject controller, at moments drawn from a seed: the pulses it had
    scheduled fire on time from its successor; those due while none was up are alarms. A
    stall limit far below a process's start time proves the start grace: no restart loop."""
    rng = random.Random(12)
    n = 22
    proc, data, _, reader = start(tmp_path, model, "--containers", str(n),
                                  pipeline={"stall_s": 1.5}, line={"relay_lead_ms": 30})
    kills = []
    for _ in range(3):
        wait_for(lambda: len(journal(data)) >= 2 + 4 * len(kills), 120, "pulses")
        time.sleep(rng.uniform(0, PERIOD_NS / 1e9))  # picks when to kill, anywhere in a period: not a wait
        old, at = kill(data, "relay")
        kills.append(at)
        restarted(data, "relay", old)
        wait_for(lambda: len(journal(data, "started")) > len(kills), 60, "the new controller to be up")
    assert finish(proc, tmp_path, 300) == 0, (tmp_path / "edge.log").read_text()[-3000:]
    reader.close()
    log = (tmp_path / "edge.log").read_text()
    ups = sorted(s["ready_ns"] for s in journal(data, "started"))
    down = [(at, min(t for t in ups if t > at)) for at in kills]  # no controller from the kill to its successor
    counts = account(data, reader.on_times, down, kills=3)
    assert counts["rows"] == n and counts["rejects"] == n  # threshold 0.05: every container rejects
    assert "not started for" not in log and "silent for" not in log, "a starting relay was killed"
    assert log.count("relay (pid") >= 3 and "restarting in 0.0 s" in log


@pytest.mark.timeout(900)
def test_writer_decision_station_and_worker_killed_lose_no_record(tmp_path, model):
    """kill -9 of the writer right after a decision, then of the decision stage, the station and
    a worker: every container of --containers N has one row, no more (station restarts count);
    health holds (watchdog pings go on); the summary adds up."""
    n = 20
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    pings: list[int] = []

    def listen() -> None:
        while True:
            if b"WATCHDOG=1" in notify.recv(4096):
                pings.append(time.monotonic_ns())

    threading.Thread(target=listen, daemon=True).start()
    proc, data, _, reader = start(tmp_path, model, "--containers", str(n),
                                  env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "4000000"})
    down = []
    for stage in ("writer", "decision", "station", "worker-0"):
        before = len(journal(data))
        wait_for(lambda: len(journal(data)) > before, 60, "a decision to reach the relay")
        old, at = kill(data, stage)
        end = restarted(data, stage, old)
        if stage == "decision":  # its successor rejects what it had open, maybe after the ejector
            down.append((at - TRAVEL_NS, end + 5 * PERIOD_NS))
    assert finish(proc, tmp_path, 300) == 0, (tmp_path / "edge.log").read_text()[-3000:]
    reader.close()
    counts = account(data, reader.on_times, down, kills=0)
    assert counts["rows"] == n, counts
    log = (tmp_path / "edge.log").read_text()
    assert f"done: {n} containers" in log
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert pings and max(gaps) < 2e9, f"watchdog gap {max(gaps) / 1e9:.1f} s"  # under WatchdogSec/2


@pytest.mark.timeout(900)
def test_full_disk_stops_images_first_and_loses_no_record(tmp_path, model):
    """The data folder on a 48 MB tmpfs: below storage.min_free_mb images stop and an alarm
    event is raised while records commit; with no space at all the line goes on deciding and
    ejecting, records wait in the decision stage's journal, and the decision stage and the
    reject controller, each killed then, come back with their metrics on the endpoint; when space returns every container is recorded exactly once and every reject
    is a pulse or an alarm. Progress on the full disk is read from the metrics endpoint: the
    relay's audit lines wait in memory until the disk has room."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, 48)
    try:
        n = 24
        filler = disk / "filler"
        proc, data, config, reader = start(tmp_path, model, "--containers", str(n),
                                           storage={"data_dir": str(disk / "data"), "min_free_mb": 20,
                                                    "keep_images": "all", "image_format": "png"})
        address = yaml.safe_load(config.read_text())["metrics"]["address"]
        decided = lambda: counted(address, "edge_decisions_total")  # noqa: E731
        wait_for(lambda: decided() >= 3, 120, "the first containers")
        free = shutil.disk_usage(disk).free
        with open(filler, "wb") as f:  # leave 8 MB: under the guard, images stop
            f.write(b"\0" * (free - (8 << 20)))
        wait_for(lambda: decided() >= 8, 60, "containers on a low disk")
        with open(filler, "ab") as f:  # and then nothing at all
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        _, at = kill(data, "decision")  # the line's durable outbox, on a disk that takes no journal line
        wait_for(lambda: counted(address, "edge_stage_restarts_total", stage="decision") >= 1, 60,
                 "the decision stage to be restarted on the full disk")
        down = [(at - TRAVEL_NS, time.monotonic_ns() + 5 * PERIOD_NS)]  # its successor rejects what it had open
        wait_for(lambda: decided() >= 12, 60, "decisions from the new decision stage")
        _, at = kill(data, "relay")
        wait_for(lambda: counted(address, "edge_stage_restarts_total", stage="relay") >= 1, 60,
                 "the relay to be restarted on the full disk")
        wait_for(lambda: decided() >= 16, 60, "containers on a full disk")
        filler.unlink()  # space returns
        assert finish(proc, tmp_path, 300) == 0, (tmp_path / "edge.log").read_text()[-3000:]
        reader.close()
        up = min(s["ready_ns"] for s in journal(data, "started") if s["ready_ns"] > at)
        counts = account(data, reader.on_times, down + [(at, up)], kills=1)
        assert counts["rows"] == n
        events = [e for (e,) in db_rows(data, "SELECT kind FROM events")]
        assert "disk low" in events
        kept = db_rows(data, "SELECT count(*) FROM views WHERE image_state = 'stored'")[0][0]
        assert 0 < kept < 6 * n  # images before the guard and after, none in between
        log = (tmp_path / "edge.log").read_text()
        assert "writer cannot start" not in log
        assert log.count(" died with exit code") == 2, "a stage died besides the two that were killed"
        assert "no metric files" not in log, "a restarted stage's metrics off the endpoint"
    finally:
        unmount(disk)
