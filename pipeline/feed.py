"""The station stage: gate events and frames from camera/ onto ZeroMQ.

The station (camera.station) calls `emit` for each of the six views of every gate
event. Here each frame is announced to the decision stage (the container exists from
its gate time on, whatever happens to its frames) and pushed to the workers without
blocking: a full queue or no worker drops the frame, counts it, and tells the decision
stage, which rejects that container as soon as its other views are in. Missing views
(pixels None) go straight to the decision stage. Nothing here ever waits on a slow
consumer: the gate keeps its own time.

Container numbers continue across restarts (<data_dir>/run/last_seq), so a restarted
station never re-uses the number of a container already decided and stored. Every gate
event is logged (<data_dir>/run/gates.log, pipeline/journal.GateLog) before the decision
stage is told: a decision stage that dies with the message unread finds it there.
`--containers N` counts the gate events of the whole run, across station restarts
(<data_dir>/run/first_seq: the run's first container number). A full disk degrades both
files to memory (an ALARM), never the station.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message

from camera.frame import Frame
from pipeline import codec
from pipeline.journal import GateLog
from pipeline.outbox import Outbox
from pipeline.sockets import run_dir
from storage.bounded import BoundedSet
from storage.files import Outage, atomic_write, sweep_temporaries

log = logging.getLogger(__name__)


ANNOUNCED_MAX = 1_000  # containers remembered as announced (far more than are ever in flight)


class SeqMap:
    """Shift the station's container numbers so they never go back (persisted).

    A number is saved only after its gate is in the gate log (`save`), and a restart
    starts above both files: a station killed between the two neither reuses a number
    nor loses the container its gate log already names.
    """

    def __init__(self, path: Path, floor: int = -1) -> None:
        self.path = path
        self.last = max(read_last_seq(path), floor)
        self.saved = self.last
        sweep_temporaries(path)  # a write that a kill -9 interrupted
        self.base: int | None = None
        self.outage = Outage(path, "container numbers are kept in memory", log)

    def __call__(self, seq: int) -> int:
        if self.base is None:
            self.base = 0 if seq > self.last else self.last - seq + 1
        out = seq + self.base
        self.last = max(self.last, out)
        return out

    def save(self) -> None:
        """Persist the last number handed out (once per container)."""
        if self.saved == self.last:
            return
        try:
            with atomic_write(self.path, fsync=False) as fh:
                fh.write(str(self.last))
            self.saved = self.last
            self.outage.ended()
        except OSError as exc:
            self.outage.failed(exc)


class FirstSeq:
    """The first container number of this `edge run` (the supervisor removes the file at its
    start): a restarted station counts --containers N from it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        seq = read_last_seq(path)
        self.seq: int | None = None if seq < 0 else seq

    def note(self, seq: int) -> None:
        if self.seq is None:
            self.seq = seq
            try:
                self.path.write_text(str(seq))
            except OSError as exc:
                log.error("ALARM: cannot write %s (%s); a restarted station would count --containers "
                          "from its own start", self.path, exc)


