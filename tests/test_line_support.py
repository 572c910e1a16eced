"""Helpers for the line tests (no tests here): a tiny real model package, a test config,
a reader on the relay's pseudo-terminal, and database queries."""

from __future__ import annotations

import os
import select
import socket
import sqlite3
import threading
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


def export_cache(package, cache_dir: Path) -> None:
    """Export the ONNX graph once (the slow part) into a cache the tests copy."""
    from engines.config import EngineConfig
    from engines.runtimes import load_engine

    load_engine(package, EngineConfig(imgsz=IMGSZ, threads=1), cache_dir).close()


def line_config(tmp: Path, package: Path, *, threshold: float = 0.05, speed_cpm: float = 60,
                travel_ms: float = 1500, **overrides) -> Path:
    """The shipped config.yaml with the data folder, speed and model changed for a test."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"]["data_dir"] = str(tmp / "data")
    raw["line"].update(speed_cpm=speed_cpm, travel_time_ms=travel_ms)
    raw["engine"].update(model=str(package), imgsz=IMGSZ, threads=1,
                         thresholds={k: threshold for k in raw["engine"]["thresholds"]})
    raw["metrics"]["address"] = f"127.0.0.1:{free_port()}"
    for section, values in overrides.items():
        raw[section].update(values)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class PtyReader(threading.Thread):
    """Reads the relay's pseudo-terminal and stamps each relay-on command (monotonic ns)."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.fd = os.open(name, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        self.on_times: list[int] = []
        self.data = b""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            t = time.monotonic_ns()
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            before = self.data.count(ON)
            self.data += chunk
            self.on_times += [t] * (self.data.count(ON) - before)

    def close(self) -> None:
        self.stop.set()
        self.join(2)
        os.close(self.fd)


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def db_rows(data_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "edge.db") as db:
        return db.execute(sql).fetchall()
