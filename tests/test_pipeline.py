"""Pipeline parts on their own: decision rules, codec, endpoint policy and CURVE, reject
outputs on pyserial loop:// and a real pseudo-terminal, systemd notify."""

from __future__ import annotations

import os
import select
import socket

import pytest
import serial
import zmq
import zmq.auth

from pipeline.config import CurveConfig, PipelineConfig, PlcRejectConfig, RelayRejectConfig
from pipeline.decision import DecisionBook
from pipeline.errors import PipelineError
from pipeline.pulses import ALREADY_FIRED, CANCELLED, MISSED, OVERRULED, SCHEDULED, PulseSchedule
from pipeline.relay import PtyPort, Relay, open_port, plc_line
from pipeline.sockets import Endpoints, is_loopback
from line_support import wait_for
from bench import free_port

MS = 1_000_000
GATE = 1_000 * MS


def book(**kw) -> DecisionBook:
    args = dict(line_id="l", travel_time_ms=1000, relay_lead_ms=30, late_result="reject",
                thresholds={"oil": 0.5}, default_threshold=0.3)
    return DecisionBook(**{**args, **kw})


def result(view: int, seq: int = 1, dets=(), outcome="inferred", version="v1") -> dict:
    return {"kind": "view", "seq": seq, "t_gate_ns": GATE, "view": view, "camera_id": f"c{view}",
            "outcome": outcome, "reason": None if outcome == "inferred" else "timeout",
            "t_capture_ns": GATE + MS, "model_version": version,
            "detections": [{"class": c, "score": s, "box": [0, 0, 1, 1]} for c, s in dets]}


def feed(b: DecisionBook, views: dict[int, dict], now=GATE + 100 * MS):
    b.gate(1, GATE, now)
    decided = [d for d in (b.view(m, now) for m in views.values()) if d]
    return decided


def test_six_clean_views_pass_with_version_and_latency():
    (d,) = feed(book(), {v: result(v) for v in range(6)})
    assert (d["decision"], d["reason"], d["model_version"]) == ("pass", "ok", "v1")
    assert d["latency_ms"] == pytest.approx(100.0)
    assert d["due_ns"] == GATE + 1000 * MS
    assert [v["outcome"] for v in d["views"]] == ["inferred"] * 6


def test_detection_at_class_threshold_rejects_below_passes():
    views = {v: result(v) for v in range(6)}
    views[4] = result(4, dets=[("oil", 0.5)])
    (d,) = feed(book(), views)
    assert (d["decision"], d["reason"]) == ("reject", "defect")
    assert d["views"][4]["rejecting"] == ["oil"]
    views[4] = result(4, dets=[("oil", 0.49), ("bubble", 0.29)])  # bubble uses the default 0.3
    (d,) = feed(book(), views)
    assert d["decision"] == "pass"


def test_missing_view_rejects_and_defect_reason_wins():
    views = {v: result(v) for v in range(6)}
    views[2] = result(2, outcome="missing")
    (d,) = feed(book(), views)
    assert (d["decision"], d["reason"]) == ("reject", "missing view")
    views[0] = result(0, dets=[("oil", 0.9)])
    (d,) = feed(book(), views)
    assert d["reason"] == "defect"


def test_deadline_rejects_once_and_late_result_changes_nothing():
    b = book()
    assert feed(b, {v: result(v) for v in range(5)}) == []
    assert b.next_deadline() == GATE + 970 * MS
    assert b.expire(GATE + 969 * MS) == []
    (d,) = b.expire(GATE + 970 * MS)
    assert (d["decision"], d["reason"]) == ("reject", "late result")
    assert d["views"][5]["outcome"] == "late"
    # the sixth view arrives late, clean: no second decision, no flip
    assert b.view(result(5), GATE + 980 * MS) is None
    assert b.counts["late_views"] == 1 and b.counts["decided"] == 1
    assert b.expire(GATE + 5000 * MS) == [] and not b.open


def test_worker_crash_in_flight_is_the_recorded_reason():
    b = book()
    feed(b, {v: result(v) for v in range(3)})
    b.crash("worker-0", GATE + 200 * MS)
    (d,) = b.expire(GATE + 970 * MS)
    assert (d["decision"], d["reason"]) == ("reject", "worker crashed")
    assert [v["outcome"] for v in d["views"]][3:] == ["lost"] * 3


