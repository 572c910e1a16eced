"""The storage writer as a real process: killed with SIGKILL mid-batch, and read while it writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from storage.config import StorageConfig
from storage.db import STORED, Container, View, open_database
from storage.files import is_temporary
from storage.images import ImageStore
from storage.stats import line_stats
from storage.writer import Recorder
from storage_support import assert_consistent

WRITER = """
import sys, time
from pathlib import Path
from storage import synthetic
from storage.config import StorageConfig
from storage.writer import Recorder

url, data, start, count, rate, keep, fmt, batch = sys.argv[1:9]
config = StorageConfig(keep_images=keep, image_format=fmt, batch_size=int(batch))
rec = Recorder(url, Path(data), config, flush_interval_s=0.5)
print("ready", flush=True)
cache, flushed, t0 = {}, 0, time.monotonic()
for i in range(int(count)):
    rec.record(synthetic.container(int(start) + i), synthetic.images(int(start) + i, cache))
    if rec.counters["containers"] != flushed:
        flushed = rec.counters["containers"]
        print("flushed", flushed, flush=True)
    if float(rate):
        time.sleep(max(0.0, t0 + (i + 1) / float(rate) - time.monotonic()))  # paces the writer: not a wait
rec.close()
print("done", rec.counters["containers"], flush=True)
"""


def start_writer(url: str, data: Path, start: int, count: int, rate: float = 0, keep: str = "all",
                 fmt: str = "jpeg", batch: int = 10) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url, str(data), str(start), str(count), str(rate),
                             keep, fmt, str(batch)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def test_kill_9_mid_batch_leaves_nothing_partial_after_restart(database_url, tmp_path):
    rng = random.Random(8)
    crash_debris, round_ = 0, 0
    while round_ < 2 or (crash_debris == 0 and round_ < 5):  # until a kill has hit a batch in flight
        proc = start_writer(database_url, tmp_path, start=round_ * 10_000, count=100_000)
        flushed = 0
        while flushed < 10:  # let a batch commit, then kill while the next one is being written
            line = proc.stdout.readline().split()
            assert line and line[0] == "flushed", proc.stderr.read()
            flushed = int(line[1])
        time.sleep(rng.uniform(0.0, 0.3))  # picks when to kill, mid-batch: not a wait
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        store = ImageStore(tmp_path, StorageConfig())
        db = open_database(database_url)
        with db.session() as s:
            stored = set(s.scalars(select(View.image_file).where(View.image_state == STORED)))
            round_rows = s.scalar(select(func.count()).select_from(Container)
                                  .where(Container.seq >= round_ * 10_000, Container.seq < (round_ + 1) * 10_000))
        debris = [f for f in store.files() if f not in stored or is_temporary(f.rsplit("/", 1)[-1])]
        crash_debris += len(debris)
        assert round_rows >= flushed, "a committed container was lost"

        restarted = Recorder(database_url, tmp_path, StorageConfig())  # its start-up check repairs
        restarted.close()
        report = restarted.repair_report
        assert report.orphan_files + report.temporary_files == len(debris)
        assert report.partial_containers == 0 and report.missing_files == 0
        assert_consistent(db, tmp_path)
        with db.session() as s:
            for c in s.scalars(select(Container).where(Container.seq >= round_ * 10_000)):
                assert [v.image_state for v in c.views] == [STORED] * 6
        db.close()
        round_ += 1
    # The kills must have hit a batch in flight at least once, or this test proved nothing.
    assert crash_debris > 0


def test_stats_reader_beside_a_writer_at_100_containers_per_second(database_url, tmp_path):
    # The issue asks 30 s; 10 s by default keeps the suite short on 2 shared cores.
    seconds, rate = int(os.environ.get("EDGE_TEST_STORAGE_SOAK_S", "10")), 100
    proc = start_writer(database_url, tmp_path, start=0, count=seconds * rate, rate=rate, keep="rejects",
                        fmt="jpeg", batch=50)
    db = open_database(database_url)
    queries, seen = 0, 0
    while proc.poll() is None:
        stats = line_stats(db, default_threshold=0.5)
        assert stats.containers >= seen, "a reader saw rows disappear"
        seen = stats.containers
        queries += 1
        time.sleep(0.05)  # a dashboard's pace; leaves the shared cores to the writer
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "locked" not in err.lower() and "error" not in err.lower(), err
    assert out.split()[-2:] == ["done", str(seconds * rate)]
    assert line_stats(db).containers == seconds * rate, "nothing lost"
    assert queries > 5 and 0 < seen
    assert_consistent(db, tmp_path)
    db.close()
