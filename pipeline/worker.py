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
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from camera.frame import Frame
from pipeline import codec
from pipeline.outbox import Outbox

log = logging.getLogger(__name__)

POLL_ACTIVE_S = 1.0


def resolve_package(config):
    """The model package config names: the registry's active version, a version, or a folder."""
    from engines.package import ModelPackage

    model = config.engine.model
    if model == "active":
        from storage.registry import Registry

        registry = Registry(config.data_dir)
        registry.ensure_default()
        return registry.active()
    folder = Path(model)
    if folder.is_dir():
        return ModelPackage.load(folder)
    return ModelPackage.load(Path(config.data_dir) / "models" / model)


def load_real_engine(config):
    from engines.runtimes import load_engine

    return load_engine(resolve_package(config), config.engine, Path(config.data_dir) / "cache",
                       data_dir=Path(config.data_dir))


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


def run(ctx) -> None:
    from pipeline import metrics

    config = ctx.config
    name = ctx.name
    # Frames must have their camera's configured size; a captured batch keeps its own.
    sizes = {cam.view: (cam.height, cam.width) for cam in config.cameras if cam.driver != "batch"}
    frames = ctx.endpoints.connect("frames", zmq.PULL)
    results = Outbox(ctx.endpoints.connect("results", zmq.PUSH), "decision stage")
    images = None
    if config.storage.keep_images != "none":
        images = ctx.endpoints.connect("images", zmq.PUSH)
    slot = EngineSlot(ctx.factory("engine_factory", load_real_engine), config)
    metrics.MODEL.labels(slot.engine.version).set(1)
    counts = {"frames": 0, "inferred": 0, "bad": 0, "stale": 0, "images_dropped": 0, "batches": 0}
    deadline_ns = int((config.line.travel_time_ms - config.line.relay_lead_ms) * 1e6)
    ctx.state = "ready"
    log.info("%s ready with model %s", name, slot.engine.version)

    def view_result(seq, view, t_gate_ns, camera_id, outcome, reason=None, **extra) -> None:
        results.send([codec.pack("view", seq=seq, view=view, t_gate_ns=t_gate_ns, camera_id=camera_id,
                                 outcome=outcome, reason=reason, worker=name, **extra)])

    def bad(parts: list, reason: str, detail: str) -> None:
        counts["bad"] += 1
        metrics.BAD.labels("worker", reason).inc()
        metrics.FRAMES.labels("worker", "bad", reason).inc()
        log.warning("bad frame (%s): %s", reason, detail)
        head = _partial_header(parts)
        if head is not None:
            view_result(head["container_seq"], head["view"], head["t_gate_ns"], head["camera_id"],
                        "bad", reason)

    while ctx.running:
        slot.poll()
        batch: list[Frame] = []
        if frames.poll(100):
            while len(batch) < config.pipeline.batch:
                try:
                    parts = frames.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                counts["frames"] += 1
                try:
                    frame = Frame.from_parts(parts)
                except ValueError as exc:
                    bad(parts, "malformed", str(exc))
                    continue
                if frame.pixels is None:
                    metrics.FRAMES.labels("worker", "missing", frame.missing or "").inc()
                    view_result(frame.container_seq, frame.view, frame.t_gate_ns, frame.camera_id,
                                "missing", frame.missing or "missing")
                    continue
                if frame.view in sizes and frame.pixels.shape[:2] != sizes[frame.view]:
                    bad(parts, "wrong size", f"container {frame.container_seq} view {frame.view}: "
                        f"{frame.pixels.shape} instead of {sizes.get(frame.view)}")
                    continue
                if frame.t_gate_ns + deadline_ns <= time.monotonic_ns():
                    # Its container is decided already (fail-safe): inferring it would only
                    # delay the next ones. This is how an overloaded line catches up.
                    counts["stale"] += 1
                    metrics.FRAMES.labels("worker", "stale", "past deadline").inc()
                    continue
                batch.append(frame)
        if batch:
            engine = slot.engine
            t0 = time.perf_counter()
            try:
                found = engine.infer([_as_bgr(f) for f in batch])
                error = None
            except Exception as exc:  # one bad batch rejects its containers, the worker lives on
                log.exception("engine failed on a batch of %d views", len(batch))
                found, error = [None] * len(batch), f"engine error: {exc}"
            per_view = (time.perf_counter() - t0) / len(batch)
            counts["batches"] += 1
            for frame, dets in zip(batch, found):
                if dets is None:
                    view_result(frame.container_seq, frame.view, frame.t_gate_ns, frame.camera_id,
                                "bad", error)
                    metrics.FRAMES.labels("worker", "bad", "engine error").inc()
                    continue
                metrics.ENGINE.observe(per_view)
                metrics.FRAMES.labels("worker", "inferred", "").inc()
                counts["inferred"] += 1
                view_result(frame.container_seq, frame.view, frame.t_gate_ns, frame.camera_id,
                            "inferred", None, t_capture_ns=frame.t_capture_ns,
                            detections=dets.to_list(), model_version=engine.version,
                            engine_ms=round(per_view * 1e3, 3))
                if images is not None:
                    try:
                        images.send_multipart(codec.image_parts(frame.container_seq, frame.view, frame.pixels),
                                              zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        counts["images_dropped"] += 1
                        metrics.FRAMES.labels("worker", "image dropped", "writer busy").inc()
        results.flush()
        ctx.beat(version=slot.engine.version, **counts)
    results.flush()
    slot.engine.close()
    frames.close(linger=0)
    results.sock.close(linger=3000)
    if images is not None:
        images.close(linger=1000)
