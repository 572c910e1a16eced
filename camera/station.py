"""The six-view station: a gate event for container n becomes six tagged Frames.

On event n the left bank (views 0-2) fires at once and the right bank (views 3-5)
after `line.rotation_delay_ms`, while the container turns, or, with a second sensor
after the turn (`gate.right_bank`), on that sensor's event for container n. Each camera has its own
thread (camera/worker.py), so a slow or lost camera delays nobody else; every gate
event yields exactly six Frames, the ones without an image marked missing with a
reason, so the decision can reject the container instead of waiting for it.
`emit` is only ever called from the thread that called `run`, so it may write to a
socket that is not thread-safe.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from camera.base import Camera, build_camera, monotonic_ns
from camera.config import check_six_views
from camera.errors import CameraError
from camera.frame import VIEWS, Frame
from camera.gates.base import Gate, GateEvent, build_gate
from camera.worker import RECONNECT_INTERVAL_S, CameraWorker, Job

log = logging.getLogger(__name__)

GATE_POLL_S = 0.05


@dataclass(frozen=True)
class AwaitingTurn:
    """A container past the first gate whose right bank waits for the second sensor."""

    seq: int
    t_gate_ns: int
    t_expected_ns: int  # gate time + rotation delay


class RightBankMatcher:
    """Attribute second-sensor events to containers by the rotation delay.

    Container n's event is expected at its gate time + rotation delay; one within
    +-window of that (half the container spacing at most, so no two containers compete)
    is its own. A container whose window passed gets its right bank reported missing; an
    event that fits no container is counted and ignored, never given to a neighbour.
    """

    def __init__(self, rotation_ns: int, window_ns: int) -> None:
        self.rotation_ns = rotation_ns
        self.window_ns = window_ns
        self._waiting: deque[AwaitingTurn] = deque()
        self._lock = threading.Lock()
        self.unmatched = 0

    def add(self, seq: int, t_gate_ns: int) -> None:
        with self._lock:
            self._waiting.append(AwaitingTurn(seq, t_gate_ns, t_gate_ns + self.rotation_ns))

    def expired(self, now_ns: int) -> list[AwaitingTurn]:
        """Containers whose window closed before `now_ns` without an event."""
        out = []
        with self._lock:
            while self._waiting and self._waiting[0].t_expected_ns + self.window_ns < now_ns:
                out.append(self._waiting.popleft())
        return out

    def match(self, t_event_ns: int) -> AwaitingTurn | None:
        with self._lock:
            for item in self._waiting:
                if abs(t_event_ns - item.t_expected_ns) <= self.window_ns:
                    self._waiting.remove(item)
                    return item
        self.unmatched += 1
        return None

    def drain(self) -> list[AwaitingTurn]:
        with self._lock:
            out, self._waiting = list(self._waiting), deque()
        return out


class Station:
    def __init__(self, cameras: list[Camera], gate: Gate, line, right_gate: Gate | None = None) -> None:
        self.cameras = sorted(cameras, key=lambda cam: cam.config.view)
        self.gate = gate
        self.right_gate = right_gate
        self.line = line
        self._rotation_ns = int(line.rotation_delay_ms * 1e6)
        self._stop = threading.Event()  # tells the camera workers to finish
        self._halt = threading.Event()  # tells the gate thread to take no more containers
        self._out: "queue.Queue[Frame]" = queue.Queue()
        self.workers = [CameraWorker(cam, self._out, self._stop) for cam in self.cameras]
        self._playlist = next((p for p in (cam.playlist() for cam in self.cameras) if p is not None), None)
        self.counts = {"containers": 0, "frames_emitted": 0, "views_missing": 0, "gate_errors": 0}
        self._started = False
        self._on_gate: Callable[..., None] | None = None
        self._turns = None
        if right_gate is not None:
            window_ns = int(min(self._rotation_ns, 30e9 / line.speed_cpm))
            self._turns = RightBankMatcher(self._rotation_ns, window_ns)

    def run(self, emit: Callable[[Frame], None], stop: threading.Event, containers: int | None = None,
            on_gate: Callable[..., None] | None = None) -> None:
        """Serve gate events until `stop` is set or `containers` events were handled.

        A captured batch ends the run after its last container. Returns once every
        dispatched container's six Frames have been emitted (missing ones included).
        `on_gate(container_seq, t_gate_ns)` is called at each gate event, before any of
        its frames, from the gate's thread (so it must be thread-safe): the decision can
        start the container's deadline even when every camera is late. A gate that knows the
        container's mould adds `section=` and `cavity=` keywords (storage/moulds.py).
        """
        self._on_gate = on_gate
        if self._started:
            raise CameraError("a station runs once; build a new one")
        self._started = True
        if self._playlist is not None:
            containers = len(self._playlist) if containers is None else min(containers, len(self._playlist))
        for worker in self.workers:
            worker.start()
        dispatched = threading.Event()
        gate_thread = threading.Thread(target=self._watch_gate, args=(stop, containers, dispatched),
                                       name="gate", daemon=True)
        gate_thread.start()
        turn_thread = None
        if self.right_gate is not None:
            turn_thread = threading.Thread(target=self._watch_right_gate, name="gate-right", daemon=True)
            turn_thread.start()
        try:
            while not (stop.is_set() or self._done(dispatched)):
                self._emit_one(emit, timeout_s=0.05)
        finally:
            self._halt.set()
            gate_thread.join(GATE_POLL_S * 10 + 1)
            if turn_thread is not None:
                turn_thread.join(GATE_POLL_S * 10 + 1)
                for item in self._turns.drain():
                    self._dispatch_right(item.seq, item.t_gate_ns, monotonic_ns(), "station stopped")
            self._stop.set()  # workers answer what is still queued with 'station stopped'
            for worker in self.workers:
                worker.join(self._longest_grab_s() + 1)
            while self._emit_one(emit, timeout_s=0):
                pass

    @property
    def playlist(self) -> list[int] | None:
        """The container seqs of a captured batch being replayed, in order; None on a live line."""
        return self._playlist

    def _done(self, dispatched: threading.Event) -> bool:
        return dispatched.is_set() and self.counts["frames_emitted"] >= VIEWS * self.counts["containers"]

    def _emit_one(self, emit: Callable[[Frame], None], timeout_s: float) -> bool:
        try:
            frame = self._out.get(timeout=timeout_s) if timeout_s else self._out.get_nowait()
        except queue.Empty:
            return False
        self.counts["frames_emitted"] += 1
        if frame.pixels is None:
            self.counts["views_missing"] += 1
        emit(frame)
        return True

    def _watch_gate(self, stop: threading.Event, containers: int | None, dispatched: threading.Event) -> None:
        try:
            while not (stop.is_set() or self._halt.is_set()):
                if containers is not None and self.counts["containers"] >= containers:
                    break
                event = self._wait(self.gate, stop)
                if event is not None:
                    self._dispatch(event)
        finally:
            dispatched.set()

    def _wait(self, gate: Gate, stop: threading.Event) -> GateEvent | None:
        """The gate's next event; a failing port (adapter unplugged) is reopened until it works."""
        try:
            return gate.wait(GATE_POLL_S)
        except Exception as exc:
            self.counts["gate_errors"] += 1
            log.error("gate %s failed (%s); no containers are seen until it is reopened", gate.driver, exc)
        attempts = 0
        while not (stop.is_set() or self._halt.wait(RECONNECT_INTERVAL_S)):
            attempts += 1
            try:
                gate.close()
                gate.open()
            except Exception as exc:
                log.debug("gate %s: reopen attempt %d failed: %s", gate.driver, attempts, exc)
                continue
            log.warning("gate %s back after %d attempt(s)", gate.driver, attempts)
            break
        return None

    def _dispatch(self, event: GateEvent) -> None:
        seq = event.seq
        if self._playlist is not None:
            seq = self._playlist[self.counts["containers"]]
        self.counts["containers"] += 1
        log.debug("gate: container %d at %d", seq, event.t_ns)
        if self._on_gate is not None:
            try:
                mould = {} if event.cavity is None else {"section": event.section, "cavity": event.cavity}
                self._on_gate(seq, event.t_ns, **mould)
            except Exception:  # the caller's hook must not stop the line
                log.exception("on_gate hook failed for container %d", seq)
        self._queue(seq, event.t_ns, event.t_ns, (0, 1, 2))
        if self._turns is not None:
            self._turns.add(seq, event.t_ns)
        else:
            self._queue(seq, event.t_ns, event.t_ns + self._rotation_ns, (3, 4, 5))

    def _dispatch_right(self, seq: int, t_gate_ns: int, t_fire_ns: int, missing: str | None = None) -> None:
        self._queue(seq, t_gate_ns, t_fire_ns, (3, 4, 5), missing)

    def _queue(self, seq: int, t_gate_ns: int, t_fire_ns: int, views: tuple[int, ...],
               missing: str | None = None) -> None:
        for worker in self.workers:
            if worker.config.view in views:
                worker.jobs.put(Job(seq=seq, t_gate_ns=t_gate_ns, t_fire_ns=t_fire_ns,
                                    deadline_ns=t_fire_ns + int(worker.config.grab_timeout_ms * 1e6),
                                    missing=missing))

    def _watch_right_gate(self) -> None:
        """Second sensor: fire the right bank for the container whose turn it is, or report it missing."""
        window_ms = self._turns.window_ns / 1e6
        try:
            while not self._halt.is_set():
                event = self._wait(self.right_gate, self._halt)
                horizon = event.t_ns if event is not None else monotonic_ns() - int(2 * GATE_POLL_S * 1e9)
                for item in self._turns.expired(horizon):
                    log.warning("container %d: no right-bank gate event within %.0f ms of its turn",
                                item.seq, window_ms)
                    self._dispatch_right(item.seq, item.t_gate_ns, horizon,
                                         f"no right-bank gate event within {window_ms:.0f} ms of the turn")
                if event is None:
                    continue
                item = self._turns.match(event.t_ns)
                if item is None:
                    log.warning("right-bank gate event %d at %d fits no container; ignored", event.seq, event.t_ns)
                else:
                    self._dispatch_right(item.seq, item.t_gate_ns, event.t_ns)
        except Exception:
            log.exception("right-bank gate %s failed", self.right_gate.driver)

    def _longest_grab_s(self) -> float:
        return max(cam.config.grab_timeout_ms for cam in self.cameras) / 1e3

    def stats(self) -> dict:
        """Counters for metrics and logs: the station's, the gate's, and each camera's."""
        return {
            **self.counts,
            "gate": self.gate.stats(),
            **({"right_gate": {**self.right_gate.stats(), "unmatched": self._turns.unmatched}}
               if self.right_gate is not None else {}),
            "cameras": {w.camera.id: {**w.counts, "connected": w.connected} for w in self.workers},
        }

    def close(self) -> None:
        self._halt.set()
        self._stop.set()
        for worker in self.workers:
            worker.join(self._longest_grab_s() + 1)
        for cam in self.cameras:
            try:
                cam.close()
            except Exception as exc:
                log.warning("camera %s: close failed: %s", cam.id, exc)
        self.gate.close()
        if self.right_gate is not None:
            self.right_gate.close()

    def __enter__(self) -> "Station":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_station(cameras: list, gate, line) -> Station:
    """Check, open, configure and arm the six cameras and open the gate.

    Problems a user can fix (a wrong serial, a view used twice, a trigger line the
    camera lacks) raise CameraError naming the camera before anything runs.
    """
    try:
        check_six_views(cameras)
    except ValueError as exc:
        raise CameraError(str(exc)) from None
    opened_cameras: list[Camera] = []
    opened_gates: list[Gate] = []
    try:
        for cfg in cameras:
            camera = build_camera(cfg)
            started = time.monotonic()
            camera.start()
            opened_cameras.append(camera)
            log.info("camera %s (%s, view %d) ready in %.0f ms", cfg.id, cfg.driver, cfg.view,
                     (time.monotonic() - started) * 1e3)
        for gate_config in (gate, gate.right_bank):
            if gate_config is not None:
                gate_driver = build_gate(gate_config, line)
                gate_driver.open()
                opened_gates.append(gate_driver)
    except Exception:
        for device in opened_cameras + opened_gates:
            device.close()
        raise
    right_gate = opened_gates[1] if len(opened_gates) > 1 else None
    return Station(opened_cameras, opened_gates[0], line, right_gate)
