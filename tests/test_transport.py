"""Who can talk to the line (pipeline/sockets.py, pipeline/config.py): CURVE on every tcp://
endpoint, loopback included; plain tcp only under `pipeline.insecure`, with a warning;
ipc:// sockets in private folders; config errors at `edge config check`, not at run."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import zmq
import zmq.auth

from pipeline.config import CurveConfig, PipelineConfig
from pipeline.errors import PipelineError
from pipeline.sockets import Endpoints, resolve, run_dir
from bench import free_port

ROOT = Path(__file__).resolve().parent.parent




@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def curve(tmp_path) -> CurveConfig:
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    keys.mkdir()
    clients.mkdir()
    _, server_secret = zmq.auth.create_certificates(keys, "server")
    client_public, client_secret = zmq.auth.create_certificates(keys, "stage")
    os.replace(client_public, clients / "stage.key")
    return CurveConfig(server_secret=server_secret, client_secret=client_secret, authorized_clients=clients)


def test_loopback_tcp_with_keys_is_curve_and_delivers(tmp_path, ctx, curve):
    config = PipelineConfig(results=f"tcp://127.0.0.1:{free_port()}", curve=curve)
    server, client = Endpoints(config, tmp_path, ctx), Endpoints(config, tmp_path, ctx)
    pull = server.bind("results", zmq.PULL)
    push = client.connect("results", zmq.PUSH)
    assert pull.get(zmq.MECHANISM) == push.get(zmq.MECHANISM) == zmq.CURVE
    push.send(b"hello")
    assert pull.poll(5000) and pull.recv() == b"hello"
    for sock in (pull, push):
        sock.close(0)
    server.close()


def test_a_client_without_keys_cannot_deliver_to_a_curve_server(tmp_path, ctx, curve):
    port = free_port()
    server = Endpoints(PipelineConfig(results=f"tcp://127.0.0.1:{port}", curve=curve), tmp_path, ctx)
    pull = server.bind("results", zmq.PULL)
    plain = ctx.socket(zmq.PUSH)  # what an unprivileged local user can open
    plain.connect(f"tcp://127.0.0.1:{port}")
    plain.send(b'{"kind": "beat", "stage": ["x"]}')
    assert not pull.poll(1000)
    for sock in (pull, plain):
        sock.close(0)
    server.close()  # after its sockets: the authenticator must outlive their handshakes


def test_insecure_tcp_works_and_warns_in_every_process_that_opens_it(tmp_path, ctx, caplog):
    config = PipelineConfig(results=f"tcp://127.0.0.1:{free_port()}", insecure=True)
    with caplog.at_level(logging.WARNING, logger="pipeline.sockets"):
        pull = Endpoints(config, tmp_path, ctx).bind("results", zmq.PULL)
        push = Endpoints(config, tmp_path, ctx).connect("results", zmq.PUSH)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "pipeline.insecure" in r.message]
    assert len(warnings) == 2 and "pipeline.results" in warnings[0].message
    push.send(b"plain")
    assert pull.poll(5000) and pull.recv() == b"plain"


def test_tcp_without_keys_is_a_config_error_naming_the_key_and_the_fix():
    with pytest.raises(ValueError, match="pipeline.curve .*pipeline.insecure: true"):
        PipelineConfig(control="tcp://127.0.0.1:5555")


def test_the_run_folder_is_tightened_to_0700_and_holds_the_sockets(tmp_path, ctx):
    (tmp_path / "run").mkdir(mode=0o777)
    os.chmod(tmp_path / "run", 0o777)
    ep = Endpoints(PipelineConfig(), tmp_path, ctx)
    pull = ep.bind("results", zmq.PULL)
    push = ep.connect("results", zmq.PUSH)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700
    assert (tmp_path / "run" / "results").exists()
    push.send(b"x")
    assert pull.poll(5000) and pull.recv() == b"x"
    assert run_dir(tmp_path) == tmp_path / "run"


def test_a_deep_data_folder_uses_a_private_short_folder_not_an_abstract_socket(tmp_path, ctx):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    url = resolve("ipc://{run_dir}/frames", deep)
    assert not url.startswith("ipc://@") and len(url) - 6 <= 100
    folder = Path(url[6:]).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.geteuid()
    assert resolve("ipc://{run_dir}/frames", deep) == url  # every stage finds the same socket
    pull = Endpoints(PipelineConfig(), deep, ctx).bind("frames", zmq.PULL)
    push = Endpoints(PipelineConfig(), deep, ctx).connect("frames", zmq.PUSH)
    push.send(b"x")
    assert pull.poll(5000) and pull.recv() == b"x"


def test_abstract_and_shared_folder_ipc_sockets_are_refused(tmp_path):
    with pytest.raises(PipelineError, match="abstract"):
        resolve("ipc://@edge-frames", tmp_path, "pipeline.frames")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(PipelineError, match="pipeline.frames: socket folder"):
        resolve(f"ipc://{shared}/frames", tmp_path, "pipeline.frames")


def config_check(tmp_path: Path, section: str, **changes) -> subprocess.CompletedProcess:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw[section] = {**raw.get(section, {}), **changes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return subprocess.run([sys.executable, "-m", "edge.cli", "config", "check", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("section, changes, expected", [
    ("pipeline", {"results": "tcp://127.0.0.1:5601"}, "pipeline.results"),
    ("reject", {"on_bytes": "ZZ"}, "reject.on_bytes"),
])
def test_config_check_names_the_key_in_one_line_and_exits_2(tmp_path, section, changes, expected):
    done = config_check(tmp_path, section, **changes)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_config_check_accepts_insecure_tcp(tmp_path):
    done = config_check(tmp_path, "pipeline", results="tcp://127.0.0.1:5601", insecure=True)
    assert done.returncode == 0, done.stderr
