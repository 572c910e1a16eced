"""The whole line, end to end, as `edge run` runs it: synthetic cameras, simulated gate,
ONNX Runtime on a tiny real RTVP package, a real SQLite file, the relay on a real
pseudo-terminal read from the other side. Kill -9 of a worker, SIGTERM mid-run, and bad
input thrown at the running stages' sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import zmq

from pipeline import codec
from pipeline.metrics_read import scrape
from test_line_support import PtyReader, db_rows, line_config, ship_onnx, tiny_package, wait_for

TOLERANCE_NS = 10_000_000  # a pulse within 10 ms of its due time, seen from the reader side
TRAVEL_MS = 1500
SPEED_CPM = 60  # a container a second


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    ship_onnx(tiny_package(root / "tiny-1"))
    return root


def start(tmp_path: Path, model: Path, *args: str, env: dict | None = None, **overrides):
    """Start `edge run`; the pty reader is listening before the station takes its first container."""
    config = line_config(tmp_path, model / "tiny-1", travel_ms=TRAVEL_MS, speed_cpm=SPEED_CPM, **overrides)
    data = tmp_path / "data"
    log = open(tmp_path / "edge.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config), *args],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ, **(env or {})})
    pty = data / "run" / "relay.pty"
    wait_for(lambda: pty.exists() or proc.poll() is not None, 180, "the relay to open")
    assert proc.poll() is None, (tmp_path / "edge.log").read_text()[-3000:]
    reader = PtyReader(pty.read_text())
    wait_for(lambda: "station" in _stages(data) or proc.poll() is not None, 180, "the line to start")
    assert proc.poll() is None, (tmp_path / "edge.log").read_text()[-3000:]
    return proc, data, config, reader


def finish(proc: subprocess.Popen, tmp_path: Path, timeout: float) -> int:
    """The exit code, or a failure that shows the end of the line's log."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("edge run did not finish:\n" + (tmp_path / "edge.log").read_text()[-4000:])


def _stages(data: Path) -> dict:
    try:
        return json.loads((data / "run" / "stages.json").read_text())
    except (OSError, ValueError):
        return {}


def journal(data: Path, kind: str = "pulse") -> list[dict]:
    path = data / "relay" / "outputs.jsonl"
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == kind]


def check_one_decision_each(data: Path) -> list[tuple]:
    rows = db_rows(data, "SELECT seq, decision, reason, n_views FROM containers ORDER BY seq")
    seqs = [r[0] for r in rows]
    assert len(seqs) == len(set(seqs)), "a container decided twice"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a container is missing"
    views = db_rows(data, "SELECT c.seq, count(v.id) FROM containers c JOIN views v ON v.container_id = c.id "
                          "GROUP BY c.seq")
    assert all(n == 6 for _, n in views) and len(views) == len(rows), "every frame has one outcome"
    return rows


def check_pulses(data: Path, reader: PtyReader, rows: list[tuple], undecided: tuple[int, ...] = ()) -> None:
    """One pulse per reject, each on time; `undecided` containers were armed, never decided."""
    rejects = sorted([seq for seq, decision, *_ in rows if decision == "reject"] + list(undecided))
    pulses = journal(data)
    assert sorted(p["seq"] for p in pulses if p["failsafe"]) == sorted(undecided)
    assert sorted(p["seq"] for p in pulses) == rejects, "one pulse per reject, none for passes"
    assert len(reader.on_times) == len(rejects)
    due = sorted(p["due_ns"] for p in pulses)
    errors = [seen - d for seen, d in zip(sorted(reader.on_times), due)]
    assert all(-TOLERANCE_NS < e < TOLERANCE_NS for e in errors), sorted(errors)[-3:]


