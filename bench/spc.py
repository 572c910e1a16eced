"""How often the control charts cry wolf, and how soon they name a bad cavity.

Simulates an IS machine's containers through storage/spc.py's SpcMonitor, the code the
storage writer runs: every container a Bernoulli defect draw (a defective one gets one of
five defect classes), moulds delivered round-robin (storage/moulds.py).

1. In control: every cavity at the same defect share, `--in-control` containers after
   the baseline; prints false alarms per 10,000 containers (cavity charts, class charts).
2. One bad cavity: after the baseline, mould 3-1's defect share is `--factor` times the
   others'; prints how many containers (of the whole line) pass until an alarm names
   cavity 3-1, median and p90 over `--trials` runs (and how many found it at all).

    python -m bench.spc [--p 0.05] [--subgroup 100] [--sections 8 --cavities 2] [--normal]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from storage.moulds import delivered
from storage.spc import SpcMonitor, sample

CLASSES = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")
CLASS_SHARE = (0.3, 0.25, 0.2, 0.15, 0.1)
BAD = "3-1"


def run_line(monitor: SpcMonitor, rng: np.random.Generator, containers: int, moulds: list[str],
             share: dict[str, float], stop_at: str | None = None, first: int = 0) -> tuple[list, int | None]:
    """Feed `containers` containers; return (alarms, containers until an alarm on `stop_at`)."""
    draws = rng.random(containers)
    classes = rng.choice(len(CLASSES), size=containers, p=CLASS_SHARE)
    alarms = []
    for i in range(containers):
        mould = moulds[(first + i) % len(moulds)]
        defective = draws[i] < share[mould]
        found = monitor.add(sample("defect" if defective else "ok", mould, (CLASSES[classes[i]],)))
        alarms += found
        if stop_at is not None and any(a.chart == stop_at for a in found):
            return alarms, i + 1
    return alarms, None


def machine(sections: int, cavities: int) -> list[str]:
    return [str(delivered(n, sections, cavities)) for n in range(1, sections * cavities + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, default=0.05, help="in-control defect share")
    parser.add_argument("--subgroup", type=int, default=100)
    parser.add_argument("--baseline", type=int, default=5000)
    parser.add_argument("--normal", action="store_true", help="textbook p-bar + 3 sigma limits instead of exact ones")
    parser.add_argument("--sections", type=int, default=8)
    parser.add_argument("--cavities", type=int, default=2)
    parser.add_argument("--in-control", type=int, default=1_000_000, help="containers after the baseline")
    parser.add_argument("--factor", type=float, default=3.0, help="the bad cavity's defect share / p")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--limit", type=int, default=200_000, help="give up a bad-cavity trial after this many")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    moulds = machine(args.sections, args.cavities)
    good = {m: args.p for m in moulds}

    started = time.monotonic()
    monitor = SpcMonitor(args.subgroup, args.baseline, exact=not args.normal)
    run_line(monitor, rng, args.baseline, moulds, good)
    alarms, _ = run_line(monitor, rng, args.in_control, moulds, good, first=args.baseline)
    cavity = sum(a.chart.startswith("cavity") for a in alarms)
    per_10k = 1e4 / args.in_control
    print(f"in control: {args.in_control:,} containers, {len(moulds)} cavities, p = {args.p:g}, "
          f"subgroup {args.subgroup}, baseline {args.baseline:,}, {'normal' if args.normal else 'exact'} limits "
          f"({time.monotonic() - started:.0f} s)")
    print(f"  false alarms per 10,000 containers: cavity charts {cavity * per_10k:.3f} ({cavity}), "
          f"class charts {(len(alarms) - cavity) * per_10k:.3f} ({len(alarms) - cavity}), "
          f"all {len(alarms) * per_10k:.3f}")

    bad = {**good, BAD: min(1.0, args.p * args.factor)}
    delays = []
    for _ in range(args.trials):
        monitor = SpcMonitor(args.subgroup, args.baseline, exact=not args.normal)
        run_line(monitor, rng, args.baseline, moulds, good)
        _, until = run_line(monitor, rng, args.limit, moulds, bad, stop_at=f"cavity {BAD}", first=args.baseline)
        if until is not None:
            delays.append(until)
    print(f"bad cavity {BAD} at {args.factor:g}x ({bad[BAD]:.1%}): alarm in {len(delays)} of {args.trials} trials; "
          f"containers of the line until it: median {np.median(delays):,.0f}, p90 {np.percentile(delays, 90):,.0f} "
          f"(of that cavity: median {np.median(delays) / len(moulds):,.0f})")


if __name__ == "__main__":
    main()
