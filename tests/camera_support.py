"""Helpers for the camera driver tests (a module, not a test file)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from camera.frame import Frame


def unplug_and_return(view: int, at_seq: int, unplug: Callable[[], None], frames: list[Frame],
                      stop: threading.Event) -> Callable[[Frame], None]:
    """An `emit` for Station.run: collects `frames`, calls `unplug` (the device goes away under
    the driver) when container `at_seq` shows view `view`, and sets `stop` once that view,
    reported "camera lost", has pixels again: the driver reconnected while the line ran."""
    unplugged, lost = threading.Event(), []

    def emit(frame: Frame) -> None:
        frames.append(frame)
        if frame.view != view:
            return
        if frame.container_seq == at_seq and not unplugged.is_set():
            unplugged.set()
            unplug()
        if (frame.missing or "").startswith("camera lost"):
            lost.append(frame.container_seq)
        if lost and frame.pixels is not None and frame.container_seq > lost[-1]:
            stop.set()  # it is back

    return emit
