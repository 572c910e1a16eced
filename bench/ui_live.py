"""The operator station's cost to the line: the same line run twice, alone and with `edge ui`
serving three live SSE connections, and how soon a decision reaches those clients.

Each run is a fresh line (bench/pipeline.py's null-cost station and a scripted engine that
rejects about one container in ten) for a fixed number of containers at a fixed gate rate.
The clients are three real HTTP clients (httpx, streaming `/events` as a browser's
EventSource does, signed in with a session cookie), not headless browsers: on a 2-core PC
three chromiums would measure chromium. Decision-to-screen latency: the client's clock when
a reject card's event arrives minus the decision's time in the database (gate + gate-to-
decision latency), same machine. Prints numbers; asserts nothing.

    python -m bench.ui_live [--containers 300] [--rate 40] [--workers 2] [--clients 3] [--repeats 1]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # run as a file: `import pipeline` must mean the package

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench import free_port  # noqa: E402
from bench.pipeline import VOCABULARY, BenchStation, NullEngine, bench_raw, figures, run_line  # noqa: E402
from engines.detections import Detections  # noqa: E402

log = logging.getLogger("bench.ui_live")
PASSWORD = "bench password"
REJECT_ONE_VIEW_IN = 30  # about one container in ten rejected: reject cards to time
SEQ = re.compile(r'data-seq="(\d+)"')


class RejectingEngine(NullEngine):
    """No model: one view in REJECT_ONE_VIEW_IN comes back with a defect at 0.9, the rest clean."""

    def __init__(self, config=None) -> None:
        self.calls = 0

    def infer(self, images):
        out = []
        for _ in images:
            self.calls += 1
            if self.calls % REJECT_ONE_VIEW_IN == 1:
                out.append(Detections(np.array([[10, 10, 60, 60]], np.float32), np.array([0.9], np.float32),
                                      np.array([0]), VOCABULARY))
            else:
                out.append(Detections.empty(VOCABULARY))
        return out


def line_config(data: Path, args):
    """Written to data/../config.yaml (for `edge ui`) and parsed (for the in-process supervisor)."""
    from edge.config import parse_config

    raw = bench_raw(data, args.rate, args.workers, 5000, "null", 0.5)
    raw["metrics"]["address"] = f"127.0.0.1:{free_port()}"  # the station scrapes it, as on a line
    raw["ui"] = {"port": free_port()}
    path = data.parent / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, parse_config(raw, path)


class Client(threading.Thread):
    """One signed-in browser's live connection: the time each reject card arrives, by seq."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, stop
        self.seen: dict[int, float] = {}
        self.connected = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=httpx.Timeout(5.0, read=None)) as http:
            token = re.search(r'name="csrf-token" content="([^"]+)"', http.get("/login").text)[1]
            http.post("/login", data={"name": "bench", "password": PASSWORD, "csrf": token})
            try:
                with http.stream("GET", "/events") as stream:
                    self.connected.set()
                    for line in stream.iter_lines():
                        found = SEQ.search(line) if line.startswith("data:") else None
                        if found and int(found[1]) not in self.seen:
                            self.seen[int(found[1])] = time.time()
                        if self.stop.is_set():
                            return
            except httpx.HTTPError as exc:
                if not self.stop.is_set():  # after the run the station is stopped under us: expected
                    log.warning("live connection lost during the run: %s", exc)


def start_ui(config: Path, port: int, log_path: Path) -> subprocess.Popen:
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "ui", "--config", str(config)],
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("edge ui exited:\n" + log_path.read_text()[-3000:])
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=1).status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("edge ui did not listen within 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decided_at(data: Path) -> dict[int, float]:
    """Each container's decision time (epoch seconds): gate + gate-to-decision latency."""
    with sqlite3.connect(data / "edge.db") as db:
        rows = db.execute("SELECT seq, t_gate, latency_ms FROM containers").fetchall()
    return {seq: datetime.fromisoformat(t + "+00:00").timestamp() + ms / 1e3 for seq, t, ms in rows}


def one_run(args, with_ui: bool) -> dict:
    options = {"engine_factory": RejectingEngine, "station_factory": partial(BenchStation, rate=args.rate)}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        config_path, config = line_config(data, args)
        ui, clients, stop = None, [], threading.Event()
        if with_ui:
            from edge.ui.users import add_user
            from storage.db import open_database

            db = open_database(config.database_url)
            add_user(db, "bench", "operator", PASSWORD)
            db.close()
            ui = start_ui(config_path, config.ui.port, Path(tmp) / "ui.log")
            clients = [Client(f"http://127.0.0.1:{config.ui.port}", stop) for _ in range(args.clients)]
            for c in clients:
                c.start()
            for c in clients:
                if not c.connected.wait(30):
                    raise SystemExit("a client did not connect within 30 s")
        try:
            ui_cpu = cpu_seconds(ui.pid) if ui is not None else 0.0
            wall = run_line(config, args.containers, options)
            if with_ui:
                time.sleep(1.0)  # the last events may still be on their way to the clients
                ui_cpu = cpu_seconds(ui.pid) - ui_cpu
        finally:
            stop.set()
            if ui is not None:
                ui.terminate()
                ui.wait(10)
        f = figures(data)
        f["wall_s"] = wall
        if with_ui:
            decided = decided_at(data)
            f["delays_ms"] = [1e3 * (t - decided[seq]) for c in clients for seq, t in c.seen.items() if seq in decided]
            f["cards"] = [len(c.seen) for c in clients]
            f["ui_cpu_s"] = ui_cpu
            f["rejects"] = sum(n for key, n in f["outcomes"].items() if key.startswith("reject/"))
    return f


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=300)
    parser.add_argument("--rate", type=float, default=40.0, help="containers/s at the gate")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=3, help="live SSE connections open")
    parser.add_argument("--repeats", type=int, default=1, help="alone / with pairs, alternated")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
    alone, shared = [], []
    for _ in range(args.repeats):
        alone.append(one_run(args, with_ui=False))
        shared.append(one_run(args, with_ui=True))
    for name, runs in (("line alone", alone), (f"line + edge ui + {args.clients} SSE clients", shared)):
        rates = [r["containers_s"] for r in runs]
        print(f"{name}: {np.mean(rates):.2f} containers/s ({', '.join(f'{r:.2f}' for r in rates)}) of "
              f"{args.rate:g} gated, {args.containers} containers/run; gate->decision p50 "
              f"{np.mean([r['p50_ms'] for r in runs]):.1f} ms, p99 {np.mean([r['p99_ms'] for r in runs]):.1f} ms")
    ratio = np.mean([r["containers_s"] for r in shared]) / np.mean([r["containers_s"] for r in alone])
    print(f"throughput with the station: {100 * ratio:.1f} % of alone (goal: >= 95 %)")
    delays = np.array([d for r in shared for d in r["delays_ms"]])
    cards = [n for r in shared for n in r["cards"]]
    rejects = sum(r["rejects"] for r in shared)
    if len(delays):
        print(f"decision to client ({len(delays)} reject events over {len(cards)} connections; {rejects} rejects, "
              f"cards per connection {cards}): p50 {np.percentile(delays, 50):.0f} ms, "
              f"p99 {np.percentile(delays, 99):.0f} ms, max {delays.max():.0f} ms")
    else:
        print("decision to client: no reject events arrived")
    cpu, wall = sum(r["ui_cpu_s"] for r in shared), sum(r["wall_s"] + 1.0 for r in shared)
    print(f"edge ui process: {cpu:.1f} CPU-s over {wall:.0f} s of runs ({100 * cpu / wall:.0f} % of one core)")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
