"""The station stage: gate events and frames from camera/ onto ZeroMQ.

The station (camera.station) calls `emit` for each of the six views of every gate
event. Here each frame is announced to the decision stage (the container exists from
its gate time on, whatever happens to its frames) and pushed to the workers without
blocking: a full queue or no worker drops the frame, counts it, and tells the decision
stage, which rejects that container as soon as its other views are in. Missing views
(pixels None) go straight to the decision stage. Nothing here ever waits on a slow
consumer: the gate keeps its own time.

Container numbers continue across restarts (<data_dir>/run/last_seq), so a restarted
station never re-uses the number of a container already decided and stored.
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
from pipeline.outbox import Outbox
from pipeline.sockets import run_dir

log = logging.getLogger(__name__)


class SeqMap:
    """Shift the station's container numbers so they never go back (persisted)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.last = int(path.read_text().strip())
        except (OSError, ValueError):
            self.last = -1
        self.base: int | None = None

    def __call__(self, seq: int) -> int:
        if self.base is None:
            self.base = 0 if seq > self.last else self.last - seq + 1
        out = seq + self.base
        if out > self.last:
            self.last = out
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(str(out))
            tmp.replace(self.path)
        return out


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


def run(ctx) -> None:
    from pipeline import metrics

    config = ctx.config
    limit = ctx.options.get("containers")
    frames = ctx.endpoints.bind("frames", zmq.PUSH)
    decision = Outbox(ctx.endpoints.connect("results", zmq.PUSH), "decision stage")
    seqs = SeqMap(run_dir(config.data_dir) / "last_seq")
    connected = _wait_for_workers(frames, config.pipeline.workers, timeout_s=10)
    if connected < config.pipeline.workers:
        log.warning("%d of %d workers connected after 10 s; starting anyway", connected,
                    config.pipeline.workers)
    station = ctx.factory("station_factory", build_real_station)(config)
    lock = threading.Lock()
    stop = threading.Event()
    counts = {"gated": 0, "sent": 0, "dropped": 0, "missing": 0}
    announced: set[tuple[int, int]] = set()

    gate_out: list[Outbox] = []  # created in the gate thread: a ZeroMQ socket belongs to one thread

    def announce(seq: int, t_gate_ns: int, out: Outbox) -> None:
        """Tell the decision stage a container exists (once), so its deadline runs from the gate."""
        key = (seq, t_gate_ns)
        if key in announced:
            return
        if len(announced) > 1000:
            announced.clear()
        announced.add(key)
        counts["gated"] += 1
        out.send([codec.pack("gate", seq=seq, t_gate_ns=t_gate_ns)])

    def on_gate(seq: int, t_gate_ns: int) -> None:
        """Announce each container at its gate event, not at its first frame: when the cameras
        or the renderer are slow, the decision stage still rejects it at its deadline. Called
        from the station's gate thread, which owns the socket it creates."""
        if not gate_out:
            gate_out.append(Outbox(ctx.endpoints.connect("results", zmq.PUSH), "decision stage"))
        with lock:
            announce(seqs(seq), t_gate_ns, gate_out[0])

    def notify(seq: int, frame: Frame, outcome: str, reason: str) -> None:
        decision.send([codec.pack("view", seq=seq, view=frame.view, t_gate_ns=frame.t_gate_ns,
                                  camera_id=frame.camera_id, outcome=outcome, reason=reason,
                                  t_capture_ns=frame.t_capture_ns)])

    def emit(frame: Frame) -> None:
        with lock:
            seq = seqs(frame.container_seq)
            announce(seq, frame.t_gate_ns, decision)
            frame.container_seq = seq
            if frame.pixels is None:
                counts["missing"] += 1
                metrics.FRAMES.labels("station", "missing", frame.missing or "").inc()
                notify(seq, frame, "missing", frame.missing or "missing")
                return
            try:
                frames.send_multipart(frame.parts(), zmq.NOBLOCK, copy=False)
                counts["sent"] += 1
                metrics.FRAMES.labels("station", "sent", "").inc()
            except zmq.Again:
                counts["dropped"] += 1
                metrics.FRAMES.labels("station", "dropped", "queue full").inc()
                log.warning("container %d view %d dropped: workers' queue full (hwm %d) or no worker",
                            seq, frame.view, config.pipeline.hwm)
                notify(seq, frame, "dropped", "queue full")

    failure: list[BaseException] = []

    def gate_loop() -> None:
        try:
            station.run(emit, stop, containers=limit, on_gate=on_gate)
        except BaseException as exc:  # reported by the main thread, which owns the exit code
            failure.append(exc)

    thread = threading.Thread(target=gate_loop, name="station", daemon=True)
    thread.start()
    ctx.state = "ready"
    log.info("station running%s", f" for {limit} containers" if limit else "")
    while thread.is_alive():
        if not ctx.running:
            stop.set()
        with lock:
            decision.flush()
            stats = dict(counts)
        try:
            stats["station"] = station.stats()
        except Exception:  # stats are informative only
            pass
        ctx.beat(**stats)
        thread.join(0.05)
    station.close()
    if failure:
        raise failure[0]
    decision.send([codec.pack("end", gated=counts["gated"])])
    end = time.monotonic() + 5
    while decision.waiting and time.monotonic() < end:
        decision.flush()
        time.sleep(0.01)
    ctx.state = "done"
    ctx.beat(force=True, **counts)
    log.info("station done: %d containers, %d frames sent, %d dropped, %d missing", counts["gated"],
             counts["sent"], counts["dropped"], counts["missing"])
    frames.close(linger=3000)
    decision.sock.close(linger=3000)
    for out in gate_out:
        out.sock.close(linger=3000)