def test_late_result_pass_setting_passes_loudly(caplog):
    b = book(late_result="pass")
    feed(b, {v: result(v) for v in range(5)})
    (d,) = b.expire(GATE + 970 * MS)
    assert (d["decision"], d["reason"]) == ("pass", "late result")
    assert "PASSED" in caplog.text


def test_unknown_and_duplicate_results_are_counted_not_decided():
    b = book()
    assert b.view(result(0, seq=99), GATE + 2000 * MS) is None  # past its deadline, never gated
    assert b.counts["unknown"] == 1 and not b.open
    b.gate(1, GATE, GATE)
    b.view(result(0), GATE)
    assert b.view(result(0), GATE) is None
    assert b.counts["duplicate"] == 1
    with pytest.raises(ValueError):
        b.view(result(7), GATE)


def test_mixed_model_versions_are_all_recorded():
    views = {v: result(v, version="v1" if v < 3 else "v2") for v in range(6)}
    (d,) = feed(book(), views)
    assert d["model_version"] == "v1,v2"


def test_armed_container_is_rejected_at_due_unless_a_pass_comes_first():
    pulses = PulseSchedule(lead_ns=30 * MS)
    due = GATE + 1000 * MS
    for seq in (1, 2, 3):
        assert pulses.arm((seq, GATE + seq), due + seq, now_ns=GATE)
    assert not pulses.arm((1, GATE + 1), due + 1, now_ns=GATE)  # armed once
    assert pulses.decide((1, GATE + 1), "pass", due + 1, GATE + 300 * MS) == CANCELLED
    assert pulses.decide((2, GATE + 2), "reject", due + 2, GATE + 300 * MS) == SCHEDULED
    assert len(pulses) == 2 and pulses.next_due() == due + 2
    fired = [pulses.pop(), pulses.pop()]
    assert [(p.key[0], p.failsafe) for p in fired] == [(2, False), (3, True)]  # 3: never decided
    assert len(pulses) == 0 and pulses.next_due() is None
    # decisions that come after the fail-safe pulse cannot un-eject the container
    assert pulses.decide((3, GATE + 3), "pass", due + 3, due + 50 * MS) == OVERRULED
    assert not pulses.arm((2, GATE + 2), due + 2, now_ns=GATE)  # decided: a late arm is ignored


def test_unarmed_reject_is_timed_or_missed_and_a_fail_safe_reject_is_not_fired_twice():
    pulses = PulseSchedule(lead_ns=30 * MS)
    due = GATE + 1000 * MS
    assert pulses.decide((1, GATE), "reject", due, due - 100 * MS) == SCHEDULED
    assert pulses.decide((2, GATE), "reject", due, due + 31 * MS) == MISSED  # past the ejector
    assert pulses.decide((3, GATE), "pass", due, due - 100 * MS) == CANCELLED
    assert not pulses.arm((4, GATE), due, now_ns=due + 31 * MS)  # too late to arm
    pulses.arm((5, GATE), due + 5 * MS, now_ns=GATE)
    assert [pulses.pop().key[0], pulses.pop().key[0]] == [1, 5]
    assert pulses.decide((5, GATE), "reject", due + 5 * MS, due + 40 * MS) == ALREADY_FIRED
    assert len(pulses) == 0


def test_non_loopback_endpoints_need_permission_and_keys(tmp_path):
    assert is_loopback("ipc:///tmp/x") and is_loopback("tcp://127.0.0.1:5") and is_loopback("tcp://localhost:5")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://10.1.2.3:5555")
    ep = Endpoints(PipelineConfig(frames="tcp://0.0.0.0:0", insecure=True), tmp_path, zmq.Context())
    with pytest.raises(PipelineError, match="bind_any"):
        ep.bind("frames", zmq.PUSH)
    with pytest.raises(ValueError, match="CURVE"):  # no keys: refused at config check, not at run
        PipelineConfig(frames="tcp://0.0.0.0:0", bind_any=True)


