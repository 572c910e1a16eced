"""Helpers for the line tests (no tests here): a tiny real model package, a test config,
a reader on the relay's pseudo-terminal, and database queries."""

from __future__ import annotations

import subprocess
import sys
import socket
import sqlite3
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
IMGSZ = 320
ON = bytes.fromhex("A00101A2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_package(path: Path, version: str = "tiny-1"):
    """A real RTVP 'tiny' package with random weights: its scores sit near 0.08 on every view,
    so a class threshold of 0.05 rejects and 0.5 passes (the tests choose)."""
    import torch

    from camera.synth import CLASSES
    from engines.package import ModelPackage
    from engines.rtvp import RTVPConfig, build_model

    cfg = RTVPConfig(scale="tiny", imgsz=IMGSZ)
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    for i in range(3):
        state[f"head.contrast.{i}.bias"].fill_(-6.0)
        state[f"head.contrast.{i}.logit_scale"].fill_(3.5)
    emb = np.random.default_rng(0).normal(size=(len(CLASSES), cfg.text_dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return ModelPackage.create(path, version=version, state_dict=state, arch=cfg.to_dict(),
                               vocabulary=list(CLASSES), embeddings=emb)


def ship_onnx(package) -> None:
    """Export the ONNX graph once (the slow part) and ship it in the package as model.onnx."""
    from engines.config import EngineConfig
    from engines.runtimes import ensure_onnx

    scratch = package.path.parent / "scratch"
    onnx = ensure_onnx(package, EngineConfig(imgsz=IMGSZ), scratch, data_dir=scratch)
    package.add_file("model.onnx", onnx)


def line_config(tmp: Path, package: Path, *, threshold: float = 0.05, speed_cpm: float = 60,
                travel_ms: float = 1500, **overrides) -> Path:
    """The shipped config.yaml with the data folder, speed and model changed for a test."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"]["data_dir"] = str(tmp / "data")
    raw["line"].update(speed_cpm=speed_cpm, travel_time_ms=travel_ms)
    raw["engine"].update(model=str(package), imgsz=IMGSZ, threads=1,
                         default_threshold=threshold, thresholds={})
    raw["metrics"]["address"] = f"127.0.0.1:{free_port()}"
    for section, values in overrides.items():
        raw[section].update(values)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


READER = r"""
import ctypes, os, select, signal, sys, time
ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # dies with the test
try:  # stamp arrivals as promptly as the relay sends them, whatever the machine's load
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
except OSError:
    pass
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
on, data, stamps = bytes.fromhex(sys.argv[2]), b"", []
report = lambda *_: (print(" ".join(map(str, stamps)), flush=True), os._exit(0))
signal.signal(signal.SIGTERM, report)
print("ready", flush=True)
end = time.monotonic() + 900
while time.monotonic() < end:
    if select.select([fd], [], [], 0.5)[0]:
        t = time.monotonic_ns()
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        except OSError:  # the relay closed its side: nothing more will come
            chunk = b""
        if not chunk:
            time.sleep(0.1)  # never spin at real-time priority; wait for SIGTERM
            continue
        before = data.count(on)
        data += chunk
        stamps += [t] * (data.count(on) - before)
report()
"""


class PtyReader:
    """Reads the relay's pseudo-terminal in its own process (no GIL shared with the test) and
    stamps each relay-on command with the monotonic clock, which all processes share."""

    def __init__(self, name: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", READER, name, ON.hex()],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.on_times: list[int] = []

    def close(self) -> None:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.on_times = [int(t) for t in out.split()]


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def db_rows(data_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "edge.db") as db:
        return db.execute(sql).fetchall()
