"""How fast the storage writer stores containers, and how many image bytes each costs.

    python -m bench.storage [--containers 2000] [--postgres URL]

Each container has 6 views with about 3 detections each (storage.synthetic; 5 % rejected
unless --reject-share says otherwise), recorded through storage.writer.Recorder exactly as the pipeline's writer
stage does. Images are pre-rendered, so the figure is storage alone (JPEG/PNG encoding,
fsync, rename, the database transaction). Policies: the default (rejects plus one in 20
passes, JPEG 90) and the worst case (every view kept). PostgreSQL runs when --postgres
or EDGE_TEST_POSTGRES_URL names a server; its public schema is emptied first.
Goal: 100 containers/s, 10x the 10 containers/s of a fast line.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder leads sys.path and this file's name would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from sqlalchemy import text

from storage import synthetic
from storage.config import StorageConfig
from storage.db import make_engine
from storage.writer import Recorder

LINE = 10.0  # containers/s of a fast line
GOAL = 10 * LINE  # 10x headroom


def run(url: str, data_dir: Path, config: StorageConfig, n: int, reject_share: float) -> dict:
    cache: dict = {}
    rejects = set(random.Random(0).sample(range(n), round(n * reject_share)))
    work = [(synthetic.container(seq, "reject" if seq in rejects else "pass"), synthetic.images(seq, cache))
            for seq in range(n)]
    flushes: list[float] = []
    with Recorder(url, data_dir, config) as rec:
        start, cpu = time.perf_counter(), time.process_time()
        for container, images in work:
            t = time.perf_counter()
            pending = len(rec._pending)
            rec.record(container, images)
            if len(rec._pending) < pending + 1:
                flushes.append(time.perf_counter() - t)
        rec.flush()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        stored = rec._count_stored_bytes()
    flushes.sort()
    return {"rate": n / elapsed, "cpu_rate": n / cpu, "bytes": stored / n,
            "flush_max_ms": 1000 * flushes[-1] if flushes else 0.0}


def empty_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("EDGE_TEST_POSTGRES_URL"))
    parser.add_argument("--reject-share", type=float, default=0.05, help="Share of containers rejected.")
    args = parser.parse_args()
    policies = {"default (rejects + 1/20 passes, JPEG)": StorageConfig(),
                "every view kept (JPEG)": StorageConfig(keep_images="all")}
    print(f"{args.containers} containers, 6 views x ~3 detections, {args.reject_share:.0%} rejected; "
          f"goal {GOAL:.0f}/s ('x line': headroom over a {LINE:.0f}/s line, 10 wanted). 'by CPU' divides by this process's CPU time (what an unshared core gives;"
          " for PostgreSQL the server's own work is not in it)")
    print(f"{'database':<11} {'policy':<38} {'containers/s':>12} {'by CPU':>7} {'x line':>7} "
          f"{'bytes/container':>16} {'slowest flush':>14}")
    for name, config in policies.items():
        for db_name in ("sqlite", "postgresql"):
            with tempfile.TemporaryDirectory() as tmp:
                if db_name == "sqlite":
                    url = f"sqlite:///{tmp}/edge.db"
                elif args.postgres:
                    url = args.postgres
                    empty_postgres(url)
                else:
                    print(f"{db_name:<11} {name:<38} skipped: no --postgres URL")
                    continue
                r = run(url, Path(tmp), config, args.containers, args.reject_share)
            print(f"{db_name:<11} {name:<38} {r['rate']:>12.0f} {r['cpu_rate']:>7.0f} {r['rate'] / LINE:>7.1f} "
                  f"{r['bytes']:>16,.0f} "
                  f"{r['flush_max_ms']:>11.0f} ms")


if __name__ == "__main__":
    main()
