"""One thread per camera: fire it for each container, match the image, or report the view missing.

Matching is the part that must never guess. A camera drops a trigger that arrives while
it is still busy, and an image can arrive after its view was given up: attaching that
late image to the next container would put one bottle's defect on another. So images
are matched to triggers by the device's frame counter where it has one, images that
were waiting before the trigger are discarded, and anything that cannot be matched is
counted and logged, never attached. A lost device is reconnected by a second thread
while this one keeps answering every container (with a missing view) on time.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from camera.base import Camera, CameraLost, Capture, ViewMissing, monotonic_ns
from camera.frame import Frame

log = logging.getLogger(__name__)

RECONNECT_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Job:
    seq: int  # container sequence number
    t_gate_ns: int
    t_fire_ns: int  # when to trigger: the gate time, or gate + rotation delay for the right bank
    deadline_ns: int  # t_fire + grab timeout: no image by then means the view is missing
    missing: str | None = None  # known missing before any trigger (e.g. no right-bank gate event)


class TriggerMatcher:
    """Maps device frame counters to trigger numbers.

    With no drops, trigger i yields counter `offset + i`. A smaller number is a late image
    of an earlier trigger (discarded). When a view times out after such an image, the
    camera had dropped a trigger: the offset is re-learnt from that image so the next
    container lines up again, at the cost of one missing view, never a wrong one.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.issued = 0
        self.offset: int | None = None
        self._stale: int | None = None

    def next_trigger(self) -> int:
        self._stale = None
        self.issued += 1
        return self.issued - 1

    def cancel(self) -> None:
        """The last trigger was never sent (camera busy): no image will come for it."""
        self.issued -= 1

    def classify(self, counter: int | None, index: int) -> str:
        """'match', 'stale' (an earlier trigger's image) or 'extra' (more images than triggers)."""
        if counter is None:
            return "match"
        if self.offset is None:
            self.offset = counter - index
            return "match"
        position = counter - self.offset
        if position == index:
            return "match"
        if position < index:
            self._stale = counter
            return "stale"
        self.offset = counter - index
        return "extra"

    def timed_out(self, index: int) -> None:
        if self._stale is not None:
            self.offset = self._stale - index


