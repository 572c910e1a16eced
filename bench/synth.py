"""How fast the synthetic camera renders, on one core, against a fast line's 60 views/s.

    python bench/synth.py [--containers 100] [--seed 0] [--cpu 0]

The process is pinned to one CPU and OpenCV, BLAS and torch use one thread. Three
figures: live camera rate (a new container, then its six views: what a synthetic
station does per gate event), the split between building a container and rendering a
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

    per_container, build, view_times = [], [], []
    for seq in range(args.containers):
        t0 = time.perf_counter_ns()
        container = renderer.container(args.seed, seq)
        renderer.render(container, 0)
        t1 = time.perf_counter_ns()
        for view in range(1, VIEWS):
            v0 = time.perf_counter_ns()
            renderer.render(container, view)
            view_times.append(time.perf_counter_ns() - v0)
        per_container.append(time.perf_counter_ns() - t0)
        build.append(t1 - t0)
    ms = np.asarray(per_container) / 1e6
    live = VIEWS * len(ms) / (ms.sum() / 1e3)
    print(f"live camera (new container + 6 views), one core: {live:.0f} views/s "
          f"= {live / GOAL_VIEWS_PER_S:.1f}x the {GOAL_VIEWS_PER_S:.0f} views/s goal")
    print(f"  per container: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms "
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
                cv2.imwrite(str(Path(tmp) / f"{seq:06d}_v{view}.png"), renderer.render(container, view).image)
        dt = time.perf_counter() - t0
    print(f"dataset writing (render + PNG), one core: {n * VIEWS / dt:.0f} views/s")


if __name__ == "__main__":
    main()
