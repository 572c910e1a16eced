"""How fast the synthetic camera renders, on one core, against a fast line's 60 views/s.

    python -m bench.synth [--containers 100] [--seed 0] [--cpu 0]

The process is pinned to one CPU and OpenCV, BLAS and torch use one thread. On a
shared machine the wall-clock rate drops with the load; the CPU-time rate does not. Three
figures: the live rate of six synthetic cameras (six renderers sharing the container
picture, as in a station), the split between building a container and rendering a
view from it, and `edge synth`'s rate including PNG encoding.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from camera.frame import VIEWS  # noqa: E402
from camera.synth import GlassRenderer  # noqa: E402
from storage.names import view_stem  # noqa: E402

GOAL_VIEWS_PER_S = 60.0  # 10 containers per second, six views each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    cv2.setNumThreads(1)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass

    renderer = GlassRenderer()
    renderer.render(renderer.container(args.seed, -1), 0)  # warm-up
    cameras = [GlassRenderer() for _ in range(VIEWS)]  # as six synthetic cameras in a station

    per_container, build, view_times = [], [], []
    cpu0 = time.process_time_ns()
    for seq in range(args.containers):
        t0 = time.perf_counter_ns()
        for view, camera in enumerate(cameras):  # each camera: its container, its view
            camera.render(camera.container(args.seed, seq), view)
        per_container.append(time.perf_counter_ns() - t0)
    cpu = (time.process_time_ns() - cpu0) / 1e9
    for seq in range(args.containers):
        t0 = time.perf_counter_ns()
        container = renderer.container(args.seed + 1, seq)
        renderer.render(container, 0)
        build.append(time.perf_counter_ns() - t0)
        for view in range(1, VIEWS):
            t0 = time.perf_counter_ns()
            renderer.render(container, view)
            view_times.append(time.perf_counter_ns() - t0)
    ms = np.asarray(per_container) / 1e6
    live = VIEWS * len(ms) / (ms.sum() / 1e3)
    by_cpu = VIEWS * len(ms) / cpu
    print(f"six synthetic cameras (six renderers, one new container per gate event), one core: "
          f"{live:.0f} views/s wall clock = {live / GOAL_VIEWS_PER_S:.1f}x the {GOAL_VIEWS_PER_S:.0f} views/s goal")
    print(f"  by CPU time (what an unshared core would give): {by_cpu:.0f} views/s "
          f"= {by_cpu / GOAL_VIEWS_PER_S:.1f}x the goal")
    print(f"  per container (6 views): p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms "
          f"(budget at 10 containers/s: 100 ms)")
    print(f"  container build + first view: p50 {np.percentile(build, 50) / 1e6:.1f} ms; "
          f"each further view: p50 {np.percentile(view_times, 50) / 1e6:.2f} ms, "
          f"p99 {np.percentile(view_times, 99) / 1e6:.2f} ms")

    n = min(args.containers, 20)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for seq in range(n):
            container = renderer.container(args.seed, seq)
            for view in range(VIEWS):
                cv2.imwrite(str(Path(tmp) / f"{view_stem(seq, view)}.png"), renderer.render(container, view).image)
        dt = time.perf_counter() - t0
    print(f"dataset writing (render + PNG), one core: {n * VIEWS / dt:.0f} views/s")


if __name__ == "__main__":
    main()
