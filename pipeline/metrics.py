"""Prometheus metrics of the line, shared by every stage process.

Stages are separate processes, so prometheus-client runs in multiprocess mode: the
supervisor sets PROMETHEUS_MULTIPROC_DIR (<data_dir>/run/metrics) before it starts any
stage, each stage writes its own files there, and the supervisor's endpoint sums them.
Counters therefore survive a stage's restart. Import this module only after the
variable is set (stage processes inherit it).
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

from pipeline import codec

ENV = "PROMETHEUS_MULTIPROC_DIR"

FRAMES = Counter("edge_frames", "Frames by stage and outcome (sent, dropped, inferred, late, ...).",
                 ["stage", "outcome", "reason"])
DECISIONS = Counter("edge_decisions", "Container decisions by outcome and reason.", ["outcome", "reason"])
LATENCY = Histogram("edge_decision_latency_seconds", "Gate to decision.",
                    buckets=(.05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 10))
ENGINE = Histogram("edge_engine_seconds_per_view", "Engine time per view (batch time / views).",
                   buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5))
RELAY_ERROR = Histogram("edge_relay_error_seconds", "Pulse sent minus due time (ejector time).",
                        buckets=(-.01, -.001, 0, .0005, .001, .002, .005, .01, .02, .05, .1, 1))
RELAY = Counter("edge_relay_outputs", "Reject outputs by kind and result.", ["kind", "result"])
BAD = Counter("edge_bad_messages", "Malformed, wrong-size or unknown-container messages.", ["stage", "reason"])
RESTARTS = Counter("edge_stage_restarts", "Stage processes restarted by the supervisor.", ["stage"])
DEPTH = Gauge("edge_queue_depth", "Items waiting in a stage (open containers, pending pulses, ...).",
              ["stage"], multiprocess_mode="livesum")
DISK_LOW = Gauge("edge_disk_low", "1 while the data folder's free space is below storage.min_free_mb "
                 "(images are not stored; records are).", multiprocess_mode="livemax")
MODEL = Gauge("edge_model_info", "Model version loaded by a worker (value 1).", ["version"],
              multiprocess_mode="livemax")


def bad_messages_ready(stage: str) -> None:
    """Show edge_bad_messages_total{stage,reason} at 0 for every codec refusal from the start,
    so that an alert on its rate works before the first bad message arrives."""
    for reason in codec.REASONS:
        BAD.labels(stage, reason)


def serve(address: str) -> None:
    """Start the HTTP endpoint in the supervisor (multiprocess collector)."""
    from prometheus_client import CollectorRegistry, start_http_server, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)


def process_gone(pid: int) -> None:
    """Drop a dead process's live gauges (counters stay)."""
    from prometheus_client import multiprocess

    if os.environ.get(ENV):
        multiprocess.mark_process_dead(pid)
