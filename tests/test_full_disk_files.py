"""The line's own small files on a real full disk (an 8 MB tmpfs): the relay's audit journal,
the multiprocess metric files and the supervisor's stages.json. None of them may stop a
stage or leave a half-written line behind; each is whole again once the disk has room."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from prometheus_client.multiprocess import MultiProcessCollector

from disk_support import fill
from edge.config import load_config
from edge.supervisor import Stage, Supervisor
from pipeline import metric_files
from pipeline.audit import audit_logger

USE_EVERY_METRIC = """
from pipeline import metrics
for stage in metrics.KNOWN:
    metrics.ready(stage)
metrics.relay_error(0.003)
metrics.relay_error(-0.001)
metrics.LATENCY.observe(0.4)
metrics.ENGINE.observe(0.02)
metrics.RELAY_STALLS.inc()
metrics.DEPTH.labels("decision").set(3)
metrics.DISK_LOW.set(1)
metrics.MODEL.labels("v1").set(1)
metrics.MOULD_REJECTS.labels("17").inc()
print("counted")
"""


def use_every_metric(folder) -> subprocess.CompletedProcess:
    """A process that creates a value of every metric kind of the line, as stages do."""
    folder.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-c", USE_EVERY_METRIC], capture_output=True, text=True,
                          env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}, timeout=120)


def test_the_audit_journal_holds_lines_a_full_disk_refuses_and_never_tears_one(small_disk, caplog):
    audit = audit_logger(small_disk / "data")
    path = small_disk / "data" / "relay" / "outputs.jsonl"
    audit.info(json.dumps({"kind": "pulse", "seq": 0}))
    filler = fill(small_disk)
    handler = audit.handlers[0]
    seq = 1
    with caplog.at_level(logging.WARNING, logger="pipeline.audit"):
        while not handler.held:  # the last page of the file has some room left: fill it
            audit.info(json.dumps({"kind": "pulse", "seq": seq, "pad": "x" * 150}))
            seq += 1
        for _ in range(20):
            audit.info(json.dumps({"kind": "pulse", "seq": seq, "pad": "x" * 150}))
            seq += 1
        text = path.read_text()
        assert text.endswith("\n"), "half a line on the disk"
        written = [json.loads(line)["seq"] for line in text.splitlines()]
        assert written == list(range(len(written))) and len(written) < seq
        filler.unlink()
        audit.info(json.dumps({"kind": "pulse", "seq": seq}))
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == list(range(seq + 1))
    alarms = [r.getMessage() for r in caplog.records if "ALARM" in r.getMessage()]
    assert len(alarms) == 1 and "wait in memory" in alarms[0]
    assert any("written again (0 lines that waited were lost)" in r.getMessage() for r in caplog.records)
    handler.close()


def test_metric_files_are_allocated_when_made(tmp_path):
    folder = tmp_path / "metrics"
    done = use_every_metric(folder)
    assert done.returncode == 0 and "counted" in done.stdout, done.stderr
    files = sorted(folder.glob("*.db"))
    assert files
    for path in files:  # every block is on the disk: no write through the map can fault
        st = path.stat()
        assert st.st_blocks * 512 >= st.st_size > 0, path.name


def test_processes_started_on_a_full_disk_take_spares_then_count_in_memory_instead_of_dying(small_disk):
    folder = small_disk / "metrics"
    folder.mkdir()
    metric_files.keep_spares(folder, count=2)
    fill(small_disk)
    runs = [use_every_metric(folder) for _ in range(3)]
    for done in runs:
        assert done.returncode == 0, f"exit code {done.returncode} (-7: SIGBUS): {done.stderr[-2000:]}"
        assert "counted" in done.stdout
    assert "ALARM" not in runs[0].stderr + runs[1].stderr  # the spares: their counts are served
    assert not list(folder.glob("*.spare"))
    served = {s.name: s.value for family in MultiProcessCollector(None, str(folder)).collect() for s in family.samples}
    assert served["edge_relay_stalls_total"] == 2
    assert "ALARM: no metric files for this process" in runs[2].stderr  # none left: in memory, alive
    assert len(list(folder.glob("*.db"))) == 2 * len(metric_files.KINDS), "a file the endpoint would read half-made"


def test_stages_json_waits_for_room_instead_of_stopping_a_restart(small_disk, shipped_config_path, caplog):
    config = small_disk / "config.yaml"
    config.write_text(shipped_config_path.read_text().replace("data_dir: data", f"data_dir: {small_disk / 'data'}"))
    sup = Supervisor(load_config(config))
    sup.stages = {"relay": Stage("relay", process=subprocess.Popen(["true"]))}
    sup.stages["relay"].process.wait()
    fill(small_disk)
    with caplog.at_level(logging.WARNING, logger="edge.supervisor"):
        sup._write_pids()  # a restart's bookkeeping on the full disk
        assert not (sup.run_dir / "stages.json").exists()
        (small_disk / "filler").unlink()
        sup._write_pids()  # the next status line's retry
    assert json.loads((sup.run_dir / "stages.json").read_text()) == {"relay": sup.stages["relay"].process.pid}
    messages = [r.getMessage() for r in caplog.records]
    assert any("ALARM: cannot write" in m and "stages.json" in m for m in messages)
    assert any("is written again" in m for m in messages)
