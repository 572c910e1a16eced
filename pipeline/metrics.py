"""Prometheus metrics of the line, shared by every stage process.

Stages are separate processes, so prometheus-client runs in multiprocess mode: the
supervisor sets PROMETHEUS_MULTIPROC_DIR (<data_dir>/run/metrics) before it starts any
stage, each stage writes its own files there, and the supervisor's endpoint sums them.
Counters therefore survive a stage's restart. Import this module only after the
variable is set (stage processes inherit it).

Each process's files get their disk blocks before its first metric (pipeline/metric_files.py):
written through memory maps, files without them kill a process with SIGBUS on a full disk.
A process that gets none counts in memory only, off the endpoint, and logs an ALARM.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, values

from pipeline import codec, metric_files

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"


def reserve_files() -> None:
    """This process's metric files, allocated; or its metrics in memory, with an ALARM."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    try:
        reserved = metric_files.reserve(Path(folder), os.getpid())
        reason = "the disk is full and no spare file is left"
    except OSError as exc:
        reserved, reason = False, str(exc)
    if not reserved:
        values.ValueClass = values.MutexValue
        log.error("ALARM: no metric files for this process in %s (%s): its metrics are not served until "
                  "it restarts with room on the disk", folder, reason)


reserve_files()

FRAMES = Counter("edge_frames", "Frames by stage and outcome (sent, dropped, inferred, late, ...).",
                 ["stage", "outcome", "reason"])
DECISIONS = Counter("edge_decisions", "Container decisions by outcome and reason.", ["outcome", "reason"])
LATENCY = Histogram("edge_decision_latency_seconds", "Gate to decision.",
                    buckets=(.05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 10))
ENGINE = Histogram("edge_engine_view_seconds", "Engine time per view (batch time / views).",
                   buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5))
# OpenMetrics histograms have no negative buckets: the size of the error, and its side.
RELAY_ERROR = Histogram("edge_relay_error_seconds", "How far a pulse left from its due (ejector) time.",
                        ["direction"], buckets=(.0001, .0005, .001, .002, .005, .01, .02, .05, .1, 1))
RELAY = Counter("edge_relay_outputs", "Reject outputs by kind and result.", ["kind", "result"])
RELAY_STALLS = Counter("edge_relay_stalls", "Times the OS kept the reject controller off the CPU longer than "
                       "its 2 ms spin margin (a starved or shared CPU, a write the disk held up): a pulse due then leaves late.")
BAD = Counter("edge_bad_messages", "Malformed, wrong-size or unknown-container messages.", ["stage", "reason"])
RESTARTS = Counter("edge_stage_restarts", "Stage processes restarted by the supervisor.", ["stage"])
DEPTH = Gauge("edge_queue_depth", "Items waiting in a stage (open containers, pending pulses, ...).",
              ["stage"], multiprocess_mode="livesum")
DISK_LOW = Gauge("edge_disk_low", "1 while the data folder's free space is below storage.min_free_mb "
                 "(images are not stored; records are).", multiprocess_mode="livemax")
MOULD_REJECTS = Counter("edge_mould_rejects", "Containers rejected because their mould is taken out "
                        "(line.reject_moulds, edge mould reject).", ["mould"])
SPC_ALARMS = Counter("edge_spc_alarms", "Out-of-control points on a control chart (storage/spc.py).",
                     ["chart", "rule"])
MODEL = Gauge("edge_model_info", "Model version loaded by a worker (value 1).", ["version"],
              multiprocess_mode="livemax")


# The label values a stage can produce, shown at 0 from its start: an alert on a counter's
# increase() misses the first event when the series appears only with it.
KNOWN = {
    "decision": [(DECISIONS, ("pass", "ok"))] + [(DECISIONS, ("reject", r)) for r in (
        "defect", "missing view", "worker crashed", "late result", "decision restarted", "station restarted")],
    "relay": [(RELAY, ("pulse", r)) for r in ("fired", "failsafe", "missed", "overruled", "not ejected")]
    + [(RELAY, ("confirm", r)) for r in ("confirmed", "unconfirmed")],
    "station": [(FRAMES, ("station", o, "")) for o in ("sent", "dropped", "missing")],
    "worker": [(FRAMES, ("worker", o, "")) for o in ("inferred", "bad", "stale", "image dropped")],
    "supervisor": [(RESTARTS, (kind,)) for kind in ("station", "worker", "decision", "relay", "writer")],
}


def ready(stage: str) -> None:
    """Show this stage's counters at 0 from its start, edge_bad_messages_total{stage,reason}
    for every decoder refusal included."""
    for reason in codec.REASONS:
        BAD.labels(stage, reason)
    for metric, labels in KNOWN.get(stage, []):
        metric.labels(*labels)


def relay_error(error_s: float) -> None:
    RELAY_ERROR.labels("late" if error_s >= 0 else "early").observe(abs(error_s))


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
