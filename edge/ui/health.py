"""The line's health for the live page, read from its metrics endpoint (`edge status`'s source):
the workers and the model they run, queue depths, and overload warnings.

The station scrapes every few seconds and keeps a minute of scrapes, so a warning says
what changed lately (a counter that rose, a backlog that kept growing), not what happened
once hours ago. The line never waits for this: a scrape is an HTTP GET in a thread of
the station's own process, and a line that does not answer is shown as such.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipeline.metrics_read import by, total

log = logging.getLogger(__name__)
WINDOW_S = 60.0  # warnings look this far back
GROWING_BY = 5  # a queue that never shrank between scrapes and grew this much in all is a backlog
# Counters whose rise means the line is overloaded or losing containers: (sample, labels, what it means).
RISING = (
    ("edge_frames_total", {"stage": "station", "outcome": "dropped"}, "frames dropped at the station: workers behind"),
    ("edge_frames_total", {"stage": "worker", "outcome": "stale"}, "views past their deadline at a worker: engine too slow"),
    ("edge_frames_total", {"stage": "worker", "outcome": "image dropped"}, "images not stored: writer busy"),
    ("edge_decisions_total", {"reason": "late result"}, "containers rejected for a late result"),
    ("edge_decisions_total", {"reason": "worker crashed"}, "containers rejected: a worker crashed"),
    ("edge_relay_outputs_total", {"result": "failsafe"}, "fail-safe ejections (no decision in time)"),
    ("edge_relay_stalls_total", {}, "reject controller kept off the CPU over 2 ms (pulses may leave late): "
                                    "a starved or shared CPU"),
    ("edge_stage_restarts_total", {}, "stage restarts"),
)


@dataclass
class Health:
    answering: bool = False
    error: str = "not read yet"
    updated: datetime | None = None
    models: list[str] = field(default_factory=list)  # versions the workers have loaded
    workers: int = 0  # configured (pipeline.workers)
    views_s: float | None = None  # inferred by the workers over the window
    engine_ms: float | None = None  # per view, over the window
    queues: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def loaded_models(samples) -> list[str]:
    """The model versions the workers report loaded (`edge status` and the live page alike)."""
    return sorted(lb["version"] for lb, v in samples.get("edge_model_info", []) if v)


def engine_time(samples) -> tuple[float, float]:
    """Engine seconds and views inferred so far, summed over every worker's samples."""
    return total(samples, "edge_engine_view_seconds_sum"), total(samples, "edge_engine_view_seconds_count")


def assess(history: list[tuple[float, dict]], workers: int) -> Health:
    """Health from scrapes [(monotonic time, samples)], oldest first, the newest last."""
    if not history:
        return Health(workers=workers)
    t_last, last = history[-1]
    t_first, first = history[0]
    span = t_last - t_first
    health = Health(answering=True, error="", updated=datetime.now(timezone.utc), workers=workers,
                    models=loaded_models(last),
                    queues=by(last, "edge_queue_depth", "stage"))
    if span > 0:
        inferred = total(last, "edge_frames_total", stage="worker", outcome="inferred") \
            - total(first, "edge_frames_total", stage="worker", outcome="inferred")
        health.views_s = inferred / span
        (seconds, views), (seconds_before, views_before) = engine_time(last), engine_time(first)
        if views > views_before:
            health.engine_ms = 1e3 * (seconds - seconds_before) / (views - views_before)
    for name, labels, meaning in RISING:
        rose = total(last, name, **labels) - total(first, name, **labels)
        if rose > 0:
            health.warnings.append(f"{meaning}: {rose:g} in the last {span:.0f} s")
    for stage, depth in health.queues.items():
        depths = [by(samples, "edge_queue_depth", "stage").get(stage, 0.0) for _, samples in history]
        if len(depths) >= 3 and all(b >= a for a, b in zip(depths, depths[1:])) and depths[-1] - depths[0] >= GROWING_BY:
            health.warnings.append(f"backlog at {stage}: {depths[0]:g} -> {depth:g} waiting in {span:.0f} s")
    if workers and not health.models:
        health.warnings.append("no worker reports a loaded model")
    return health


class HealthWatch:
    """A minute of scrapes of one endpoint; `poll` runs in a thread (it blocks up to `timeout` s)."""

    def __init__(self, address: str, workers: int, timeout: float = 1.0) -> None:
        self.address, self.workers, self.timeout = address, workers, timeout
        self.history: deque[tuple[float, dict]] = deque()
        self.current = Health(workers=workers)

    def poll(self, now: float) -> Health:
        from pipeline.metrics_read import scrape

        try:
            samples = scrape(self.address, timeout=self.timeout)
        except (OSError, ValueError) as exc:
            self.history.clear()  # a restarted line starts its counters again
            self.current = Health(workers=self.workers, error=f"no answer from {self.address} ({exc})")
            return self.current
        self.history.append((now, samples))
        while now - self.history[0][0] > WINDOW_S:
            self.history.popleft()
        self.current = assess(list(self.history), self.workers)
        return self.current
