"""A running line under hostile messages (issue 13): garbage, wrong types, infinite numbers,
future dates, huge headers and wrong kinds on every socket the line binds for input, the
supervisor's control socket included, over ipc and over a CURVE tcp endpoint (an authorized
client's messages are decoded and counted; a client without the keys cannot deliver at all).
No stage restarts, every container is decided and recorded, the counters show each refusal."""

from __future__ import annotations

import time

import pytest
import yaml
import zmq
import zmq.auth

from pipeline import codec
from pipeline.metrics_read import scrape
from line_support import (check_one_decision_each, finish, free_port, journal, start, wait_for)

N = 14


KINDS = {"decision": ("view", "gate", "crash", "end", "ack", "sync"), "relay": ("arm", "decision", "sync"),
         "writer": ("decision", "alarm"), "supervisor": ("beat",)}  # what each stage's input socket carries


def hostile(now_ns: int) -> list[list[bytes]]:
    return [
        [b"\xff\x00 not json"],
        [b"[1, 2, 3]"],
        [b'{"kind": "beat", "stage": ["x"], "pid": 1, "state": "ready", "t_ns": 1}'],  # a list for a name
        [b'{"kind": "nope"}'],
        [b'{"kind": "view", "seq": 1e400, "view": 0, "t_gate_ns": 1, "camera_id": "c", "outcome": "inferred"}'],
        [codec.pack("view", seq=5, view=0, t_gate_ns=now_ns + 10**15, camera_id="c", outcome="inferred")],
        [b'{"kind": "view", "pad": "' + b"x" * (5 << 20) + b'"}'],
        [b'{"kind": "gate", "seq": true, "t_gate_ns": 1}'],
        [codec.pack("arm", seq=1, t_gate_ns=1, due_ns=10**18)],  # due far from its gate
        [codec.pack("sync", stage=["relay"], pid=1)],
    ]


def refusal(parts: list[bytes], kinds: tuple[str, ...], now_ns: int) -> str:
    """The reason the decoder gives (tests/test_codec.py tests the decoder itself)."""
    with pytest.raises(codec.BadMessage) as refused:
        codec.unpack(parts, kinds, now_ns)
    return refused.value.reason


def bad_counts(address: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for labels, value in scrape(address).get("edge_bad_messages_total", []):
        key = (labels["stage"], labels["reason"])
        out[key] = out.get(key, 0) + value
    return out


@pytest.mark.timeout(900)
def test_a_running_line_shrugs_off_hostile_messages_on_every_socket(tmp_path, model):
    keys = tmp_path / "keys"
    clients, strangers = tmp_path / "clients", tmp_path / "strangers"
    for folder in (keys, clients, strangers):
        folder.mkdir()
    zmq.auth.create_certificates(str(keys), "server")
    _, client_secret = zmq.auth.create_certificates(str(clients), "client")
    _, stranger_secret = zmq.auth.create_certificates(str(strangers), "stranger")
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    (authorized / "client.key").write_text((clients / "client.key").read_text())
    control = f"tcp://127.0.0.1:{free_port()}"
    proc, data, config, reader = start(tmp_path, model, "--containers", str(N), pipeline={
        "control": control, "curve": {"server_secret": str(keys / "server.key_secret"),
                                      "client_secret": client_secret, "authorized_clients": str(authorized)}})
    address = yaml.safe_load(config.read_text())["metrics"]["address"]
    wait_for(lambda: len(journal(data)) >= 2, 120, "the first pulses")
    ctx = zmq.Context()
    sockets = []

    def sender(url: str, secret=None) -> zmq.Socket:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 2000)
        if secret is not None:
            public, private = zmq.auth.load_certificate(str(secret))
            sock.curve_publickey, sock.curve_secretkey = public, private
            sock.curve_serverkey = zmq.auth.load_certificate(str(keys / "server.key"))[0]
        sock.connect(url)
        sockets.append(sock)
        return sock

    before = bad_counts(address)
    expected: dict[tuple[str, str], int] = {}
    now = time.monotonic_ns()
    targets = {"decision": sender(f"ipc://{data}/run/results"), "relay": sender(f"ipc://{data}/run/relay"),
               "writer": sender(f"ipc://{data}/run/storage"), "supervisor": sender(control, client_secret)}
    for stage, sock in targets.items():
        for parts in hostile(now):
            sock.send_multipart(parts)
            reason = refusal(parts, KINDS[stage], now)
            expected[stage, reason] = expected.get((stage, reason), 0) + 1
    # The writer's image socket: pixels that do not match their shape, a shape of 2^40.
    images = sender(f"ipc://{data}/run/images")
    images.send_multipart([codec.pack("image", seq=1, view=0, shape=[4, 4, 3]), b"\0" * 5])
    images.send_multipart([codec.pack("image", seq=1, view=0, shape=[2**40, 2**40]), b""])
    expected["writer", "parts"] = expected.get(("writer", "parts"), 0) + 1
    expected["writer", "invalid"] = expected.get(("writer", "invalid"), 0) + 1
    # A stranger on the tcp control socket, without authorized keys and without any: never delivered.
    sender(control, strangers / "stranger.key_secret").send(b'{"kind": "beat", "stage": 1}')
    sender(control).send(b"garbage")

    def delta() -> dict[tuple[str, str], float]:
        now_counts = bad_counts(address)
        return {k: v - before.get(k, 0) for k, v in now_counts.items() if v - before.get(k, 0)}

    wait_for(lambda: all(delta().get(k, 0) >= n for k, n in expected.items()), 60, "every refusal counted")
    counted = delta()
    for sock in sockets:
        sock.close(0)
    ctx.term()
    assert finish(proc, tmp_path, 300) == 0, (tmp_path / "edge.log").read_text()[-3000:]
    reader.close()
    assert {k: v for k, v in counted.items() if k[1] != "late result"} == expected  # the strangers: nothing
    log = (tmp_path / "edge.log").read_text()
    assert f"done: {N} containers" in log and "restarts 0" in log.splitlines()[-1], log[-2000:]
    rows = check_one_decision_each(data)
    assert len(rows) == N
