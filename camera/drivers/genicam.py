"""Any vendor's GenICam camera through its GenTL producer (.cti) and harvesters.

Uses the SFNC feature names (Width, PixelFormat, ExposureTime, TriggerSelector, ...).
A device with no trigger features (the genicam wheel's demo producer, viky.cti) runs
free: the station then takes the first image that arrives after the trigger time.
Trigger settings are exercised against real producers only; see docs/cameras.md.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2

from camera.base import Camera, CameraLost, Capture, monotonic_ns
from camera.errors import CameraError

log = logging.getLogger(__name__)

#: config pixel format -> GenICam names to try, nearest first
FORMATS = {
    "Mono8": ("Mono8",),
    "BGR8Packed": ("BGR8", "BGR8Packed", "RGB8", "RGB8Packed", "RGBa8", "BGRa8"),
    "RGB8Packed": ("RGB8", "RGB8Packed", "BGR8", "BGR8Packed", "RGBa8", "BGRa8"),
}
TO_BGR = {"RGB8": cv2.COLOR_RGB2BGR, "RGB8Packed": cv2.COLOR_RGB2BGR, "RGBa8": cv2.COLOR_RGBA2BGR,
          "BGRa8": cv2.COLOR_BGRA2BGR}

_harvesters: dict[Path, object] = {}
_lock = threading.Lock()


def harvester(cti: Path, rescan: bool = False):
    """The process's one Harvester for a producer file: a producer's system opens only once.

    A rescan (harvesters' update()) invalidates every open device of that producer, so
    it happens only on first use and when a wanted device is not in the list; the other
    cameras then see their device lost and reconnect like after a cable fault.
    """
    try:
        from harvesters.core import Harvester
    except ImportError as exc:
        raise CameraError(f"harvesters is not installed ({exc}): pip install glass-edge[camera]") from None
    cti = Path(cti)
    with _lock:
        if cti not in _harvesters:
            if not cti.is_file():
                raise CameraError(f"GenTL producer {cti} does not exist; set cti: to the vendor's .cti file")
            h = Harvester()
            h.add_file(str(cti))
            h.update()
            _harvesters[cti] = h
        elif rescan:
            _harvesters[cti].update()
        return _harvesters[cti]


def _info(device, name: str):
    """A device-info field, or None where the producer does not offer it (viky has no user name)."""
    try:
        return getattr(device, name)
    except Exception:
        return None


def list_devices(cti: Path) -> list[dict]:
    return [{"driver": "genicam", "model": _info(d, "model"), "serial": _info(d, "serial_number"),
             "vendor": _info(d, "vendor"), "user_name": _info(d, "user_defined_name"), "producer": str(cti)}
            for d in harvester(cti, rescan=True).device_info_list]


class GenicamCamera(Camera):
    driver = "genicam"

    def __init__(self, config) -> None:
        super().__init__(config)
        self._ia = None

    def open(self) -> None:
        serial = self.config.serial
        h = harvester(self.config.cti)
        if serial is not None and serial not in [d.serial_number for d in h.device_info_list]:
            h = harvester(self.config.cti, rescan=True)  # it may have been plugged in since
        devices = h.device_info_list
        found = [d for d in devices if serial is None or d.serial_number == serial]
        if not found:
            present = ", ".join(f"{d.serial_number} ({d.model})" for d in devices) or "none"
            raise CameraError(f"camera {self.id!r}: no GenTL device with serial {serial!r} in "
                              f"{self.config.cti}; present: {present}")
        if serial is None:
            log.warning("camera %s: no serial: configured, using the first device (%s)", self.id,
                        found[0].serial_number)
        try:
            self._ia = h.create({"serial_number": found[0].serial_number})
        except Exception as exc:
            raise CameraError(f"camera {self.id!r}: cannot open GenTL device {found[0].serial_number}: "
                              f"{exc}; is another program or camera entry using it?") from None
        self._info = {"model": found[0].model, "serial": found[0].serial_number, "vendor": found[0].vendor}

    def configure(self) -> None:
        cfg = self.config
        nodes = self._ia.remote_device.node_map
        for name, value in (("OffsetX", 0), ("OffsetY", 0), ("Width", cfg.width), ("Height", cfg.height),
                            ("OffsetX", cfg.offset_x), ("OffsetY", cfg.offset_y)):
            if nodes.has_node(name):
                self._set(nodes, name, value)
            elif value:
                raise CameraError(f"camera {self.id!r}: {self._info['model']} has no {name}")
        offered = nodes.PixelFormat.symbolics
        wanted = [f for f in FORMATS[cfg.pixel_format] if f in offered]
        if not wanted:
            raise CameraError(f"camera {self.id!r}: pixel format {cfg.pixel_format} not offered; "
                              f"it has: {', '.join(offered)}")
        self._set(nodes, "PixelFormat", wanted[0])
        for names, value in ((("ExposureTime", "ExposureTimeAbs"), cfg.exposure_us), (("Gain",), cfg.gain_db)):
            present = [n for n in names if nodes.has_node(n)]
            if present:
                self._set(nodes, present[0], value)
            else:
                log.warning("camera %s: %s has no %s; left as it is", self.id, self._info["model"], names[0])
        self._configure_trigger(nodes)

    def _configure_trigger(self, nodes) -> None:
        cfg = self.config
        if not nodes.has_node("TriggerMode"):
            if cfg.trigger != "software":
                raise CameraError(f"camera {self.id!r}: {self._info['model']} has no trigger features, "
                                  f"so it cannot be triggered on {cfg.trigger}")
            log.warning("camera %s: %s has no trigger; it runs free and the station takes the first image "
                        "after each trigger time", self.id, self._info["model"])
            self.free_run = True
            return
        self._set(nodes, "TriggerSelector", "FrameStart")
        self._set(nodes, "TriggerMode", "On")
        source = "Software" if cfg.trigger == "software" else f"Line{cfg.trigger.removeprefix('line')}"
        if source not in nodes.TriggerSource.symbolics:
            raise CameraError(f"camera {self.id!r}: TriggerSource {source!r} is not offered by "
                              f"{self._info['model']} {self._info['serial']}; it has: "
                              f"{', '.join(nodes.TriggerSource.symbolics)}")
        self._set(nodes, "TriggerSource", source)
        if source != "Software" and nodes.has_node("TriggerActivation"):
            self._set(nodes, "TriggerActivation", "RisingEdge")

    def _set(self, nodes, name: str, value) -> None:
        try:
            getattr(nodes, name).value = value
        except Exception as exc:
            raise CameraError(f"camera {self.id!r}: cannot set {name} = {value}: {exc}") from None

    def arm(self) -> None:
        self._ia.start()

    def trigger(self, container_seq: int) -> None:
        if not self.free_run:
            self._ia.remote_device.node_map.TriggerSoftware.execute()

    def grab(self, timeout_s: float) -> Capture | None:
        if not self.is_connected:
            raise CameraLost("device closed")
        try:
            buffer = self._ia.try_fetch(timeout=max(timeout_s, 1e-4))
        except (IndexError, AttributeError) as exc:  # harvesters' state after the device went away
            raise CameraLost(f"device gone ({type(exc).__name__})") from None
        if buffer is None:
            return None
        with buffer:
            t_capture = monotonic_ns()
            component = buffer.payload.components[0]
            fmt = component.data_format
            image = component.data.reshape(component.height, component.width, -1).copy()
            meta = {}
            try:
                meta["device_timestamp"] = buffer.timestamp_ns
            except Exception:  # many producers (viky.cti too) do not offer timestamps
                pass
            counter = buffer.frame_id
        return Capture(pixels=self._convert(image, fmt), pixel_format="Mono8" if self.config.pixel_format == "Mono8"
                       else "BGR8", t_capture_ns=t_capture, counter=counter, meta=meta)

    def _convert(self, image, fmt: str):
        if self.config.pixel_format == "Mono8":
            return image[:, :, 0]
        if fmt in TO_BGR:
            return cv2.cvtColor(image, TO_BGR[fmt])
        return image

    @property
    def is_connected(self) -> bool:
        return self._ia is not None and self._ia.is_valid()

    def close(self) -> None:
        ia, self._ia = self._ia, None
        if ia is not None:
            self._release(ia.stop, ia.destroy)