@pytest.mark.timeout(1500)
def test_line_runs_n_containers_and_survives_a_killed_worker(tmp_path, model):
    n = 20
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    said: list[str] = []
    threading.Thread(target=lambda: said.extend(iter(lambda: notify.recv(4096).decode(), "")), daemon=True).start()
    proc, data, _, reader = start(tmp_path, model, "--containers", str(n),
                                  env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"})
    wait_for(lambda: len(journal(data)) >= 4, 120, "the first pulses")
    victim = _stages(data)["worker-0"]
    seq_file = data / "run" / "last_seq"
    first = seq_file.read_text()
    wait_for(lambda: seq_file.read_text() not in (first, ""), 30, "a new container at the gate")
    time.sleep(0.1)  # its first views are rendered and on their way to the worker
    os.kill(victim, signal.SIGKILL)
    assert finish(proc, tmp_path, 300) == 0, (tmp_path / "edge.log").read_text()[-3000:]
    time.sleep(0.2)
    reader.close()
    log = (tmp_path / "edge.log").read_text()
    assert _stages(data)["worker-0"] != victim and "worker-0" in log and "died" in log
    rows = check_one_decision_each(data)
    assert len(rows) == n
    # Views the worker held when it died are recorded as lost to the crash; views sent while
    # no worker was up are dropped by the station. Either way they are counted, and their
    # containers rejected (the reason says "defect" when another of their views had one).
    hit = db_rows(data, "SELECT count(*) FROM views WHERE missing = 'lost: worker crashed' "
                        "OR missing LIKE 'dropped:%'")[0][0]
    assert hit >= 1, {reason for _, _, reason, _ in rows}
    assert all(decision == "reject" for _, decision, *_ in rows)  # threshold 0.05: every view rejects
    check_pulses(data, reader, rows)
    assert "done: 20 containers" in log
    ready = [i for i, m in enumerate(said) if "READY=1" in m]
    assert len(ready) == 1 and any("WATCHDOG=1" in m for m in said[ready[0]:])
    assert any(m.startswith("STATUS=line: ") for m in said) and "STOPPING=1" in said[-1]


@pytest.mark.timeout(1500)
def test_sigterm_mid_run_decides_in_flight_and_bad_input_is_counted(tmp_path, model):
    proc, data, config, reader = start(tmp_path, model)
    address = yaml.safe_load(config.read_text())["metrics"]["address"]
    ctx = zmq.Context()
    observer = ctx.socket(zmq.SUB)
    observer.setsockopt(zmq.SUBSCRIBE, b"")
    observer.connect(f"ipc://{data}/run/decisions")
    assert observer.poll(60_000), "no decision published"
    decided = codec.unpack(observer.recv_multipart())
    results = ctx.socket(zmq.PUSH)
    results.connect(f"ipc://{data}/run/results")
    relay = ctx.socket(zmq.PUSH)
    relay.connect(f"ipc://{data}/run/relay")
    storage = ctx.socket(zmq.PUSH)
    storage.connect(f"ipc://{data}/run/storage")
    results.send(b"\xff\x00 not json")                                  # malformed
    results.send(codec.pack("view", seq=1))                              # truncated
    results.send(codec.pack("view", seq=10**9, t_gate_ns=1, view=0))    # unknown container
    late = decided["views"][0] | {"kind": "view", "seq": decided["seq"], "t_gate_ns": decided["t_gate_ns"],
                                  "outcome": "inferred", "detections": []}
    results.send(codec.pack(**late))                                     # late, clean: must not flip
    relay.send(codec.pack(**{**decided, "kind": "decision"}))            # a second decision: no 2nd pulse
    # A container the decision stage never decides: rejected at due. Due half-way between two
    # real containers' (the gate is periodic), so that its pulse cannot merge with theirs.
    due = decided["due_ns"] + int(2.5 * 60e9 / SPEED_CPM)
    relay.send(codec.pack("arm", seq=10**9, t_gate_ns=due - TRAVEL_MS * 1_000_000, due_ns=due))
    relay.send(b"{")
    storage.send_multipart([b'{"kind": "decision", "seq": 5}'])
    samples = wait_for(lambda: _bad(address) >= 6 and scrape(address), 30, "bad input to be counted")
    status = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--address", address],
                            capture_output=True, text=True)
    assert status.returncode == 0 and "rejects by reason" in status.stdout, status.stderr
    wait_for(lambda: len(journal(data)) >= 3, 60, "pulses")
    proc.send_signal(signal.SIGTERM)
    assert finish(proc, tmp_path, 120) == 0, (tmp_path / "edge.log").read_text()[-3000:]
    time.sleep(0.2)
    reader.close()
    for s in (observer, results, relay, storage):
        s.close(0)
    rows = check_one_decision_each(data)
    gated = int((data / "run" / "last_seq").read_text())
    assert rows[-1][0] == gated, "the containers in flight at SIGTERM were decided and stored"
    first = [r for r in rows if r[0] == decided["seq"]][0]
    assert first[1] == decided["decision"]
    check_pulses(data, reader, rows, undecided=(10**9,))
    bad: dict[tuple[str, str], float] = {}
    for labels, v in samples["edge_bad_messages_total"]:
        bad[labels["stage"], labels["reason"]] = bad.get((labels["stage"], labels["reason"]), 0) + v
    late = bad.pop(("decision", "late result"))
    assert late >= 1  # ours, and any the loaded machine produced itself: none changed a decision
    assert bad == {("decision", "malformed"): 2, ("relay", "malformed"): 1, ("writer", "malformed"): 1,
                   ("decision", "unknown container"): 1}


def _bad(address: str) -> float:
    try:
        return sum(v for _, v in scrape(address).get("edge_bad_messages_total", []))
    except OSError:
        return 0
