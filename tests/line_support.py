"""Helpers for the line tests (a module, not a test file): a tiny real model package, a test
config, a reader on the relay's pseudo-terminal, database queries, and `wait_for`, the one
way any test waits for something to happen."""

from __future__ import annotations

import json
import os
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zmq

from bench import free_port
from pipeline.metrics_read import scrape

ROOT = Path(__file__).resolve().parent.parent
IMGSZ = 320
ON = bytes.fromhex("A00101A2")
TOLERANCE_NS = 10_000_000  # a pulse within 10 ms of its due time, where the relay writes it
# ...and seen by the reader on the other side of the pseudo-terminal: the kernel's tty layer
# hands bytes over in a worker thread, which a 2-core VM delayed by 24 ms once on a quiet
# machine (the relay's own stamp: 0.0 ms), so the reader is the witness that each pulse went
# out, with this slack, not the clock of the promise.
READER_SLACK_NS = 50_000_000


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
def device():  # a restarted relay opens a new pseudo-terminal and writes its name here
    try:
        return open(sys.argv[1]).read().strip()
    except OSError:
        return ""
name = device()
fd = os.open(name, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
on, data, stamps, closed = bytes.fromhex(sys.argv[2]), b"", [], set()
report = lambda *_: (print(" ".join(map(str, stamps)), flush=True), os._exit(0))
signal.signal(signal.SIGTERM, report)
print("ready", flush=True)
end = time.monotonic() + 900
while time.monotonic() < end:
    if select.select([fd], [], [], 0.05)[0]:
        t = time.monotonic_ns()
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        except OSError:  # the relay closed its side: nothing more will come from this one
            chunk = b""
        if chunk:
            before = data.count(on)
            data += chunk
            stamps += [t] * (data.count(on) - before)
            continue
        if name not in closed:  # every byte the relay wrote to this terminal has been read
            closed.add(name)
            print("closed", name, flush=True)
        time.sleep(0.005)  # the relay's side is closed: never spin at real-time priority
    latest = device()
    if latest and latest != name:
        try:
            new = os.open(latest, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        os.close(fd)
        fd, name, data = new, latest, b""
report()
"""


class PtyReader:
    """Reads the relay's pseudo-terminal in its own process (no GIL shared with the test) and
    stamps each relay-on command with the monotonic clock, which all processes share.
    `name_file` is <data_dir>/run/relay.pty: a restarted relay's new terminal is followed."""

    def __init__(self, name_file: Path) -> None:
        self.name_file = name_file
        self.proc = subprocess.Popen([sys.executable, "-c", READER, str(name_file), ON.hex()],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.on_times: list[int] = []

    def close(self, timeout: float = 30) -> None:
        """Collect the stamps once the relay's last terminal is closed and read to the end
        (call it after `edge run` has exited): no pulse is left unread, whatever the load."""
        latest, lines = f"closed {self.name_file.read_text().strip()}", b""
        fd, end = self.proc.stdout.fileno(), time.monotonic() + timeout
        while latest.encode() not in lines.splitlines():
            if not select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
                raise AssertionError(f"the pty reader never saw the relay's {latest[7:]} closed")
            lines += os.read(fd, 4096)
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.on_times = [int(t) for t in out.splitlines()[-1].split()] if out.strip() else []  # the last line


def wait_for(predicate, timeout: float, what: str, every: float = 0.002):
    """`predicate()`'s first true value, asked every `every` s until `timeout` s; AssertionError
    naming `what`. A test waits on the condition it needs, never on a sleep of a guessed length."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def ipc_socket(ctx: zmq.Context, kind: int, run_dir: Path, name: str, bind: bool = False) -> zmq.Socket:
    """A socket on the line's endpoint <run_dir>/<name>: bound, as the stage that owns it does,
    or connected, as a stage that sends to it does."""
    sock = ctx.socket(kind)
    (sock.bind if bind else sock.connect)(f"ipc://{run_dir}/{name}")
    return sock


def db_rows(data_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "edge.db") as db:
        return db.execute(sql).fetchall()


def start(tmp_path: Path, model: Path, *args: str, env: dict | None = None, travel_ms: float = 1500,
          speed_cpm: float = 60, **overrides):
    """Start `edge run`; the pty reader is listening before the station takes its first container."""
    config = line_config(tmp_path, model / "tiny-1", travel_ms=travel_ms, speed_cpm=speed_cpm, **overrides)
    data = Path(yaml.safe_load(config.read_text())["storage"]["data_dir"])
    log = open(tmp_path / "edge.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config), *args],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ, **(env or {})})
    pty = data / "run" / "relay.pty"
    wait_for(lambda: pty.exists() or proc.poll() is not None, 180, "the relay to open")
    assert proc.poll() is None, (tmp_path / "edge.log").read_text()[-3000:]
    reader = PtyReader(pty)
    wait_for(lambda: "station" in stages(data) or proc.poll() is not None, 180, "the line to start")
    assert proc.poll() is None, (tmp_path / "edge.log").read_text()[-3000:]
    return proc, data, config, reader


def finish(proc: subprocess.Popen, tmp_path: Path, timeout: float) -> int:
    """The exit code, or a failure that shows the end of the line's log."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("edge run did not finish:\n" + (tmp_path / "edge.log").read_text()[-4000:])


def stages(data: Path) -> dict:
    try:
        return json.loads((data / "run" / "stages.json").read_text())
    except (OSError, ValueError):
        return {}


def journal(data: Path, kind: str = "pulse") -> list[dict]:
    """The relay's audit lines of `kind`; a last line still being written (or held up by a full
    disk) is not one yet, as for the line's own readers."""
    path = data / "relay" / "outputs.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def counted(address: str, metric: str, **wanted: str) -> float:
    """The sum of `metric`'s samples whose labels include `wanted`, from the line's metrics
    endpoint (which only reads files, so it answers on a full disk too); 0 before it serves."""
    try:
        samples = scrape(address).get(metric, [])
    except OSError:
        return 0
    return sum(v for labels, v in samples if wanted.items() <= labels.items())


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
    assert explain_late(data, pulses) <= 2, "more than two pulses late for want of CPU"
    due = sorted(p["due_ns"] for p in pulses)
    seen = [t - d for t, d in zip(sorted(reader.on_times), due)]
    assert all(abs(e) < READER_SLACK_NS for e in seen), sorted(seen, key=abs)[-3:]


def explain_late(data: Path, pulses: list[dict]) -> int:
    """Asserts that no pulse left early or past the reader's slack, and that each late one has a
    cause the line can see; returns how many of them the OS starved.

    A pulse is on time if it left within 10 ms of the earliest moment its controller could
    fire it: its due time, the start of the controller that fired it (its ejector time fell
    while none was up), or its arm's arrival (journalled "arrived late"; after a restart the
    decision stage's socket takes some ms to reconnect). pipeline/pulses.py fires such a pulse
    at once, by design. Otherwise the controller must have journalled a stall over its due
    time at least as long as it was late: the OS kept it off the CPU (a shared machine
    throttles even SCHED_FIFO processes). An unexplained late pulse is a fault.
    """
    sent = [p["sent_ns"] - p["due_ns"] for p in pulses]
    assert all(-TOLERANCE_NS < e < READER_SLACK_NS for e in sent), sorted(sent, key=abs)[-3:]
    stalls = journal(data, "stalled")
    arrivals = {r["seq"]: r["at_ns"] for r in journal(data, "arrived late")}
    ups = sorted(r["ready_ns"] for r in journal(data, "started"))
    starved = 0
    for p in pulses:
        firing_up = max((t for t in ups if t <= p["sent_ns"]), default=0)
        learnt = max(p["due_ns"], firing_up, arrivals.get(p["seq"], 0))
        if p["sent_ns"] - learnt < TOLERANCE_NS:
            continue
        late = p["sent_ns"] - p["due_ns"]
        assert any(s["from_ns"] <= p["sent_ns"] and s["to_ns"] >= p["due_ns"] and s["ms"] * 1e6 >= late
                   for s in stalls), f"container {p['seq']}: pulse {late / 1e6:.1f} ms late with no cause " \
                                     f"in sight (stalls: {stalls}; controllers up at {ups})"
        starved += 1
    return starved
