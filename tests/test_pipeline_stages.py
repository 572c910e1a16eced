"""One stage process at a time on real ZeroMQ sockets, fed by the test: bad frames are counted
and answered, the stage keeps running; the hot model switch happens between batches."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import numpy as np
import pytest
import yaml
import zmq

from camera.frame import Frame
from engines.detections import Detections
from pipeline import codec
from edge.supervisor import run_stage
from line_support import ROOT, ipc_socket
from storage.files import atomic_write

VOCABULARY = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")


class ActiveEngine:
    """Stand-in engine: version = the registry's ACTIVE file, one 'oil' box per view."""

    def __init__(self, config) -> None:
        self.version = (config.data_dir / "models" / "ACTIVE").read_text().strip()
        self.vocabulary = VOCABULARY

    def infer(self, images):
        return [Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.9], np.float32),
                           np.array([0]), VOCABULARY) for _ in images]

    def close(self) -> None:
        pass


@pytest.fixture
def worker(tmp_path):
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"].update(data_dir=str(tmp_path), keep_images="none")
    raw["line"]["travel_time_ms"] = 60_000
    from edge.config import AppConfig

    config = AppConfig.model_validate(raw)
    (tmp_path / "models").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "models" / "ACTIVE").write_text("v1\n")
    ctx = zmq.Context()
    frames, results, control = (ipc_socket(ctx, kind, tmp_path / "run", name, bind=True)
                                for kind, name in ((zmq.PUSH, "frames"), (zmq.PULL, "results"), (zmq.PULL, "control")))
    proc = mp.get_context("spawn").Process(
        target=run_stage, args=("worker-0", config.model_dump(mode="json"), {"engine_factory": ActiveEngine}))
    proc.start()
    yield tmp_path, frames, results, control, proc
    proc.terminate()
    proc.join(10)
    for s in (frames, results, control):
        s.close(0)


def frame(seq: int, view: int, shape=(820, 700, 3)) -> Frame:
    now = time.monotonic_ns()
    return Frame(seq, view, f"cam{view}", now, now, np.zeros(shape, np.uint8))


def receive(sock, n: int, timeout_s: float = 30) -> list[dict]:
    out, end = [], time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < end:
        if sock.poll(100):
            out.append(codec.unpack(sock.recv_multipart()))
    return out


def beat_after(control, t_ns: int, timeout_s: float = 10) -> dict:
    """The first heartbeat sent after t_ns (heartbeats queue up while nobody reads)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if control.poll(100):
            beat = codec.unpack(control.recv_multipart())
            if beat["t_ns"] > t_ns:
                return beat
    raise AssertionError("no heartbeat")


def test_worker_counts_bad_frames_answers_them_and_keeps_running(worker):
    _, frames, results, control, proc = worker
    good = frame(1, 0)
    frames.send_multipart(codec.frame_parts(good))
    (first,) = receive(results, 1)
    assert (first["seq"], first["outcome"], first["model_version"]) == (1, "inferred", "v1")
    frames.send_multipart([b"\x00garbage"])                                   # not JSON at all
    head = json.loads(codec.frame_header(good))
    frames.send_multipart([json.dumps({**head, "view": 1}).encode(), good.pixels.tobytes()[:1000]])  # truncated
    frames.send_multipart(codec.frame_parts(frame(1, 2, shape=(480, 640, 3))))  # wrong size
    frames.send_multipart(codec.frame_parts(frame(1, 3)))  # and a good one after
    answers = receive(results, 3)
    by_view = {a["view"]: a for a in answers}
    assert by_view[1]["outcome"] == "bad" and by_view[1]["reason"] == "malformed"
    assert by_view[2]["outcome"] == "bad" and by_view[2]["reason"] == "wrong size"
    assert by_view[3]["outcome"] == "inferred"
    assert proc.is_alive()
    stats = beat_after(control, time.monotonic_ns())["stats"]
    assert stats["bad"] == 3 and stats["inferred"] == 2


def test_hot_switch_between_batches_records_the_new_version(worker):
    data, frames, results, _, proc = worker
    frames.send_multipart(codec.frame_parts(frame(1, 0)))
    assert receive(results, 1)[0]["model_version"] == "v1"
    with atomic_write(data / "models" / "ACTIVE") as fh:  # as the registry activates a model
        fh.write("v2\n")
    answers, end = [], time.monotonic() + 30
    seq = 2
    while "v2" not in [r["model_version"] for r in answers] and time.monotonic() < end:
        frames.send_multipart(codec.frame_parts(frame(seq, 0)))
        answers += receive(results, 1, 2)
        seq += 1
    versions = [r["model_version"] for r in answers]
    assert "v2" in versions and versions[versions.index("v2"):] == ["v2"] * (len(versions) - versions.index("v2"))
    assert answers and all(r["outcome"] == "inferred" for r in answers)  # every view inferred across the switch
