"""Station throughput and latency with six cameras of pylon's emulator at 700 x 820 (W x H).

Each emulated camera serves rendered glass images from a folder, software-triggered.
For each line speed: containers per second completed with all six views, views
missing, images that matched no container, and gate-to-last-view latency p50/p99
(includes the rotation delay before the right bank fires) and trigger-to-image p50/p99.

    python -m bench.station [--rates 5,10,15,20,30] [--containers 100] [--rotation-ms 150]

A fast line is 10 containers/s (600/min). The numbers depend on the machine's load:
say so when you quote them.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from pydantic import TypeAdapter

from camera.config import CameraConfig, GateConfig
from camera.station import build_station

WIDTH, HEIGHT = 700, 820


def image_folder(root: Path, count: int = 8) -> Path:
    """Glass images for the emulator to serve, as BMP: it decodes the file for every frame."""
    from camera.synth import GlassRenderer

    renderer = GlassRenderer(width=WIDTH, height=HEIGHT)
    for seq in range(count):
        view = renderer.render(renderer.container(1, seq), seq % 6)
        cv2.imwrite(str(root / f"{seq:03d}.bmp"), view.image)  # PNG decoding costs the emulator ~50 ms a frame
    return root


def run_rate(rate: float, containers: int, rotation_ms: float, folder: Path, timeout_ms: int) -> dict:
    cameras = [TypeAdapter(CameraConfig).validate_python(
        {"id": f"emu-{v}", "driver": "pylon", "view": v, "bank": "left" if v < 3 else "right",
         "serial": f"0815-000{v}", "width": WIDTH, "height": HEIGHT, "emulate_images": str(folder),
         "grab_timeout_ms": timeout_ms}) for v in range(6)]
    gate = TypeAdapter(GateConfig).validate_python({"driver": "simulated", "debounce_ms": 0})
    # The bench may go past config's 1200/min cap: the station only reads these two fields.
    line = SimpleNamespace(speed_cpm=rate * 60, rotation_delay_ms=rotation_ms)
    frames = []
    with build_station(cameras, gate, line) as station:
        started = time.monotonic()
        station.run(frames.append, threading.Event(), containers=containers)
        wall = time.monotonic() - started
        stats = station.stats()
    per_container: dict[int, list] = {}
    for f in frames:
        per_container.setdefault(f.container_seq, []).append(f)
    complete = [fs for fs in per_container.values() if all(f.pixels is not None for f in fs)]
    last_view = np.array([max(f.t_capture_ns for f in fs) - fs[0].t_gate_ns for fs in complete]) / 1e6
    capture = np.array([f.t_capture_ns - f.t_gate_ns - (rotation_ms * 1e6 if f.view >= 3 else 0)
                        for fs in complete for f in fs]) / 1e6
    pct = (lambda a, q: float(np.percentile(a, q)) if len(a) else float("nan"))
    return {
        "rate": rate, "complete_per_s": len(complete) / wall, "complete": len(complete),
        "missing": stats["views_missing"],
        "unmatched": sum(c["unmatched"] for c in stats["cameras"].values()),
        "last_p50": pct(last_view, 50), "last_p99": pct(last_view, 99),
        "cap_p50": pct(capture, 50), "cap_p99": pct(capture, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5,10,15,20,30", help="Line speeds to try, containers/s.")
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--rotation-ms", type=float, default=150.0, help="Left bank to right bank.")
    parser.add_argument("--timeout-ms", type=int, default=500, help="grab_timeout_ms of each camera.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ["PYLON_CAMEMU"] = "6"
    print(f"six emulated pylon cameras {WIDTH}x{HEIGHT} BGR8, software trigger, rotation delay "
          f"{args.rotation_ms:g} ms, grab timeout {args.timeout_ms} ms, {args.containers} containers per speed")
    print(f"{'line/s':>7} {'complete/s':>10} {'complete':>8} {'missing':>7} {'unmatched':>9} "
          f"{'gate->last p50':>14} {'p99':>7} {'trig->img p50':>13} {'p99':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = image_folder(Path(tmp))
        for rate in (float(r) for r in args.rates.split(",")):
            r = run_rate(rate, args.containers, args.rotation_ms, folder, args.timeout_ms)
            print(f"{r['rate']:7.1f} {r['complete_per_s']:10.2f} {r['complete']:8d} {r['missing']:7d} "
                  f"{r['unmatched']:9d} {r['last_p50']:11.1f} ms {r['last_p99']:7.1f} "
                  f"{r['cap_p50']:10.1f} ms {r['cap_p99']:7.1f}", flush=True)
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")


if __name__ == "__main__":
    main()