class CameraWorker:
    """Serves one camera: a job per container in, exactly one Frame per job out."""

    def __init__(self, camera: Camera, out: "queue.Queue[Frame]", stop: threading.Event) -> None:
        self.camera = camera
        self.config = camera.config
        self.jobs: "queue.Queue[Job]" = queue.Queue()
        self._out = out
        self._stop = stop
        self._matcher = TriggerMatcher()
        self._connected = True
        self._lost_reason = ""
        self._reconnector: threading.Thread | None = None
        self._thread = threading.Thread(target=self._serve, name=f"camera-{camera.id}", daemon=True)
        self.counts = {"frames": 0, "missing": 0, "unmatched": 0, "failed": 0, "timeouts": 0,
                       "behind": 0, "lost": 0, "reconnects": 0}

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        if self._thread.ident is not None:  # a station closed without running never started it
            self._thread.join(timeout_s)
        if self._reconnector is not None:
            self._reconnector.join(timeout_s)

    def _serve(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if job.missing is not None:
                self._missing(job, job.missing)
            elif self._stop.is_set():
                self._missing(job, "station stopped")
            else:
                self._handle(job)

    def _handle(self, job: Job) -> None:
        if not self._connected:
            self._missing(job, f"camera lost ({self._lost_reason})")
            return
        delay = (job.t_fire_ns - monotonic_ns()) / 1e9
        if delay > 0 and self._stop.wait(delay):
            self._missing(job, "station stopped")
            return
        if monotonic_ns() > job.deadline_ns:
            self.counts["behind"] += 1
            self._missing(job, "station behind: the trigger time had passed")
            return
        index = self._matcher.next_trigger()
        try:
            capture = self._drain(index)
            if capture is None:
                if not self.camera.hardware_trigger:
                    self._fire(job.seq)
                capture = self._await(index, job)
        except ViewMissing as exc:
            self.counts["failed"] += 1
            self._missing(job, f"grab failed: {exc}")
            return
        except Exception as exc:  # the SDKs raise their own types; ask the device whether it is gone
            if isinstance(exc, CameraLost) or not self.camera.is_connected:
                self._lose(str(exc) or type(exc).__name__)
                self._missing(job, f"camera lost ({self._lost_reason})")
            else:
                self.counts["failed"] += 1
                log.error("camera %s: grab for container %d failed: %s", self.camera.id, job.seq, exc)
                self._missing(job, f"grab failed: {exc}")
            return
        if capture is None:
            self.counts["timeouts"] += 1
            self._matcher.timed_out(index)
            self._missing(job, f"timeout: no image within {self.config.grab_timeout_ms} ms")
            return
        problem = self._check_shape(capture)
        if problem:
            self.counts["failed"] += 1
            self._missing(job, problem)
            return
        self._emit(job, capture)

    def _fire(self, seq: int) -> None:
        try:
            self.camera.trigger(seq)
        except BaseException:
            self._matcher.cancel()
            raise

    def _drain(self, index: int) -> Capture | None:
        """Discard images that were waiting before this trigger; on a hardware trigger, one may be ours."""
        while True:
            try:
                capture = self.camera.grab(0)
            except ViewMissing as exc:  # an earlier trigger's failed buffer: not this view's
                self.counts["failed"] += 1
                log.warning("camera %s: failed buffer before the trigger discarded: %s", self.camera.id, exc)
                continue
            if capture is None:
                return None
            if (self.camera.hardware_trigger and not self.camera.free_run and capture.counter is not None
                    and self._matcher.classify(capture.counter, index) == "match"):
                return capture
            if not self.camera.free_run:  # a free-running camera's older images are expected
                self._unmatched(capture, "it arrived before the trigger")

    def _await(self, index: int, job: Job) -> Capture | None:
        while True:
            remaining = (job.deadline_ns - monotonic_ns()) / 1e9
            if remaining <= 0:
                return None
            capture = self.camera.grab(remaining)
            if capture is None:
                return None
            if self.camera.free_run:
                return capture
            kind = self._matcher.classify(capture.counter, index)
            if kind == "match":
                return capture
            self._unmatched(capture, "an earlier trigger's image" if kind == "stale"
                            else "more images than triggers")

    def _check_shape(self, capture: Capture) -> str | None:
        if not self.camera.fixed_size:
            return None
        expected = (self.config.height, self.config.width)
        if capture.pixels.shape[:2] != expected:
            return (f"wrong image size {capture.pixels.shape[1]}x{capture.pixels.shape[0]}, "
                    f"expected {expected[1]}x{expected[0]}")
        return None

    def _unmatched(self, capture: Capture, why: str) -> None:
        self.counts["unmatched"] += 1
        log.warning("camera %s: image (counter %s) not attached to any container: %s",
                    self.camera.id, capture.counter, why)

    def _emit(self, job: Job, capture: Capture) -> None:
        self.counts["frames"] += 1
        meta = dict(capture.meta)
        if capture.counter is not None:
            meta["frame_counter"] = capture.counter
        self._out.put(Frame(
            container_seq=job.seq, view=self.config.view, camera_id=self.camera.id,
            t_gate_ns=job.t_gate_ns, t_capture_ns=capture.t_capture_ns, pixels=capture.pixels,
            pixel_format=capture.pixel_format, meta=meta))

    def _missing(self, job: Job, reason: str) -> None:
        self.counts["missing"] += 1
        log.debug("camera %s: container %d view %d missing: %s", self.camera.id, job.seq, self.config.view, reason)
        self._out.put(Frame(
            container_seq=job.seq, view=self.config.view, camera_id=self.camera.id,
            t_gate_ns=job.t_gate_ns, t_capture_ns=monotonic_ns(), pixels=None,
            pixel_format="Mono8" if self.config.pixel_format == "Mono8" else "BGR8",
            missing=reason))

    def _lose(self, reason: str) -> None:
        self._connected = False
        self._lost_reason = reason
        self.counts["lost"] += 1
        log.error("camera %s lost: %s; reconnecting in the background", self.camera.id, reason)
        self._reconnector = threading.Thread(target=self._reconnect, name=f"reconnect-{self.camera.id}",
                                             daemon=True)
        self._reconnector.start()

    def _reconnect(self) -> None:
        attempts = 0
        while not self._stop.is_set():
            attempts += 1
            try:
                self.camera.reconnect()
            except Exception as exc:
                log.debug("camera %s: reconnect attempt %d failed: %s", self.camera.id, attempts, exc)
                self._stop.wait(RECONNECT_INTERVAL_S)
                continue
            self._matcher.reset()
            self.counts["reconnects"] += 1
            self._connected = True
            log.warning("camera %s back after %d attempt(s)", self.camera.id, attempts)
            return