def test_curve_encrypts_and_refuses_unknown_clients(tmp_path):
    keys, clients, strangers = tmp_path / "keys", tmp_path / "clients", tmp_path / "strangers"
    for folder in (keys, clients, strangers):
        folder.mkdir()
    _, server_secret = zmq.auth.create_certificates(keys, "server")
    client_public, client_secret = zmq.auth.create_certificates(keys, "worker")
    os.replace(client_public, clients / "worker.key")
    _, stranger_secret = zmq.auth.create_certificates(strangers, "stranger")
    port = free_port()

    def endpoints(secret) -> Endpoints:
        curve = CurveConfig(server_secret=server_secret, client_secret=secret, authorized_clients=clients)
        return Endpoints(PipelineConfig(results=f"tcp://127.0.0.1:{port}", curve=curve), tmp_path, ctx)

    ctx = zmq.Context()
    server = endpoints(client_secret)
    pull = server.bind("results", zmq.PULL)
    assert pull.curve_server
    good = endpoints(client_secret).connect("results", zmq.PUSH)
    good.send(b"hello")
    assert pull.poll(5000) and pull.recv() == b"hello"
    bad = endpoints(stranger_secret).connect("results", zmq.PUSH)
    bad.send(b"intruder")
    assert not pull.poll(1000)
    for s in (pull, good, bad):
        s.close(0)
    server.close()


def test_relay_rts_pulses_on_a_serial_loop():
    dev = serial.serial_for_url("loop://", timeout=0)
    relay = Relay(RelayRejectConfig(driver="relay", method="rts"), dev)
    assert dev.cts is False  # a known, open state at start
    relay.set(True)
    assert dev.cts is True
    relay.set(False)
    assert dev.cts is False
    relay = Relay(RelayRejectConfig(driver="relay", method="dtr"), dev)
    relay.set(True)
    assert dev.dsr is True


def read_pty(fd: int, n: int) -> bytes:
    """The first `n` bytes a pseudo-terminal passes on (the kernel hands them over in pieces)."""
    data = b""

    def arrived() -> bool:
        nonlocal data
        if select.select([fd], [], [], 0.1)[0]:
            data += os.read(fd, n - len(data))
        return len(data) >= n

    wait_for(arrived, 5, f"{n} bytes on {os.ttyname(fd)}")
    return data


def test_relay_bytes_on_a_pseudo_terminal():
    pty = open_port("pty", 9600, True, "port")
    assert isinstance(pty, PtyPort) and pty.name.startswith("/dev/pts/")
    reader = os.open(pty.name, os.O_RDONLY | os.O_NOCTTY)
    relay = Relay(RelayRejectConfig(driver="relay"), pty)
    relay.set(True)
    relay.set(False)
    assert read_pty(reader, 12) == bytes.fromhex("A00100A1" "A00101A2" "A00100A1")
    os.close(reader)
    with pytest.raises(PipelineError, match="RTS/DTR"):
        Relay(RelayRejectConfig(driver="relay", method="rts"), pty)
    for _ in range(100_000):  # nobody reads: the buffer never blocks the relay
        relay.set(True)
    assert pty.overflows > 0
    pty.close()


def test_relay_that_cannot_open_is_an_error_naming_the_port():
    with pytest.raises(PipelineError, match="/dev/ttyUSB-missing"):
        open_port("/dev/ttyUSB-missing", 9600, True, "port")


def test_plc_line_names_container_and_decision():
    cfg = PlcRejectConfig(driver="plc")
    assert plc_line(cfg.message, 42, "reject", "defect") == b"42 REJECT\n"


def test_plc_heartbeat_on_a_pseudo_terminal_and_decisions_between_beats():
    from pipeline.relay import PlcOutput

    pty = PtyPort()
    reader = os.open(pty.name, os.O_RDONLY | os.O_NONBLOCK)
    try:
        plc = PlcOutput(PlcRejectConfig(driver="plc", heartbeat_ms=20), pty)
        assert plc.next_time() == 0 and not plc.busy()  # a beat at once, and it never holds a stop
        plc.tick(GATE)
        assert plc.next_time() == GATE + 20 * MS
        plc.decide((7, GATE), "reject", "defect", GATE + 1000 * MS, GATE + 5 * MS)
        plc.tick(GATE + 20 * MS)
        assert read_pty(reader, 15) == b"HB\n7 REJECT\nHB\n"
        assert PlcOutput(PlcRejectConfig(driver="plc"), pty).next_time() is None  # off by default
    finally:
        os.close(reader)
        pty.close()


def test_systemd_notify_reaches_the_socket(tmp_path, monkeypatch):
    from edge.systemd import Notifier

    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    n.ready("inspecting")
    n.watchdog()
    assert sock.recv(256) == b"READY=1\nSTATUS=inspecting"
    assert sock.recv(256) == b"WATCHDOG=1"
    assert n.watchdog_interval() == 1.0  # a quarter of WatchdogSec
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not Notifier().notify("READY=1")




