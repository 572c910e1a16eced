"""`edge status`: what the running line is doing, read from its metrics endpoint."""

from __future__ import annotations

from pathlib import Path

import click

from edge.config import load_config
from edge.ui.health import engine_time, loaded_models
from pipeline.errors import PipelineError
from pipeline.metrics_read import by
from edge.commands import config_option


def _quantile(samples, name: str, q: float) -> float | None:
    """From a Prometheus histogram's cumulative buckets: the bucket bound holding quantile q."""
    counts: dict[float, float] = {}  # summed over the other labels (e.g. early and late)
    for labels, v in samples.get(f"{name}_bucket", []):
        counts[float(labels["le"])] = counts.get(float(labels["le"]), 0) + v
    buckets = sorted(counts.items())
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    return next(le for le, count in buckets if count >= target)


def summary(samples) -> list[str]:
    decisions = by(samples, "edge_decisions_total", "outcome")
    rejects = by(samples, "edge_decisions_total", "reason", outcome="reject")
    frames = {f"{l['stage']}/{l['outcome']}" + (f" ({l['reason']})" if l.get("reason") else ""): v
              for l, v in samples.get("edge_frames_total", [])}
    p50 = _quantile(samples, "edge_decision_latency_seconds", 0.5)
    p99 = _quantile(samples, "edge_decision_latency_seconds", 0.99)
    relay_p99 = _quantile(samples, "edge_relay_error_seconds", 0.99)
    engine, engine_n = engine_time(samples)
    models = loaded_models(samples)
    fmt = lambda d: ", ".join(f"{k} {v:g}" for k, v in sorted(d.items())) or "none"  # noqa: E731
    return [
        f"containers: {sum(decisions.values()):g} ({fmt(decisions)})",
        f"rejects by reason: {fmt(rejects)}",
        f"latency gate->decision: p50 <= {p50 * 1e3:.0f} ms, p99 <= {p99 * 1e3:.0f} ms" if p50 is not None
        else "latency gate->decision: no decisions yet",
        f"relay: {fmt(by(samples, 'edge_relay_outputs_total', 'result'))}"
        + (f", timing error p99 <= {relay_p99 * 1e3:.1f} ms" if relay_p99 is not None else ""),
        f"engine: {engine / engine_n * 1e3:.1f} ms per view, model {', '.join(models) or '?'}" if engine_n
        else f"engine: no views yet, model {', '.join(models) or '?'}",
        f"frames: {fmt(frames)}",
        f"queues: {fmt(by(samples, 'edge_queue_depth', 'stage'))}",
        f"bad messages: {fmt(by(samples, 'edge_bad_messages_total', 'reason'))}",
        f"stage restarts: {fmt(by(samples, 'edge_stage_restarts_total', 'stage'))}",
    ]


@click.command("status")
@config_option("Line configuration (for metrics.address).")
@click.option("--address", default=None, help="host:port of the metrics endpoint (overrides the config).")
def command(config_path: Path, address: str | None) -> None:
    """Summarise the running line: containers, rejects by reason, latency, relay, queues."""
    from pipeline.metrics_read import scrape

    address = address or load_config(config_path).metrics.address
    try:
        samples = scrape(address)
    except OSError as exc:
        raise PipelineError(f"no line answers on {address} ({exc}); is `edge run` running?") from None
    for line in summary(samples):
        click.echo(line)
