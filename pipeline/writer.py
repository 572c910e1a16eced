"""The storage writer process: decisions (and the pixels of their views) into storage/.

Workers send each inferred view's pixels here; the decision stage sends the decision.
A decision is written once its inferred views' images are in, or after IMAGE_WAIT_S
(images travel on another socket and may trail the decision by a moment). Images
with no decision after the container's deadline plus a margin are released and counted:
memory stays bounded whatever happens upstream.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import numpy as np
import zmq

from pipeline import codec

log = logging.getLogger(__name__)

IMAGE_WAIT_S = 0.5
IDLE_EXIT_S = 0.3


class RecorderAdapter:
    """Turns a decision message into storage.records and hands it to storage.writer.Recorder."""

    def __init__(self, config) -> None:
        from storage.writer import Recorder

        # line_id: on a database shared by several lines, repair and quota touch this line only.
        self.recorder = Recorder(config.database_url, config.data_dir, config.storage,
                                 line_id=config.line.id)

    def record(self, decision: dict[str, Any], images: dict[int, np.ndarray]) -> None:
        self.recorder.record(to_record(decision), images)

    def idle(self) -> None:
        self.recorder.flush_due()

    def close(self) -> None:
        self.recorder.close()


def _utc(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def to_record(decision: dict[str, Any]):
    """Decision message -> storage.records.ContainerRecord (the storage seam)."""
    from storage.records import ContainerRecord, ViewRecord

    views = [ViewRecord(view=v["view"], camera_id=v["camera_id"], t_capture=_utc(v.get("t_capture_utc")),
                        missing=None if v["outcome"] == "inferred" else f"{v['outcome']}: {v['reason']}",
                        detections=v["detections"])
             for v in decision["views"]]
    return ContainerRecord(seq=decision["seq"], line_id=decision["line_id"],
                           t_gate=_utc(decision["t_gate_utc"]), decision=decision["decision"],
                           reason=decision["reason"], latency_ms=decision["latency_ms"],
                           model_version=decision["model_version"], views=views)


def run(ctx) -> None:
    from pipeline import metrics

    config = ctx.config
    recorder = ctx.factory("recorder_factory", RecorderAdapter)(config)
    decisions = ctx.endpoints.bind("storage_in", zmq.PULL)
    images_in = ctx.endpoints.bind("images", zmq.PULL)
    poller = zmq.Poller()
    poller.register(decisions, zmq.POLLIN)
    poller.register(images_in, zmq.POLLIN)
    keep_for_s = config.line.travel_time_ms / 1e3 + 5
    images: dict[int, dict[int, np.ndarray]] = {}
    arrived: dict[int, float] = {}
    pending: list[tuple[float, dict]] = []  # (write no later than, decision)
    stored: dict[int, None] = {}  # recent containers, to drop their late images quietly
    counts = {"stored": 0, "images": 0, "images_expired": 0, "bad": 0, "errors": 0}

    def ready(decision: dict) -> bool:
        have = images.get(decision["seq"], {})
        return all(v["view"] in have for v in decision["views"] if v["outcome"] == "inferred")

    def store(decision: dict) -> None:
        seq = decision["seq"]
        views = images.pop(seq, {})
        arrived.pop(seq, None)
        stored[seq] = None
        if len(stored) > 10_000:
            stored.pop(next(iter(stored)))
        try:
            recorder.record(decision, views)
            counts["stored"] += 1
        except Exception:  # storage trouble must not stop the line; the writer keeps going
            counts["errors"] += 1
            metrics.BAD.labels("writer", "storage error").inc()
            log.exception("ALARM: container %d could not be stored", seq)

    ctx.state = "ready"
    last_input = time.monotonic()
    while ctx.running or pending or time.monotonic() - last_input < IDLE_EXIT_S:
        events = dict(poller.poll(50))
        if images_in in events:
            for parts in codec.waiting(images_in, copy=False):
                last_input = time.monotonic()
                try:
                    msg = codec.unpack(parts)
                    codec.require(msg, "seq", "view", "shape")
                    pixels = codec.image_from_parts(msg, parts)
                    if int(msg["seq"]) in stored:  # a late view of a container already decided
                        continue
                    images.setdefault(int(msg["seq"]), {})[int(msg["view"])] = pixels
                    arrived.setdefault(int(msg["seq"]), time.monotonic())
                    counts["images"] += 1
                except (ValueError, KeyError, TypeError) as exc:
                    counts["bad"] += 1
                    metrics.BAD.labels("writer", "malformed").inc()
                    log.warning("bad image message (%s); ignored", exc)
        if decisions in events:
            for parts in codec.waiting(decisions):
                last_input = time.monotonic()
                try:
                    msg = codec.unpack(parts)
                    if msg["kind"] != "decision":
                        raise ValueError(f"unexpected {msg['kind']} message")
                    codec.require(msg, "seq", "views", "decision", "t_gate_utc")
                    pending.append((time.monotonic() + IMAGE_WAIT_S, msg))
                except (ValueError, KeyError, TypeError) as exc:
                    counts["bad"] += 1
                    metrics.BAD.labels("writer", "malformed").inc()
                    log.warning("bad decision message (%s); ignored", exc)
        now = time.monotonic()
        still = []
        for limit, decision in pending:
            if config.storage.keep_images == "none" or ready(decision) or now >= limit or not ctx.running:
                store(decision)
            else:
                still.append((limit, decision))
        pending = still
        for seq in [s for s, t in arrived.items() if now - t > keep_for_s]:
            images.pop(seq, None)
            arrived.pop(seq)
            counts["images_expired"] += 1
            log.warning("images of container %d had no decision in time; released", seq)
        recorder.idle()
        metrics.DEPTH.labels("writer").set(len(pending))
        ctx.beat(pending=len(pending), **counts)
    recorder.close()
    ctx.beat(force=True, pending=0, **counts)
    decisions.close(linger=0)
    images_in.close(linger=0)
