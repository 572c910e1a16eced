"""The line's metrics as a strict OpenMetrics reader sees them (issue 19): valid histograms
(no negative buckets), units last in names, and every known counter present at 0 from the
start, so that an alert on its increase sees the first event."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from line_support import ROOT

EXPOSE = """
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.openmetrics.exposition import generate_latest
from pipeline import metrics
for stage in ("station", "worker", "decision", "relay", "writer", "supervisor"):
    metrics.ready(stage)
metrics.relay_error(-0.0004)
metrics.relay_error(0.002)
metrics.ENGINE.observe(0.03)
metrics.LATENCY.observe(0.4)
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
sys.stdout.write(generate_latest(registry).decode())
"""


def test_metrics_are_valid_openmetrics_with_counters_at_zero(tmp_path):
    out = subprocess.run([sys.executable, "-c", EXPOSE, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    families = {f.name: f for f in text_string_to_metric_families(out)}  # strict: raises on invalid input
    for family in families.values():
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
            assert all(float(s.labels["le"]) >= 0 for s in family.samples if s.name.endswith("_bucket"))
    value = {(f.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert value[("edge_stage_restarts", (("stage", "relay"),))] == 0
    assert value[("edge_relay_outputs", (("kind", "pulse"), ("result", "not ejected")))] == 0
    assert value[("edge_decisions", (("outcome", "reject"), ("reason", "decision restarted")))] == 0
    from pipeline.codec import REASONS

    for stage in ("decision", "relay", "writer", "supervisor"):
        for reason in REASONS:
            assert value[("edge_bad_messages", (("reason", reason), ("stage", stage)))] == 0
    errors = families["edge_relay_error_seconds"]
    counts = {s.labels["direction"]: s.value for s in errors.samples if s.name.endswith("_count")}
    assert counts == {"early": 1, "late": 1}
