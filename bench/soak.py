"""A shift compressed: tens of thousands of containers through the real line (supervisor,
stages, ZeroMQ, SQLite, the relay on a pseudo-terminal) with kill -9 of a random stage every
30-60 s and an image quota small enough that the writer purges all the time. The engine is
a stand-in (no model: a marked view is a defect, so rejects are known) and the views are
small, so that the line's own plumbing, not inference, is what runs for hours.

Prints gated / decided / recorded / pulsed / alarmed counts, silent misses, the longest gap
between systemd watchdog pings, and each process's memory after warm-up and at the end (a
restarted stage: its latest process, after its own warm-up), with a JSON summary as the
last line. Run it from a copy of the tree that nobody edits: a restarted stage imports the
code on disk at that moment. Goals (issue 12): zero undecided, zero unrecorded, zero silent
misses, memory growth under 10%, no watchdog gap longer than half of WatchdogSec.

    python -m bench.soak [--containers 50000] [--rate 20] [--kill-every 30 60] [--seed 1]

CI runs a short one (tests/test_soak.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from bench import free_port
from bench.pipeline import VOCABULARY, BenchStation, NullEngine

ROOT = Path(__file__).resolve().parent.parent
SIDE = 64  # pixels per view side: the plumbing, not the pixels, is under test
DEFECT_EVERY = 10  # every 10th container has a marked view: a known reject
WATCHDOG_SEC = 30  # as packaging/edge.service
STAGES = ("station", "worker-0", "worker-1", "decision", "relay", "writer")
log = logging.getLogger("soak")


class MarkEngine(NullEngine):
    """No model: a view whose first pixel is 255 has a defect, every other view is clean."""

    version = "soak"

    def infer(self, images):
        from engines.detections import Detections

        out = []
        for image in images:
            if image[0, 0, 0] == 255:
                out.append(Detections(np.array([[1, 1, 9, 9]], np.float32), np.array([0.9], np.float32),
                                      np.array([0]), VOCABULARY))
            else:
                out.append(Detections.empty(VOCABULARY))
        return out


class SoakStation(BenchStation):
    """Six small views per container at `rate` containers/s; every DEFECT_EVERY-th is marked."""

    def __init__(self, config, rate: float) -> None:
        self.rate = rate
        rng = np.random.default_rng(0)
        self.views = [rng.integers(0, 200, (SIDE, SIDE, 3), np.uint8) for _ in range(6)]
        self.marked = self.views[0].copy()
        self.marked[0, 0, 0] = 255
        self.cameras = {c.view: c.id for c in config.cameras}
        self.counts = {"containers": 0}

    def pixels(self, seq: int, view: int) -> np.ndarray:
        return self.marked if view == 0 and seq % DEFECT_EVERY == 0 else self.views[view]


def write_config(data: Path, rate: float, workers: int) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"].update(data_dir=str(data), keep_images="all", image_format="png", quota_gb=0.002,
                          min_free_mb=0)
    raw["line"].update(speed_cpm=rate * 60, travel_time_ms=1500, relay_lead_ms=30, rotation_delay_ms=0)
    raw["pipeline"]["workers"] = workers
    raw["engine"].update(model="soak", thresholds={})
    raw["metrics"]["address"] = f"127.0.0.1:{free_port()}"
    for cam in raw["cameras"]:
        cam.update(width=SIDE, height=SIDE)
    path = data.parent / "soak.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def serve(config_path: Path, containers: int, rate: float, engine=MarkEngine) -> None:
    """The line itself (a child process, so that its supervisor owns its signals)."""
    from functools import partial

    from edge.config import load_config
    from edge.supervisor import Supervisor

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(config_path)
    options = {"engine_factory": engine, "station_factory": partial(SoakStation, rate=rate)}
    Supervisor(config, containers=containers, options=options, echo=print).run()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def stage_pids(data: Path) -> dict[str, int]:
    try:
        return json.loads((data / "run" / "stages.json").read_text())
    except (OSError, ValueError):
        return {}


def audit(data: Path) -> list[dict]:
    rows = []
    for path in sorted((data / "relay").glob("outputs.jsonl*"), reverse=True):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def tally(data: Path, summary_line: str) -> dict:
    with sqlite3.connect(data / "edge.db") as db:
        rows = db.execute("SELECT seq, decision FROM containers").fetchall()
        events = dict(db.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
        purged = db.execute("SELECT count(*) FROM views WHERE image_state = 'purged'").fetchone()[0]
    run = data / "run"
    first, last = int((run / "first_seq").read_text()), int((run / "last_seq").read_text())
    gated = last - first + 1
    seqs = [seq for seq, _ in rows if first <= seq <= last]
    rejects = {seq for seq, decision in rows if decision == "reject" and first <= seq <= last}
    outputs = audit(data)
    pulsed = {r["seq"] for r in outputs if r["kind"] == "pulse"}
    alarmed = {r["seq"] for r in outputs if r["kind"] in ("not ejected", "missed")}
    decided = int(summary_line.split()[1]) if summary_line.startswith("done:") else None
    return {"gated": gated, "decided": decided, "recorded": len(set(seqs)), "duplicate_rows": len(seqs) - len(set(seqs)),
            "rejects": len(rejects), "pulsed": len(rejects & pulsed), "alarmed": len(rejects & alarmed),
            "silent": len(rejects - pulsed - alarmed), "undecided": gated - (decided or 0),
            "unrecorded": gated - len(set(seqs)), "events": events, "images_purged": purged}


def soak(args) -> dict:
    tmp = Path(args.data or tempfile.mkdtemp(prefix="soak-"))
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = write_config(data, args.rate, args.workers)
    notify_path = tmp / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    pings: list[float] = []
    threading.Thread(target=lambda: [pings.append(time.monotonic()) for m in iter(lambda: notify.recv(4096), b"")
                                     if b"WATCHDOG=1" in m], daemon=True).start()
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": str(WATCHDOG_SEC * 1_000_000)}
    out = open(tmp / "line.log", "w")
    line = subprocess.Popen([sys.executable, "-m", "bench.soak", "--serve", str(config), "--containers",
                             str(args.containers), "--rate", str(args.rate)], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    rng = random.Random(args.seed)
    started = time.monotonic()
    memory: dict[str, list] = {}  # name -> [pid, seen since, MB after warm-up, last MB] of its latest incarnation
    kills: dict[str, int] = {}
    next_kill = started + rng.uniform(*args.kill_every)
    next_sample = started + args.warmup
    expected_s = args.containers / args.rate
    while line.poll() is None:
        time.sleep(0.2)
        now = time.monotonic()
        pids = stage_pids(data)
        if now >= next_sample and pids:
            next_sample = now + 10
            for name, pid in [("supervisor", line.pid), *pids.items()]:
                mb = rss_mb(pid)
                if mb is None:
                    continue
                if memory.get(name, [None])[0] != pid:  # a new incarnation: measured after its own warm-up
                    memory[name] = [pid, now, None, None]
                if memory[name][2] is None and now - memory[name][1] >= args.warmup:
                    memory[name][2] = mb
                memory[name][3] = mb
        if now >= next_kill and now - started < expected_s - 10 and pids:
            next_kill = now + rng.uniform(*args.kill_every)
            victim = rng.choice([s for s in STAGES if s in pids])
            try:
                os.kill(pids[victim], signal.SIGKILL)
                kills[victim] = kills.get(victim, 0) + 1
                log.info("%.0f s: kill -9 %s", now - started, victim)
            except ProcessLookupError:
                pass
        if now - started > expected_s * 2 + 300:
            line.kill()
            raise SystemExit("the line did not finish: see " + str(tmp / "line.log"))
    out.close()
    text = (tmp / "line.log").read_text().splitlines()
    summary = next((t for t in reversed(text) if t.startswith("done:")), "")
    result = tally(data, summary)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    result.update({
        "containers": args.containers, "rate": args.rate, "wall_s": round(time.monotonic() - started, 1),
        "kills": kills, "exit_code": line.returncode, "watchdog_pings": len(pings),
        "longest_watchdog_gap_s": round(max(gaps), 2) if gaps else None, "watchdog_sec": WATCHDOG_SEC,
        "memory_mb": {k: [round(a, 1), round(b, 1)] for k, (_, _, a, b) in memory.items() if a},
        "memory_growth_pct": {k: round(100 * (b - a) / a, 1) for k, (_, _, a, b) in memory.items() if a},
        "memory_window_s": {k: round(time.monotonic() - t - args.warmup) for k, (_, t, a, _) in memory.items()
                            if a},
        "data": str(tmp),
    })
    return result


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=20.0, help="containers/s at the gate")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(30.0, 60.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the first memory sample")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", help="folder for the line's data (default: a new temporary one)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.containers, args.rate)
        return
    r = soak(args)
    print(f"{r['containers']} containers at {r['rate']:g}/s in {r['wall_s']:.0f} s; kill -9: {r['kills']}")
    print(f"gated {r['gated']}, decided {r['decided']}, recorded {r['recorded']} "
          f"(duplicate rows {r['duplicate_rows']}), rejects {r['rejects']}: "
          f"pulsed {r['pulsed']}, alarmed {r['alarmed']}, silent misses {r['silent']}")
    print(f"undecided {r['undecided']}, unrecorded {r['unrecorded']}; events {r['events']}; "
          f"images purged {r['images_purged']}")
    print(f"watchdog: {r['watchdog_pings']} pings, longest gap {r['longest_watchdog_gap_s']} s "
          f"(WatchdogSec {WATCHDOG_SEC}, goal under {WATCHDOG_SEC / 2:g} s)")
    for name, (a, b) in r["memory_mb"].items():
        print(f"memory {name}: {a:.0f} -> {b:.0f} MB ({r['memory_growth_pct'][name]:+.1f}%) over the last "
              f"{r['memory_window_s'][name]} s of its latest process (after {args.warmup:.0f} s warm-up)")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
