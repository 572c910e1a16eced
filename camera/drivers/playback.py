"""Cameras that make their image on demand (renderer, stored batch) instead of exposing one.

A trigger queues the container it was fired for; `grab` answers the oldest queued
trigger at once, so these cameras follow the station's triggers one for one.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque

from camera.base import Camera, Capture


class PlaybackCamera(Camera):
    def __init__(self, config) -> None:
        super().__init__(config)
        self._pending: deque[int] = deque()

    def arm(self) -> None:
        self._pending.clear()

    def trigger(self, container_seq: int) -> None:
        self._pending.append(container_seq)

    def grab(self, timeout_s: float) -> Capture | None:
        if not self._pending:
            return None
        return self._capture(self._pending.popleft())

    @abstractmethod
    def _capture(self, seq: int) -> Capture:
        """The image of container `seq` for this camera's view."""

    def close(self) -> None:
        self._pending.clear()
