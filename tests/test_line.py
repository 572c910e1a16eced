"""The whole line, end to end, as `edge run` runs it: synthetic cameras, simulated gate,
ONNX Runtime on a tiny real RTVP package, a real SQLite file, the relay on a real
pseudo-terminal read from the other side. Kill -9 of a worker, SIGTERM mid-run, and bad
input thrown at the running stages' sockets."""

from __future__ import annotations

import os
import signal
import socket
import threading
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import zmq

from pipeline import codec
from pipeline.metrics_read import scrape
from line_support import (check_one_decision_each, counted, check_pulses, db_rows, finish, ipc_socket, journal,
                          stages as _stages, start as start_line, wait_for)

TRAVEL_MS = 1500
SPEED_CPM = 60  # a container a second


def start(tmp_path: Path, model: Path, *args: str, env: dict | None = None, **overrides):
    return start_line(tmp_path, model, *args, env=env, travel_ms=TRAVEL_MS, speed_cpm=SPEED_CPM, **overrides)


@pytest.mark.timeout(1500)
def test_line_runs_n_containers_and_survives_a_killed_worker(tmp_path, model):
    n = 20
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    said: list[str] = []
    threading.Thread(target=lambda: said.extend(iter(lambda: notify.recv(4096).decode(), "")), daemon=True).start()
    proc, data, config, reader = start(tmp_path, model, "--containers", str(n),
                                       env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"})
    address = yaml.safe_load(config.read_text())["metrics"]["address"]
    wait_for(lambda: len(journal(data)) >= 4, 120, "the first pulses")
    victim = _stages(data)["worker-0"]
    seq_file = data / "run" / "last_seq"
    first = seq_file.read_text()
    wait_for(lambda: seq_file.read_text() not in (first, ""), 30, "a new container at the gate")
    sent = counted(address, "edge_frames_total", stage="station", outcome="sent")
    wait_for(lambda: counted(address, "edge_frames_total", stage="station", outcome="sent") > sent, 30,
             "its first views on their way to the worker")
    os.kill(victim, signal.SIGKILL)
    assert finish(proc, tmp_path, 300) == 0, (tmp_path / "edge.log").read_text()[-3000:]
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
    results, relay, storage = (ipc_socket(ctx, zmq.PUSH, data / "run", name) for name in ("results", "relay", "storage"))
    results.send(b"\xff\x00 not json")                                  # malformed
    results.send(codec.pack("view", seq=1))                              # truncated
    results.send(codec.pack("view", seq=10**9, t_gate_ns=1, view=0, camera_id="cam-l0",
                            outcome="inferred"))                         # unknown container
    late = decided["views"][0] | {"kind": "view", "seq": decided["seq"], "t_gate_ns": decided["t_gate_ns"],
                                  "outcome": "inferred", "detections": []}
    results.send(codec.pack(**late))                                     # late, clean: must not flip
    relay.send(codec.pack(**{**decided, "kind": "decision"}))            # a second decision: no 2nd pulse
    # A container the decision stage never decides: rejected at due. Due half-way between two
    # real containers' (the gate is periodic), so that its pulse cannot merge with theirs.
    due = decided["due_ns"] + int(1.5 * 60e9 / SPEED_CPM)  # its gate within the 2 s clock window
    relay.send(codec.pack("arm", seq=10**9, t_gate_ns=due - TRAVEL_MS * 1_000_000, due_ns=due))
    relay.send(b"{")
    storage.send_multipart([b'{"kind": "decision", "seq": 5}'])
    samples = wait_for(lambda: counted(address, "edge_bad_messages_total") >= 6 and scrape(address), 30, "bad input to be counted")
    status = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--address", address],
                            capture_output=True, text=True)
    assert status.returncode == 0 and "rejects by reason" in status.stdout, status.stderr
    wait_for(lambda: len(journal(data)) >= 3, 60, "pulses")
    proc.send_signal(signal.SIGTERM)
    assert finish(proc, tmp_path, 120) == 0, (tmp_path / "edge.log").read_text()[-3000:]
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
    assert bad[("relay", "out of window")] == 0  # present at 0 from the start
    late = bad.pop(("decision", "late result"))
    assert late >= 1  # ours, and any the loaded machine produced itself: none changed a decision
    assert {k: v for k, v in bad.items() if v} == {
        ("decision", "not json"): 1, ("decision", "invalid"): 1, ("relay", "not json"): 1,
        ("writer", "invalid"): 1, ("decision", "unknown container"): 1}