def read_last_seq(path: Path) -> int:
    """The last container number a station used (-1 before the first)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return -1


def build_real_station(config):
    from camera.station import build_station

    return build_station(config.cameras, config.gate, config.line)


def _wait_for_workers(sock: zmq.Socket, count: int, timeout_s: float) -> int:
    """Block until `count` workers connected (no frame is dropped at start-up for want of one)."""
    monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    seen, end = 0, time.monotonic() + timeout_s
    while seen < count and time.monotonic() < end:
        if monitor.poll(100):
            event = recv_monitor_message(monitor)
            if event["event"] in (zmq.EVENT_ACCEPTED,):
                seen += 1
    sock.disable_monitor()
    monitor.close(0)
    return seen


class StationStage:
    """The station's process: camera.station's frames and gate events onto the sockets.

    `on_gate` runs in the station's gate thread, `emit` in its camera threads; both hold
    `lock`. The main thread beats and flushes.
    """

    def __init__(self, ctx) -> None:
        from pipeline import metrics

        self.ctx, self.metrics = ctx, metrics
        metrics.ready("station")
        config = self.config = ctx.config
        self.limit = ctx.options.get("containers")
        self.frames = ctx.endpoints.bind("frames", zmq.PUSH)
        self.decision = Outbox(ctx.endpoints.connect("results", zmq.PUSH), "decision stage")
        self.gate_out: Outbox | None = None  # made in the gate thread: a ZeroMQ socket belongs to one thread
        folder = run_dir(config.data_dir)
        self.gates = GateLog(folder / "gates.log")
        self.seqs = SeqMap(folder / "last_seq", floor=self.gates.last_seq)
        self.first = FirstSeq(folder / "first_seq")
        if self.limit is not None and self.first.seq is not None:  # this run's gates before a restart count
            self.limit = max(0, self.limit - (self.seqs.last - self.first.seq + 1))
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counts = {"gated": 0, "sent": 0, "dropped": 0, "missing": 0}
        self.announced: BoundedSet[tuple[int, int], None] = BoundedSet(ANNOUNCED_MAX)
        self.failure: list[BaseException] = []
        self.station = None

    def announce(self, seq: int, t_gate_ns: int, out: Outbox, **mould: int | None) -> None:
        """Tell the decision stage a container exists (once), so its deadline runs from the gate;
        `mould` (section=, cavity=) when the gate read it."""
        key = (seq, t_gate_ns)
        if not self.announced.add(key):
            return
        self.counts["gated"] += 1
        self.first.note(seq)
        self.gates.add(seq, t_gate_ns)  # before the message: a decision stage that dies finds it
        self.seqs.save()  # after the gate log: a number saved is a container logged
        out.send([codec.pack("gate", seq=seq, t_gate_ns=t_gate_ns, **mould)])

    def on_gate(self, seq: int, t_gate_ns: int, section: int | None = None, cavity: int | None = None) -> None:
        """Announce each container at its gate event, not at its first frame: when the cameras
        or the renderer are slow, the decision stage still rejects it at its deadline."""
        if self.gate_out is None:
            self.gate_out = Outbox(self.ctx.endpoints.connect("results", zmq.PUSH), "decision stage")
        with self.lock:
            self.announce(self.seqs(seq), t_gate_ns, self.gate_out, section=section, cavity=cavity)

    def notify(self, seq: int, frame: Frame, outcome: str, reason: str) -> None:
        self.decision.send([codec.pack("view", seq=seq, view=frame.view, t_gate_ns=frame.t_gate_ns,
                                       camera_id=frame.camera_id, outcome=outcome, reason=reason,
                                       t_capture_ns=frame.t_capture_ns)])

    def emit(self, frame: Frame) -> None:
        with self.lock:
            seq = self.seqs(frame.container_seq)
            self.announce(seq, frame.t_gate_ns, self.decision)
            frame.container_seq = seq
            if frame.pixels is None:
                self.counts["missing"] += 1
                self.metrics.FRAMES.labels("station", "missing", frame.missing or "").inc()
                self.notify(seq, frame, "missing", frame.missing or "missing")
                return
            try:
                self.frames.send_multipart(codec.frame_parts(frame), zmq.NOBLOCK, copy=False)
                self.counts["sent"] += 1
                self.metrics.FRAMES.labels("station", "sent", "").inc()
            except zmq.Again:
                self.counts["dropped"] += 1
                self.metrics.FRAMES.labels("station", "dropped", "queue full").inc()
                log.warning("container %d view %d dropped: workers' queue full (hwm %d) or no worker",
                            seq, frame.view, self.config.pipeline.hwm)
                self.notify(seq, frame, "dropped", "queue full")

    def _gate_loop(self) -> None:
        try:
            self.station.run(self.emit, self.stop, containers=self.limit, on_gate=self.on_gate)
        except BaseException as exc:  # reported by the main thread, which owns the exit code
            self.failure.append(exc)

    def run(self) -> None:
        ctx, config = self.ctx, self.config
        connected = _wait_for_workers(self.frames, config.pipeline.workers, timeout_s=10)
        if connected < config.pipeline.workers:
            log.warning("%d of %d workers connected after 10 s; starting anyway", connected,
                        config.pipeline.workers)
        self.station = ctx.factory("station_factory", build_real_station)(config)
        if self.limit == 0:
            log.info("all %s containers of this run were gated before a restart", ctx.options.get("containers"))
            self.stop.set()
        thread = threading.Thread(target=self._gate_loop, name="station", daemon=True)
        thread.start()
        ctx.state = "ready"
        log.info("station running%s", f" for {self.limit} containers" if self.limit else "")
        while thread.is_alive():
            if not ctx.running:
                self.stop.set()
            with self.lock:
                self.decision.flush()
                stats = dict(self.counts)
            try:
                stats["station"] = self.station.stats()
            except Exception:  # stats are informative only
                pass
            ctx.beat(**stats)
            thread.join(0.05)
        self.station.close()
        self.gates.close()
        if self.failure:
            raise self.failure[0]
        self.finish()

    def finish(self) -> None:
        self.decision.send([codec.pack("end", gated=self.counts["gated"])])
        end = time.monotonic() + 5
        while self.decision.waiting and time.monotonic() < end:
            self.decision.flush()
            time.sleep(0.01)
        self.ctx.state = "done"
        self.ctx.beat(force=True, **self.counts)
        c = self.counts
        log.info("station done: %d containers, %d frames sent, %d dropped, %d missing", c["gated"], c["sent"],
                 c["dropped"], c["missing"])
        self.frames.close(linger=3000)
        for out in (self.decision, self.gate_out):
            if out is not None:
                out.sock.close(linger=3000)


def run(ctx) -> None:
    StationStage(ctx).run()
