"""A killed worker's two paths, each made to happen on purpose (issue 18): the views it held
are recorded as lost to the crash; the views the station sent while no worker was connected
are dropped at once. Either way the container is rejected and recorded, never waited for."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from line_support import ROOT, wait_for

N = 16  # at 4/s; container 10 has a marked (defective) view


def run_line(data: Path, engine: str) -> subprocess.Popen:
    data.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "line_standins.py"), str(data), str(N), engine],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def worker_pid(data: Path) -> int:
    try:
        return json.loads((data / "run" / "stages.json").read_text()).get("worker-0", 0)
    except (OSError, ValueError):
        return 0


def views(data: Path) -> list[tuple]:
    with sqlite3.connect(data / "edge.db") as db:
        return db.execute("SELECT c.seq, c.decision, c.reason, v.view, v.missing FROM containers c "
                          "JOIN views v ON v.container_id = c.id ORDER BY c.seq, v.view").fetchall()


def finished(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.timeout(300)
def test_views_in_a_killed_workers_hands_are_lost_with_it(tmp_path):
    data = tmp_path / "data"
    proc = run_line(data, "HoldingEngine")
    wait_for(lambda: (data / "run" / "first_seq").exists(), 60, "the first container at the gate")
    (data / "hold").touch()
    wait_for(lambda: (data / "holding").exists(), 60, "the worker to hold a marked view")
    (data / "hold").unlink()
    os.kill(worker_pid(data), signal.SIGKILL)
    finished(proc)
    rows = views(data)
    assert len({r[0] for r in rows}) == N and len(rows) == 6 * N
    lost = {seq for seq, _, _, _, missing in rows if missing == "lost: worker crashed"}
    assert lost, "the held views were recorded as lost to the crash"
    for seq, decision, reason, *_ in rows:
        if seq in lost:
            assert (decision, reason) == ("reject", "worker crashed")


@pytest.mark.timeout(300)
def test_views_sent_while_no_worker_is_connected_are_dropped_at_once(tmp_path):
    data = tmp_path / "data"
    proc = run_line(data, "SlowStartEngine")
    wait_for(lambda: (data / "run" / "first_seq").exists(), 60, "the first container at the gate")
    first = worker_pid(data)
    (data / "hold_start").touch()  # the replacement will take its time to load
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: (data / "starting").exists(), 60, "the replacement to be loading")
    with sqlite3.connect(data / "edge.db") as db:
        wait_for(lambda: db.execute("SELECT count(*) FROM views WHERE missing LIKE 'dropped:%'").fetchone()[0],
                 60, "a view dropped while no worker is connected")
    (data / "hold_start").unlink()
    finished(proc)
    rows = views(data)
    assert len({r[0] for r in rows}) == N and len(rows) == 6 * N
    dropped = {seq for seq, _, _, _, missing in rows if (missing or "").startswith("dropped:")}
    assert dropped
    for seq, decision, reason, *_ in rows:
        if seq in dropped:
            assert decision == "reject" and reason in ("missing view", "defect", "worker crashed")
