"""Training throughput: images/s of full training steps (forward, loss, backward, AdamW).

    python -m bench.training [--model rtvp-n] [--crop 256] [--batch 8] [--steps 5] [--threads 1]

Random crops with one defect-sized box each; the first step (allocation) is not timed.
On a CPU shared with other work, 1 thread is faster than 2 (OpenMP threads wait on each
other when the cores are busy); the figure moves with the machine's load.
"""

from __future__ import annotations

import argparse
import time

import torch

from engines.rtvp import RTVPConfig, build_model
from engines.training.train import SCALES, param_groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(SCALES), default="rtvp-n")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(RTVPConfig(scale=SCALES[args.model], text_dim=384)).train()
    optimizer = torch.optim.AdamW(param_groups(model, 5e-4), lr=1e-3)
    text = torch.nn.functional.normalize(torch.randn(5, 384), dim=1)
    images = torch.rand(args.batch, 3, args.crop, args.crop)
    targets = [{"boxes": torch.tensor([[40.0, 40.0, 52.0, 50.0]]), "labels": torch.tensor([i % 5])}
               for i in range(args.batch)]
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        loss, _ = model.loss(model(images, text), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - t0)
    per_step = sorted(times)[len(times) // 2]
    print(f"{args.model} crop {args.crop} batch {args.batch} threads {args.threads}: "
          f"{per_step:.2f} s/step (median of {args.steps}), {args.batch / per_step:.2f} images/s")


if __name__ == "__main__":
    main()
