"""A stop request (SIGTERM) must not move a pulse: the reject controller, asked to stop while
it waits for its next pulse, still fires it on time and then exits.

This once failed in the full suite (test_line, 2 runs of 4): a SIGTERM handler interrupted
the ZeroMQ poll, pyzmq 27.3 restarted the poll with its whole timeout, and the last pulse
left 49 ms late, past the 30 ms lead, so its container was alarmed as not ejected. Here the
relay stage runs alone in its own process, exactly as the supervisor starts it, and the
signal is sent in the middle of its last wait before the pulse.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import zmq

from edge.config import load_config
from edge.supervisor import run_stage
from line_support import ipc_socket, line_config, wait_for
from pipeline import codec
from pipeline.sockets import run_dir

AHEAD_MS = 1095  # the relay waits 100 ms at a time: its last wait before the pulse is ~93 ms
SIGNAL_BEFORE_MS = 50  # ... and the stop request lands in the middle of it


def _records(data: Path) -> list[dict]:
    path = data / "relay" / "outputs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigterm_while_the_relay_waits_does_not_delay_its_pulse(tmp_path):
    config = load_config(line_config(tmp_path, tmp_path / "no-model-needed"))
    data = Path(config.data_dir)
    relay = multiprocessing.get_context("spawn").Process(
        target=run_stage, args=("relay", config.model_dump(mode="json"), {}))
    ctx = zmq.Context()
    to_relay = ipc_socket(ctx, zmq.PUSH, run_dir(data), "relay")
    relay.start()
    try:
        wait_for(lambda: any(r["kind"] == "started" for r in _records(data)), 60, "the relay to start")
        now = time.monotonic_ns()
        due = now + AHEAD_MS * 1_000_000
        to_relay.send(codec.pack("arm", seq=1, t_gate_ns=now, due_ns=due))
        time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9 - SIGNAL_BEFORE_MS / 1e3))  # paces the signal
        os.kill(relay.pid, signal.SIGTERM)
        relay.join(30)
        assert relay.exitcode == 0, "the relay exits 0 once its pulse has fired"
    finally:
        if relay.is_alive():
            relay.kill()
        to_relay.close(linger=0)
        ctx.term()
    records = _records(data)
    assert not [r for r in records if r["kind"] == "not ejected"], records
    pulses = [r for r in records if r["kind"] == "pulse"]
    assert [p["seq"] for p in pulses] == [1] and pulses[0]["failsafe"], records
    assert pulses[0]["error_ms"] < 10, f"pulse {pulses[0]['error_ms']} ms late: the stop request delayed it"
