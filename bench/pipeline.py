"""Pipeline figures: (a) plumbing with a null engine, (b) the real engine on ONNX Runtime CPU,
(c) relay timing error. Prints numbers; asserts nothing. The machine is shared: run it on
a quiet PC for figures to quote, and compare each against the 10 containers/s line (60 views/s).

    python -m bench.pipeline plumbing [--containers 600] [--rate 120] [--workers 2]
    python -m bench.pipeline engine   [--containers 20] [--rate 0.5] [--model models/<shipped default>]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # this file is bench/pipeline.py; `import pipeline` means the package

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from camera.frame import Frame  # noqa: E402
from engines.detections import Detections  # noqa: E402
from engines.registry import DEFAULT_MODEL, SHIPPED  # noqa: E402

VOCABULARY = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")
LINE_VIEWS_S = 60.0  # a 10 containers/s line


class NullEngine:
    """No model: every view comes back clean at once (the plumbing's ceiling)."""

    version = "null"
    vocabulary = VOCABULARY

    def __init__(self, config=None) -> None:
        pass

    def infer(self, images):
        return [Detections.empty(VOCABULARY) for _ in images]

    def close(self) -> None:
        pass


class BenchStation:
    """Six fixed 700x820x3 views per container, gated at `rate` containers/s (no rendering cost)."""

    def __init__(self, config, rate: float) -> None:
        self.rate = rate
        rng = np.random.default_rng(0)
        try:
            from camera.synth import GlassRenderer

            renderer = GlassRenderer()
            container = renderer.container(7, 1)
            self.views = [renderer.render(container, v).image for v in range(6)]
        except Exception:  # the renderer is optional for the plumbing figure
            self.views = [rng.integers(0, 255, (820, 700, 3), np.uint8) for _ in range(6)]
        self.cameras = {c.view: c.id for c in config.cameras}
        self.counts = {"containers": 0}

    def run(self, emit, stop: threading.Event, containers: int | None = None, on_gate=None) -> None:
        start = time.monotonic_ns()
        for seq in range(1, (containers or 10**9) + 1):
            if stop.is_set():
                break
            due = start + int((seq - 1) * 1e9 / self.rate)
            while time.monotonic_ns() < due:
                time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9 - 0.0005))
            t_gate = time.monotonic_ns()
            self.counts["containers"] += 1
            if on_gate is not None:
                on_gate(seq, t_gate)
            for view in range(len(self.views)):
                emit(Frame(seq, view, self.cameras[view], t_gate, time.monotonic_ns(), self.pixels(seq, view)))

    def pixels(self, seq: int, view: int) -> np.ndarray:
        return self.views[view]

    def stats(self) -> dict:
        return dict(self.counts)

    def close(self) -> None:
        pass


def bench_config(data: Path, rate: float, workers: int, travel_ms: float, model: str, threshold: float):
    from edge.config import parse_config

    return parse_config(bench_raw(data, rate, workers, travel_ms, model, threshold), ROOT / "config.yaml")


