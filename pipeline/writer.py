"""The storage writer process: decisions (and the pixels of their views) into storage/.

Workers send each inferred view's pixels here; the decision stage sends the decision.
A decision is written once its inferred views' images are in, or after IMAGE_WAIT_S
(images travel on another socket and may trail the decision by a moment). Images
with no decision after the container's deadline plus a margin are released and counted:
memory stays bounded whatever happens upstream.

Records cannot be lost: the writer acknowledges (`ack`) each container once its row is
committed, and the decision stage keeps every decision until then and re-sends it (at
once when this stage starts and says `sync`). Writing is idempotent (one row per
container, storage.writer.Recorder), so a re-sent decision never doubles a row. Images
are secondary: they may be lost with a killed writer, or not kept on a nearly full disk
(storage.min_free_mb), while records go on committing. A database that cannot commit
(a full disk) is retried every RETRY_S; the stage never exits into a restart loop.
The reject controller's alarms (a container not ejected) arrive here too and become
event rows naming the container.

Control charts (storage/spc.py) run here, off the decision path: each committed
container is added to its cavity's and the line's class charts, the baseline read from
the database at start. An out-of-control point is a log WARNING, an event row (`spc
alarm`, detail naming the chart) and `edge_spc_alarms_total{chart,rule}`.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import zmq

from pipeline import codec
from pipeline.outbox import Outbox
from storage.bounded import BoundedSet

log = logging.getLogger(__name__)

IMAGE_WAIT_S = 0.5
IDLE_EXIT_S = 0.3
SPC_ALARM = "spc alarm"  # the event kind of a control-chart alarm (edge/ui and the report read it)
CHARTED_MAX = 100_000  # containers remembered as charted (a re-sent one is committed, and reported, again)
RETRY_S = 5.0  # a storage that cannot start or commit is tried again this often
Key = tuple[int, int]


class RecorderAdapter:
    """Turns decision messages into storage.records and hands them to storage.writer.Recorder;
    collects the keys of committed containers for the acknowledgement."""

    def __init__(self, config) -> None:
        from storage.spc_history import seeded_monitor
        from storage.writer import Recorder

        self.line_id = config.line.id
        self.committed: list[Key] = []
        self.alarms: list = []  # storage.spc.Alarm, raised by the last commits
        self._keys: dict[int, Key] = {}
        self._samples: dict[Key, Any] = {}
        self._charted: BoundedSet[Key, None] = BoundedSet(CHARTED_MAX)
        # line_id: on a database shared by several lines, repair and quota touch this line only.
        self.recorder = Recorder(config.database_url, config.data_dir, config.storage,
                                 line_id=config.line.id, on_commit=self._on_commit)
        self.spc = None
        if config.spc.enabled:
            self.spc = seeded_monitor(self.recorder.db, config.spc, datetime.now(timezone.utc), config.line.id,
                                      dict(config.engine.thresholds), config.engine.default_threshold)

    def _on_commit(self, records) -> None:
        for record in records:
            key = self._keys.pop(record.seq, None)
            if key is not None:
                self.committed.append(key)
                self._chart(key)

    def _chart(self, key: Key) -> None:
        sample = self._samples.pop(key, None)
        if self.spc is None or not self._charted.add(key):
            return
        self.alarms += self.spc.add(sample)

    def record(self, decision: dict[str, Any], images: dict[int, np.ndarray]) -> None:
        key = (decision["seq"], decision["t_gate_ns"])
        self._keys[decision["seq"]] = key
        self._samples[key] = spc_sample(decision)
        self.recorder.record(to_record(decision), images)

    def raise_alarms(self, metrics) -> None:
        """Out-of-control points of the charts the last commits fed: WARNING, metric, event row."""
        alarms, self.alarms = self.alarms, []
        for alarm in alarms:
            log.warning("SPC ALARM: %s", alarm.message())
            metrics.SPC_ALARMS.labels(alarm.chart, alarm.rule).inc()
            self.event(SPC_ALARM, None, alarm.message())

    def event(self, kind: str, seq: int | None, detail: str) -> None:
        from storage.records import EventRecord

        self.recorder.event(EventRecord(kind=kind, line_id=self.line_id, container_seq=seq, detail=detail))

    def idle(self) -> None:
        self.recorder.flush_due()

    @property
    def low_disk(self) -> bool:
        return self.recorder.low_disk

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
                           model_version=decision["model_version"], views=views,
                           section=decision.get("section"), cavity=decision.get("cavity"))


def spc_sample(decision: dict[str, Any]):
    """Decision message -> storage.spc.Sample (None when the charts do not count it)."""
    from storage.moulds import mould_name
    from storage.spc import sample

    classes = {name for v in decision["views"] for name in v.get("rejecting", ())}
    return sample(decision["reason"], mould_name(decision.get("section"), decision.get("cavity")), classes)


class WriterStage:
    def __init__(self, ctx) -> None:
        from pipeline import metrics

        self.ctx, self.metrics = ctx, metrics
        config = ctx.config
        self.config = config
        self.decisions = ctx.endpoints.bind("storage_in", zmq.PULL)
        self.images_in = ctx.endpoints.bind("images", zmq.PULL)
        self.acks = Outbox(ctx.endpoints.connect("results", zmq.PUSH), "decision stage")
        self.poller = zmq.Poller()
        self.poller.register(self.decisions, zmq.POLLIN)
        self.poller.register(self.images_in, zmq.POLLIN)
        self.keep_for_s = config.line.travel_time_ms / 1e3 + 5
        self.images: dict[int, dict[int, np.ndarray]] = {}
        self.arrived: dict[int, float] = {}
        self.pending: dict[Key, tuple[float, dict]] = {}  # key -> (write no later than, decision)
        self.stored: dict[int, None] = {}  # recent containers, to drop their late images quietly
        self.counts = {"stored": 0, "images": 0, "images_expired": 0, "bad": 0, "errors": 0, "alarms": 0,
                       "low_disk_episodes": 0}
        self.recorder = None
        self._low_disk = False
        metrics.ready("writer")
        metrics.BAD.labels("writer", "storage error")
        metrics.DISK_LOW.set(0)

    # -- storage -------------------------------------------------------------------------
    def open_recorder(self) -> None:
        """The first start fails loudly (a wrong URL must stop the line); a restarted writer
        waits for its storage instead (a full disk must not become a restart loop)."""
        factory = self.ctx.factory("recorder_factory", RecorderAdapter)
        if not self.ctx.options.get("restarted"):
            self.recorder = factory(self.config)
            return
        from storage.errors import StorageError

        self.ctx.state = "waiting for storage"
        while self.ctx.running:
            try:
                self.recorder = factory(self.config)
                return
            except (StorageError, OSError) as exc:
                log.error("ALARM: storage cannot open (%s); decisions wait in the decision stage's journal; "
                          "retrying in %.0f s", exc, RETRY_S)
                end = time.monotonic() + RETRY_S
                while self.ctx.running and time.monotonic() < end:
                    self.ctx.beat(**self.counts)
                    time.sleep(0.1)

    def _guard(self, what: str, call, *args) -> bool:
        """Storage trouble (a full disk) must not stop the line: count, log, carry on."""
        from storage.errors import StorageError

        try:
            call(*args)
            return True
        except Exception as exc:
            self.counts["errors"] += 1
            self.metrics.BAD.labels("writer", "storage error").inc()
            if isinstance(exc, StorageError):  # expected on a full disk: one line, no traceback
                log.error("ALARM: %s failed (%s); the decision stage re-sends what was not committed", what, exc)
            else:
                log.exception("ALARM: %s failed; the decision stage re-sends what was not committed", what)
            return False

    def raise_alarms(self) -> None:
        if getattr(self.recorder, "alarms", None):
            self._guard("storing control-chart alarms", self.recorder.raise_alarms, self.metrics)

    def acknowledge(self) -> None:
        committed = getattr(self.recorder, "committed", None)
        if committed:
            self.counts["stored"] += len(committed)
            for start in range(0, len(committed), 1000):
                self.acks.send([codec.pack("ack", keys=[list(k) for k in committed[start:start + 1000]])])
            committed.clear()
        low = bool(getattr(self.recorder, "low_disk", False))
        if low != self._low_disk:
            self._low_disk = low
            self.counts["low_disk_episodes"] += low
            self.metrics.DISK_LOW.set(int(low))
            if low:
                log.error("ALARM: free space on the data folder is below storage.min_free_mb: images are not "
                          "stored, records are")
            else:
                log.warning("free space is back above storage.min_free_mb: images are stored again")

    # -- inputs --------------------------------------------------------------------------
    def _ready(self, decision: dict) -> bool:
        have = self.images.get(decision["seq"], {})
        return all(v["view"] in have for v in decision["views"] if v["outcome"] == "inferred")

    def store(self, key: Key, decision: dict) -> None:
        seq = decision["seq"]
        views = self.images.pop(seq, {})
        self.arrived.pop(seq, None)
        self.stored[seq] = None
        if len(self.stored) > 10_000:
            self.stored.pop(next(iter(self.stored)))
        self._guard(f"storing container {seq}", self.recorder.record, decision, views)

    def on_image(self, parts: list) -> None:
        msg = codec.unpack(parts, ("image",), time.monotonic_ns())
        pixels = codec.image_from_parts(msg, parts)
        seq = msg["seq"]
        if seq in self.stored:  # a late view of a container already decided
            return
        self.images.setdefault(seq, {})[msg["view"]] = pixels
        self.arrived.setdefault(seq, time.monotonic())
        self.counts["images"] += 1

    def on_message(self, parts: list) -> None:
        msg = codec.unpack(parts, ("decision", "alarm"), time.monotonic_ns())
        if msg["kind"] == "alarm":
            self.counts["alarms"] += 1
            self._guard("storing an alarm", self.recorder.event, msg["alarm"], msg["seq"], msg["detail"])
            return
        key = (msg["seq"], msg["t_gate_ns"])
        if key not in self.pending:  # a re-sent decision already waiting here: once is enough
            self.pending[key] = (time.monotonic() + IMAGE_WAIT_S, msg)

    def _drain(self, sock: zmq.Socket, handler, copy: bool) -> bool:
        got = False
        for parts in codec.waiting(sock, copy=copy):
            got = True
            try:
                handler(parts)
            except codec.BadMessage as exc:
                self.counts["bad"] += 1
                self.metrics.BAD.labels("writer", exc.reason).inc()
                log.warning("bad message for the storage writer (%s); ignored", exc)
        return got

    # -- loop ----------------------------------------------------------------------------
    def run(self) -> None:
        ctx = self.ctx
        self.open_recorder()
        if self.recorder is None:
            return
        self.acks.send([codec.pack("sync", stage="writer", pid=os.getpid())])  # re-send what I may have lost
        ctx.state = "ready"
        last_input = time.monotonic()
        while ctx.running or self.pending or time.monotonic() - last_input < IDLE_EXIT_S:
            events = dict(self.poller.poll(50))
            if self.images_in in events and self._drain(self.images_in, self.on_image, copy=False):
                last_input = time.monotonic()
            if self.decisions in events and self._drain(self.decisions, self.on_message, copy=True):
                last_input = time.monotonic()
            now = time.monotonic()
            for key, (limit, decision) in list(self.pending.items()):
                if (self.config.storage.keep_images == "none" or self._ready(decision) or now >= limit
                        or not ctx.running):
                    del self.pending[key]
                    self.store(key, decision)
            for seq in [s for s, t in self.arrived.items() if now - t > self.keep_for_s]:
                self.images.pop(seq, None)
                self.arrived.pop(seq)
                self.counts["images_expired"] += 1
                log.warning("images of container %d had no decision in time; released", seq)
            self._guard("writing to the database", self.recorder.idle)
            self.acknowledge()
            self.raise_alarms()
            self.acks.flush()
            self.metrics.DEPTH.labels("writer").set(len(self.pending))
            ctx.beat(pending=len(self.pending), low_disk=self._low_disk, **self.counts)
        self._guard("the last write", self.recorder.close)
        self.acknowledge()
        self.raise_alarms()
        end = time.monotonic() + 2
        while self.acks.waiting and time.monotonic() < end:
            self.acks.flush()
            time.sleep(0.01)
        ctx.beat(force=True, pending=0, **self.counts)
        self.decisions.close(linger=0)
        self.images_in.close(linger=0)
        self.acks.sock.close(linger=2000)


def run(ctx) -> None:
    WriterStage(ctx).run()
