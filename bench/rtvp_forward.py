"""Forward time of one 640 view through RTVP (PyTorch eager, CPU), plus its size figures.

    python -m bench.rtvp_forward --scale n --sam reduced --threads 2 --runs 5

(`-m`, from the repository root: run as a file, bench/engines.py would shadow the
`engines` package.)

Prints parameters per component, GFLOPs and the median/min forward time. On a shared
machine the numbers are noisy: report them with the load (printed) beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from engines.rtvp import build_model
from engines.rtvp.info import format_summary, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="n", choices=["tiny", "n", "s"])
    parser.add_argument("--sam", default="reduced", choices=["reduced", "tinyvit5m"])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--deploy", action="store_true", help="time the deploy graph instead of eval()")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(scale=args.scale, sam=args.sam, imgsz=args.imgsz).eval()
    print(format_summary(summarize(model)))
    text = torch.nn.functional.normalize(torch.randn(5, model.config.text_dim), dim=-1)
    net = model.deploy(text) if args.deploy else (lambda x: model(x, text))
    images = torch.rand(1, 3, args.imgsz, args.imgsz)
    times = []
    with torch.no_grad():
        for i in range(args.runs + 2):
            t0 = time.perf_counter_ns()
            net(images)
            if i >= 2:  # the first calls build oneDNN kernels
                times.append((time.perf_counter_ns() - t0) / 1e6)
    print(f"forward per {args.imgsz} view, {args.threads} threads: median {statistics.median(times):.0f} ms, "
          f"min {min(times):.0f} ms over {args.runs} runs; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