def bench_raw(data: Path, rate: float, workers: int, travel_ms: float, model: str, threshold: float) -> dict:
    """config.yaml as a dict, set for a bench run (bench/ui_live.py writes it out for `edge ui`)."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"]["data_dir"] = str(data)
    raw["line"].update(speed_cpm=min(rate * 60, 1200), travel_time_ms=travel_ms)
    raw["pipeline"]["workers"] = workers
    raw["engine"].update(model=model, default_threshold=threshold, thresholds={})
    raw["metrics"]["address"] = "127.0.0.1:0"
    return raw


def figures(data: Path, views_per_container: int = 6) -> dict:
    with sqlite3.connect(data / "edge.db") as db:
        rows = db.execute("SELECT t_gate, latency_ms, decision, reason FROM containers").fetchall()
    gates = [datetime.fromisoformat(t).timestamp() for t, *_ in rows]
    done = [g + lat / 1e3 for g, (_, lat, *_) in zip(gates, rows)]
    lat = np.array([r[1] for r in rows])
    span = max(done) - min(gates)
    reasons: dict[str, int] = {}
    for *_, decision, reason in rows:
        reasons[f"{decision}/{reason}"] = reasons.get(f"{decision}/{reason}", 0) + 1
    return {"containers": len(rows), "containers_s": len(rows) / span, "views_s": len(rows) * views_per_container / span,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "outcomes": reasons}


def relay_errors(data: Path) -> np.ndarray:
    path = data / "relay" / "outputs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return np.array([r["error_ms"] for r in rows if r["kind"] == "pulse"])


def run_line(config, containers: int, options: dict) -> float:
    from edge.supervisor import Supervisor

    t0 = time.monotonic()
    Supervisor(config, containers=containers, options=options, echo=lambda line: None).run()
    return time.monotonic() - t0


def plumbing(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = bench_config(Path(tmp), args.rate, args.workers, 5000, "null", 0.5)
        wall = run_line(config, args.containers, {"engine_factory": NullEngine,
                                                    "station_factory": partial(BenchStation, rate=args.rate)})
        f = figures(Path(tmp))
    gb_s = f["views_s"] * 820 * 700 * 3 / 1e9
    print(f"(a) plumbing, null engine, {args.workers} workers, gate at {args.rate:g} containers/s, "
          f"{f['containers']} containers ({wall:.0f} s wall incl. start/stop):")
    print(f"    {f['views_s']:.0f} views/s = {f['containers_s']:.1f} containers/s, {gb_s:.2f} GB/s of pixels "
          f"station->workers (+ results->decision->storage); {f['views_s'] / LINE_VIEWS_S:.1f}x a 10 containers/s line")
    print(f"    gate->decision p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms; outcomes {f['outcomes']}")


def engine(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = str(Path(args.model).resolve())
        config = bench_config(Path(tmp), args.rate, args.workers, args.travel_ms, model, args.threshold)
        config = config.model_copy(update={"engine": config.engine.model_copy(update={"imgsz": args.imgsz})})
        wall = run_line(config, args.containers, {"station_factory": partial(BenchStation, rate=args.rate)})
        f = figures(Path(tmp))
        errors = relay_errors(Path(tmp))
    print(f"(b) ONNX Runtime CPU, {Path(model).name} at {args.imgsz}, {args.workers} worker(s), gate at "
          f"{args.rate:g} containers/s, {f['containers']} containers ({wall:.0f} s wall):")
    print(f"    {f['containers_s']:.2f} containers/s sustained ({f['views_s']:.1f} views/s); gate->decision "
          f"p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms; outcomes {f['outcomes']}")
    print(f"    = {f['views_s'] / LINE_VIEWS_S:.2f}x a 10 containers/s line")
    if len(errors):
        print(f"(c) relay timing error (pulse sent - due), {len(errors)} pulses: p50 {np.percentile(errors, 50):.3f} ms, "
              f"p99 {np.percentile(errors, 99):.3f} ms, max {errors.max():.3f} ms (10 containers/s: 100 ms apart)")
    else:
        print("(c) no pulses (no rejects at this threshold); use --threshold 0.01")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    a = sub.add_parser("plumbing", help="(a) null engine")
    a.add_argument("--containers", type=int, default=600)
    a.add_argument("--rate", type=float, default=120.0, help="containers/s at the gate")
    a.add_argument("--workers", type=int, default=2)
    b = sub.add_parser("engine", help="(b) real engine, and (c) relay timing")
    b.add_argument("--containers", type=int, default=20)
    b.add_argument("--rate", type=float, default=0.5)
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--model", default=str(SHIPPED / DEFAULT_MODEL))
    b.add_argument("--imgsz", type=int, default=640)
    b.add_argument("--travel-ms", type=float, default=3000)
    b.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    plumbing(args) if args.what == "plumbing" else engine(args)


if __name__ == "__main__":
    main()
