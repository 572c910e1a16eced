"""The six-view station: a gate event for container n becomes six tagged Frames.

On event n the left bank (views 0-2) fires at once and the right bank (views 3-5)
after `line.rotation_delay_ms`, while the container turns. Each camera has its own
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
from typing import Callable

from camera.base import Camera, build_camera
from camera.errors import CameraError
from camera.frame import VIEWS, Frame
from camera.gates.base import Gate, GateEvent, build_gate
from camera.worker import CameraWorker, Job

log = logging.getLogger(__name__)

GATE_POLL_S = 0.05


def check_cameras(configs: list) -> None:
    """Six cameras, one per view, each in its view's bank; CameraError naming the camera otherwise."""
    seen: dict[int, str] = {}
    for cfg in configs:
        if cfg.view in seen:
            raise CameraError(f"camera {cfg.id!r}: view {cfg.view} is already used by camera "
                              f"{seen[cfg.view]!r}; give each camera its own view 0-5")
        seen[cfg.view] = cfg.id
        bank = "left" if cfg.view < 3 else "right"
        if cfg.bank != bank:
            raise CameraError(f"camera {cfg.id!r}: view {cfg.view} is in the {bank} bank, not {cfg.bank!r}")
    absent = sorted(set(range(VIEWS)) - set(seen))
    if absent:
        raise CameraError(f"no camera for view(s) {absent}; the station needs one camera per view 0-5")


class Station:
    def __init__(self, cameras: list[Camera], gate: Gate, line) -> None:
        self.cameras = sorted(cameras, key=lambda cam: cam.config.view)
        self.gate = gate
        self.line = line
        self._rotation_ns = int(line.rotation_delay_ms * 1e6)
        self._stop = threading.Event()  # tells the camera workers to finish
        self._halt = threading.Event()  # tells the gate thread to take no more containers
        self._out: "queue.Queue[Frame]" = queue.Queue()
        self.workers = [CameraWorker(cam, self._out, self._stop) for cam in self.cameras]
        self._playlist = next((p for p in (cam.playlist() for cam in self.cameras) if p is not None), None)
        self.counts = {"containers": 0, "frames_emitted": 0, "views_missing": 0}
        self._started = False

    def run(self, emit: Callable[[Frame], None], stop: threading.Event, containers: int | None = None) -> None:
        """Serve gate events until `stop` is set or `containers` events were handled.

        A captured batch ends the run after its last container. Returns once every
        dispatched container's six Frames have been emitted (missing ones included).
        """
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
        try:
            while not (stop.is_set() or self._done(dispatched)):
                self._emit_one(emit, timeout_s=0.05)
        finally:
            self._halt.set()
            gate_thread.join(GATE_POLL_S * 10 + 1)
            self._stop.set()  # workers answer what is still queued with 'station stopped'
            for worker in self.workers:
                worker.join(self._longest_grab_s() + 1)
            while self._emit_one(emit, timeout_s=0):
                pass

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
                event = self.gate.wait(GATE_POLL_S)
                if event is not None:
                    self._dispatch(event)
        except Exception:
            log.exception("gate %s failed; the station stops taking containers", self.gate.driver)
        finally:
            dispatched.set()

    def _dispatch(self, event: GateEvent) -> None:
        seq = event.seq
        if self._playlist is not None:
            seq = self._playlist[self.counts["containers"]]
        self.counts["containers"] += 1
        log.debug("gate: container %d at %d", seq, event.t_ns)
        for worker in self.workers:
            t_fire = event.t_ns + (self._rotation_ns if worker.config.view >= 3 else 0)
            worker.jobs.put(Job(seq=seq, t_gate_ns=event.t_ns, t_fire_ns=t_fire,
                                deadline_ns=t_fire + int(worker.config.grab_timeout_ms * 1e6)))

    def _longest_grab_s(self) -> float:
        return max(cam.config.grab_timeout_ms for cam in self.cameras) / 1e3

    def stats(self) -> dict:
        """Counters for metrics and logs: the station's, the gate's, and each camera's."""
        return {
            **self.counts,
            "gate": self.gate.stats(),
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

    def __enter__(self) -> "Station":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_station(cameras: list, gate, line) -> Station:
    """Check, open, configure and arm the six cameras and open the gate.

    Problems a user can fix (a wrong serial, a view used twice, a trigger line the
    camera lacks) raise CameraError naming the camera before anything runs.
    """
    check_cameras(cameras)
    opened: list[Camera] = []
    try:
        for cfg in cameras:
            camera = build_camera(cfg)
            started = time.monotonic()
            camera.start()
            opened.append(camera)
            log.info("camera %s (%s, view %d) ready in %.0f ms", cfg.id, cfg.driver, cfg.view,
                     (time.monotonic() - started) * 1e3)
        gate_driver = build_gate(gate, line)
        gate_driver.open()
    except Exception:
        for camera in opened:
            camera.close()
        raise
    return Station(opened, gate_driver, line)
