"""Inference worker: pull frames, run the engine on a batch, push one result per view.

Several workers pull from the station's PUSH socket (ZeroMQ balances them). A worker
takes what is queued, up to `pipeline.batch` views (the six views of a container when
they are there), so a busy line gets batched inference and an idle one no added wait.

Hot switch: with `engine.model: active`, the worker watches <data_dir>/models/ACTIVE;
when it changes, the new engine is loaded in a background thread while the old one
keeps serving, and swapped in between two batches. Every result names the version
that produced it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from camera.frame import Frame
from pipeline import codec
from pipeline.outbox import Outbox

log = logging.getLogger(__name__)

POLL_ACTIVE_S = 1.0
MAX_TEXT = 1000  # a reason sent on: the decoder refuses free text over 4096 characters


def load_real_engine(config):
    """The engine config.yaml names (engine.model: "active", a version or a package folder)."""
    from engines.runtimes import open_engine

    return open_engine(config.engine.model, config.engine, Path(config.data_dir))


def active_marker(data_dir: Path) -> tuple[int, str] | None:
    """What identifies the active version now (mtime + content of ACTIVE), None if absent."""
    path = Path(data_dir) / "models" / "ACTIVE"
    try:
        return path.stat().st_mtime_ns, path.read_text().strip()
    except OSError:
        return None


class EngineSlot:
    """The engine in use, and the next one while it loads."""

    def __init__(self, factory: Callable[[Any], Any], config: Any) -> None:
        self.factory, self.config = factory, config
        self.marker = active_marker(config.data_dir)
        self.engine = factory(config)
        self._next: Any = None
        self._loading: threading.Thread | None = None
        self._checked = time.monotonic()

    def poll(self) -> None:
        """Between batches: start loading a new active version, or swap in a loaded one."""
        if self._next is not None:
            old, self.engine, self._next = self.engine, self._next, None
            log.info("switched model %s -> %s", getattr(old, "version", "?"), self.engine.version)
            old.close()
            return
        if self.config.engine.model != "active" or self._loading is not None:
            return
        if time.monotonic() - self._checked < POLL_ACTIVE_S:
            return
        self._checked = time.monotonic()
        marker = active_marker(self.config.data_dir)
        if marker is None or marker == self.marker:
            return
        self.marker = marker
        if marker[1] == self.engine.version:  # re-activated, or ACTIVE written when the registry began
            return
        log.info("active model changed to %s; loading it beside %s", marker[1], self.engine.version)
        self._loading = threading.Thread(target=self._load, daemon=True, name="engine-load")
        self._loading.start()

    def _load(self) -> None:
        try:
            engine = self.factory(self.config)
            self._next = engine
        except Exception as exc:  # a broken new version must not stop the line
            log.error("ALARM: cannot load the new active model (%s); keeping %s", exc, self.engine.version)
        finally:
            self._loading = None


def _as_bgr(frame: Frame) -> np.ndarray:
    pixels = frame.pixels
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        import cv2

        return cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2BGR)
    return pixels


def _partial_header(parts: list) -> dict | None:
    """What a malformed frame still tells: enough to reject its container without waiting."""
    try:
        head = json.loads(bytes(parts[0]))
        return {k: head[k] for k in ("container_seq", "view", "t_gate_ns", "camera_id")}
    except Exception:
        return None


class WorkerStage:
    """One inference worker: frames in, one `view` result per frame out (never none)."""

    def __init__(self, ctx) -> None:
        from pipeline import metrics

        self.ctx, self.metrics = ctx, metrics
        config = self.config = ctx.config
        self.name = ctx.name
        # Frames must have their camera's configured size; a captured batch keeps its own.
        self.sizes = {cam.view: (cam.height, cam.width) for cam in config.cameras if cam.driver != "batch"}
        # The engine first: a worker that connected while its model loads would take up to
        # `hwm` frames it cannot infer before they go stale; unconnected, the station drops
        # them at once and the decision stage rejects their containers without waiting.
        self.slot = EngineSlot(ctx.factory("engine_factory", load_real_engine), config)
        self.frames = ctx.endpoints.connect("frames", zmq.PULL)
        self.results = Outbox(ctx.endpoints.connect("results", zmq.PUSH), "decision stage")
        self.images = ctx.endpoints.connect("images", zmq.PUSH) if config.storage.keep_images != "none" else None
        metrics.MODEL.labels(self.slot.engine.version).set(1)
        metrics.ready("worker")
        self.counts = {"frames": 0, "inferred": 0, "bad": 0, "stale": 0, "images_dropped": 0, "batches": 0}
        self.deadline_ns = int((config.line.travel_time_ms - config.line.relay_lead_ms) * 1e6)

    def view_result(self, seq, view, t_gate_ns, camera_id, outcome, reason=None, **extra) -> None:
        self.results.send([codec.pack("view", seq=seq, view=view, t_gate_ns=t_gate_ns, camera_id=camera_id,
                                      outcome=outcome, reason=reason, worker=self.name, **extra)])

    def bad(self, parts: list, reason: str, detail: str) -> None:
        self.counts["bad"] += 1
        self.metrics.BAD.labels("worker", reason).inc()
        self.metrics.FRAMES.labels("worker", "bad", reason).inc()
        log.warning("bad frame (%s): %s", reason, detail)
        head = _partial_header(parts)
        if head is not None:  # only if what it tells is well-formed: else it would be refused anyway
            try:
                msg = codec.validate(codec.ViewResult, {
                    "kind": "view", "seq": head["container_seq"], "view": head["view"],
                    "t_gate_ns": head["t_gate_ns"], "camera_id": head["camera_id"], "outcome": "bad",
                    "reason": reason}, "frame")
            except codec.BadMessage:
                return
            self.view_result(msg["seq"], msg["view"], msg["t_gate_ns"], msg["camera_id"], "bad", reason)

    def take(self) -> list[Frame]:
        """What is queued, up to pipeline.batch views; bad, missing and stale ones answered here."""
        batch: list[Frame] = []
        while len(batch) < self.config.pipeline.batch:
            try:
                parts = self.frames.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self.counts["frames"] += 1
            try:
                frame = codec.frame_from_parts(parts)
            except ValueError as exc:
                self.bad(parts, "malformed", str(exc))
                continue
            if frame.pixels is None:
                self.metrics.FRAMES.labels("worker", "missing", frame.missing or "").inc()
                self.view_result(frame.container_seq, frame.view, frame.t_gate_ns, frame.camera_id,
                                 "missing", frame.missing or "missing")
                continue
            if frame.view in self.sizes and frame.pixels.shape[:2] != self.sizes[frame.view]:
                self.bad(parts, "wrong size", f"container {frame.container_seq} view {frame.view}: "
                         f"{frame.pixels.shape} instead of {self.sizes.get(frame.view)}")
                continue
            if frame.t_gate_ns + self.deadline_ns <= time.monotonic_ns():
                # Its container is decided already (fail-safe): inferring it would only
                # delay the next ones. This is how an overloaded line catches up.
                self.counts["stale"] += 1
                self.metrics.FRAMES.labels("worker", "stale", "past deadline").inc()
                continue
            batch.append(frame)
        return batch

    def infer(self, batch: list[Frame]) -> None:
        engine = self.slot.engine
        t0 = time.perf_counter()
        try:
            found = engine.infer([_as_bgr(f) for f in batch])
            error = None
        except Exception as exc:  # one bad batch rejects its containers, the worker lives on
            log.exception("engine failed on a batch of %d views", len(batch))
            found, error = [None] * len(batch), f"engine error: {exc}"[:MAX_TEXT]
        per_view = (time.perf_counter() - t0) / len(batch)
        self.counts["batches"] += 1
        for frame, dets in zip(batch, found):
            if dets is None:
                self.view_result(frame.container_seq, frame.view, frame.t_gate_ns, frame.camera_id, "bad", error)
                self.metrics.FRAMES.labels("worker", "bad", "engine error").inc()
                continue
            self.metrics.ENGINE.observe(per_view)
            self.metrics.FRAMES.labels("worker", "inferred", "").inc()
            self.counts["inferred"] += 1
            self.view_result(frame.container_seq, frame.view, frame.t_gate_ns, frame.camera_id,
                             "inferred", None, t_capture_ns=frame.t_capture_ns,
                             detections=dets.to_list(), model_version=engine.version,
                             engine_ms=round(per_view * 1e3, 3))
            self.send_image(frame)

    def send_image(self, frame: Frame) -> None:
        if self.images is None:
            return
        try:
            self.images.send_multipart(codec.image_parts(frame.container_seq, frame.view, frame.pixels),
                                       zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.counts["images_dropped"] += 1
            self.metrics.FRAMES.labels("worker", "image dropped", "writer busy").inc()

    def run(self) -> None:
        ctx = self.ctx
        ctx.state = "ready"
        log.info("%s ready with model %s", self.name, self.slot.engine.version)
        while ctx.running:
            self.slot.poll()
            if self.frames.poll(100):
                batch = self.take()
                if batch:
                    self.infer(batch)
            self.results.flush()
            ctx.beat(version=self.slot.engine.version, **self.counts)
        self.results.flush()
        self.slot.engine.close()
        self.frames.close(linger=0)
        self.results.sock.close(linger=3000)
        if self.images is not None:
            self.images.close(linger=1000)


def run(ctx) -> None:
    WorkerStage(ctx).run()
