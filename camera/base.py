"""The Camera interface every driver implements, and the driver registry.

Frigate style: each driver module under camera/drivers/ declares `driver = "<key>"` on
its class; config.yaml's `driver:` key selects the module and class, and the config
union (camera/config.py) has already validated the settings that driver understands.
Driver modules are imported only when a config names them, so a line without pylon
cameras never loads the pylon runtime.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from camera.errors import CameraError
from storage.plugins import Plugins

log = logging.getLogger(__name__)


@dataclass
class Capture:
    """One image as a driver hands it to the station, before it is tagged with a container."""

    pixels: np.ndarray
    pixel_format: str  # BGR8 | Mono8
    t_capture_ns: int  # monotonic clock on the host when the image was received
    counter: int | None = None  # the device's frame counter (block id), when it has one
    meta: dict = field(default_factory=dict)


class ViewMissing(Exception):
    """This grab produced no usable image (incomplete buffer, file absent); the view is missing."""


class CameraLost(Exception):
    """The device is gone (cable pulled, device removed); the station reconnects in the background."""


class Camera(ABC):
    """One camera for one view. The station calls these from one thread per camera.

    Life cycle: open() -> configure() -> arm() -> (trigger() -> grab())* -> close().
    """

    driver: ClassVar[str]
    #: the device keeps acquiring on its own (no trigger support): the station takes the
    #: first image that arrives after the trigger time instead of counting triggers.
    free_run: bool = False
    #: images come at the configured width x height; a different size is a fault, not a view
    fixed_size: bool = True

    def __init__(self, config) -> None:
        self.config = config
        self.id: str = config.id
        self._info: dict = {}  # model, serial, ...: what the device says of itself once found

    @abstractmethod
    def open(self) -> None:
        """Find and open the device; raise CameraError naming the camera when it cannot be found."""

    @abstractmethod
    def configure(self) -> None:
        """Apply exposure, gain, size, offset, pixel format and trigger settings."""

    @abstractmethod
    def arm(self) -> None:
        """Start acquisition: from now on every trigger produces one image."""

    @abstractmethod
    def trigger(self, container_seq: int) -> None:
        """Fire a software trigger (a no-op when the camera is triggered on an input line)."""

    @abstractmethod
    def grab(self, timeout_s: float) -> Capture | None:
        """The next image, or None after `timeout_s`; ViewMissing for a failed one, CameraLost."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice and on a lost device."""

    @property
    def is_connected(self) -> bool:
        return True

    @property
    def hardware_trigger(self) -> bool:
        return self.config.trigger != "software"

    def start(self) -> None:
        """open, configure and arm; closes again when any step fails."""
        try:
            self.open()
            self.configure()
            self.arm()
        except Exception:
            self.close()
            raise

    def _release(self, *steps: Callable[[], object]) -> None:
        """Run a device's shutdown steps in order, for `close`: a removed device fails its own
        shutdown and then nothing is left to free, so a failure is a debug line, not an error."""
        try:
            for step in steps:
                step()
        except Exception as exc:
            log.debug("camera %s: close: %s", self.id, exc)

    def reconnect(self) -> None:
        """Bring a lost device back; raises when it is still absent."""
        self.close()
        self.start()

    def playlist(self) -> list[int] | None:
        """Container seqs this source serves, in order, when it has its own (a captured batch)."""
        return None

    def describe(self) -> dict:
        """What `edge cameras list` prints: at least model and serial."""
        return {"id": self.id, "driver": self.driver, **self._info}


CAMERAS: Plugins[Camera] = Plugins("camera driver", {
    "synthetic": "camera.drivers.synthetic:SyntheticCamera",
    "pylon": "camera.drivers.pylon:PylonCamera",
    "genicam": "camera.drivers.genicam:GenicamCamera",
    "batch": "camera.drivers.batch:BatchCamera",
}, CameraError, install="install the camera extras: pip install glass-edge[camera]")


def build_camera(config) -> Camera:
    """The driver object for one camera config section (not opened yet)."""
    return CAMERAS.load(config.driver)(config)


def monotonic_ns() -> int:
    return time.monotonic_ns()
