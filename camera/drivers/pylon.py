"""Basler cameras through pypylon; also pylon's camera emulator (PYLON_CAMEMU=n).

Production cameras are triggered on an input line by the gate (FrameStart, rising
edge); software trigger is for set-up, tests and the emulator. Frames are matched to
triggers by the device's block id (the frame counter), which also reveals triggers the
camera dropped while busy. The emulator can serve images from a folder
(`emulate_images:`), in file-name order, one file per frame.
"""

from __future__ import annotations

import logging

import cv2

from camera.base import Camera, CameraLost, Capture, ViewMissing, monotonic_ns
from camera.errors import CameraError

log = logging.getLogger(__name__)

#: block ids and image numbers are unsigned; all bits set means "not supported"
NO_COUNTER = 2**64 - 1


def _pylon():
    try:
        from pypylon import genicam, pylon
    except ImportError as exc:
        raise CameraError(f"pypylon is not installed ({exc}): pip install glass-edge[camera]") from None
    return pylon, genicam


def list_devices() -> list[dict]:
    """Every pylon device the transport layers see (emulated ones too when PYLON_CAMEMU is set)."""
    pylon, _ = _pylon()
    return [{"driver": "pylon", "model": d.GetModelName(), "serial": d.GetSerialNumber(),
             "user_name": d.GetUserDefinedName(), "interface": d.GetDeviceClass()}
            for d in pylon.TlFactory.GetInstance().EnumerateDevices()]


class PylonCamera(Camera):
    driver = "pylon"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.device = None  # pylon.InstantCamera while open

    # -- open -----------------------------------------------------------------------------
    def open(self) -> None:
        pylon, genicam = _pylon()
        cfg = self.config
        if not (cfg.serial or cfg.user_name):
            raise CameraError(f"camera {self.id!r}: set serial: or user_name: to say which pylon camera it is")
        factory = pylon.TlFactory.GetInstance()
        devices = factory.EnumerateDevices()
        found = [d for d in devices
                 if (cfg.serial and d.GetSerialNumber() == cfg.serial)
                 or (not cfg.serial and d.GetUserDefinedName() == cfg.user_name)]
        if not found:
            wanted = f"serial {cfg.serial!r}" if cfg.serial else f"user name {cfg.user_name!r}"
            present = ", ".join(f"{d.GetSerialNumber()} ({d.GetModelName()})" for d in devices) or "none"
            raise CameraError(f"camera {self.id!r}: no pylon camera with {wanted}; connected: {present}")
        try:
            self.device = pylon.InstantCamera(factory.CreateDevice(found[0]))
            self.device.Open()
        except genicam.GenericException as exc:
            self.device = None
            raise CameraError(f"camera {self.id!r}: cannot open pylon camera {found[0].GetSerialNumber()}: "
                              f"{exc}; is another program using it?") from None
        self._info = {"model": found[0].GetModelName(), "serial": found[0].GetSerialNumber()}

    # -- configure --------------------------------------------------------------------------
    def configure(self) -> None:
        cfg = self.config
        # Offsets go to 0 first so that any width/height within the sensor is accepted.
        for name, value in (("OffsetX", 0), ("OffsetY", 0), ("Width", cfg.width), ("Height", cfg.height),
                            ("OffsetX", cfg.offset_x), ("OffsetY", cfg.offset_y)):
            if value or self._available(name) or name in ("Width", "Height"):
                self._set(name, value)
        self._set_enum("PixelFormat", cfg.pixel_format)
        self._set_first(("ExposureTime", "ExposureTimeAbs"), cfg.exposure_us)
        if not self._set_first(("Gain", "GainAbs"), cfg.gain_db) and cfg.gain_db:
            log.warning("camera %s: no gain in dB on this model; gain_db ignored", self.id)
        self._set_enum("TriggerSelector", "FrameStart")
        self._set_enum("TriggerMode", "On")
        source = "Software" if cfg.trigger == "software" else f"Line{cfg.trigger.removeprefix('line')}"
        self._set_enum("TriggerSource", source)
        if source != "Software":
            self._set_enum("TriggerActivation", "RisingEdge")
        if cfg.emulate_images is not None:
            if not self._available("ImageFileMode"):
                raise CameraError(f"camera {self.id!r}: emulate_images works with pylon's camera emulator "
                                  f"only; {self._info.get('model')} cannot load images from files")
            if not cfg.emulate_images.exists():
                raise CameraError(f"camera {self.id!r}: emulate_images folder {cfg.emulate_images} does not exist")
            self._set_enum("TestImageSelector", "Off")
            self._set("ImageFilename", str(cfg.emulate_images))
            self._set_enum("ImageFileMode", "On")

    def _node(self, name: str):
        return self.device.GetNodeMap().GetNode(name)

    def _available(self, name: str) -> bool:
        _, genicam = _pylon()
        node = self._node(name)
        return node is not None and genicam.IsWritable(node)

    def _set(self, name: str, value) -> None:
        _, genicam = _pylon()
        if not self._available(name):
            raise CameraError(f"camera {self.id!r}: {self._info.get('model')} has no writable {name}")
        param = getattr(self.device, name)
        try:
            param.Value = value
        except genicam.GenericException as exc:
            allowed = f" (allowed {param.Min}..{param.Max})" if hasattr(param, "Min") else ""
            raise CameraError(f"camera {self.id!r}: cannot set {name} = {value}{allowed}: "
                              f"{str(exc).split(' : ')[0]}") from None

    def _set_enum(self, name: str, value: str) -> None:
        if self._available(name):
            symbols = getattr(self.device, name).Symbolics
            if value not in symbols:
                raise CameraError(f"camera {self.id!r}: {name} {value!r} is not offered by this camera "
                                  f"({self._info.get('model')} {self._info.get('serial')}); it has: "
                                  f"{', '.join(symbols)}")
        self._set(name, value)

    def _set_first(self, names: tuple[str, ...], value: float) -> bool:
        for name in names:
            if self._available(name):
                self._set(name, value)
                return True
        return False

    # -- acquire -----------------------------------------------------------------------------
    def arm(self) -> None:
        pylon, _ = _pylon()
        self.device.MaxNumBuffer.Value = 16
        self.device.StartGrabbing(pylon.GrabStrategy_OneByOne)

    def trigger(self, container_seq: int) -> None:
        pylon, _ = _pylon()
        if not self.device.WaitForFrameTriggerReady(self.config.grab_timeout_ms, pylon.TimeoutHandling_Return):
            raise ViewMissing("camera busy: not ready for a trigger (the previous frame is still in progress)")
        self.device.ExecuteSoftwareTrigger()

    def grab(self, timeout_s: float) -> Capture | None:
        pylon, _ = _pylon()
        if not self.is_connected:
            raise CameraLost("device removed")
        result = self.device.RetrieveResult(max(0, int(timeout_s * 1e3)), pylon.TimeoutHandling_Return)
        if not result.IsValid():
            if not self.is_connected:
                raise CameraLost("device removed")
            return None
        try:
            t_capture = monotonic_ns()
            if not result.GrabSucceeded():
                raise ViewMissing(f"incomplete buffer (error {result.GetErrorCode():#x}: "
                                  f"{result.GetErrorDescription()})")
            pixels, fmt = self._convert(result.GetArray())
            block = result.GetBlockID()
            meta = {"image_number": result.GetImageNumber()}
            if result.GetTimeStamp():
                meta["device_timestamp"] = result.GetTimeStamp()
            return Capture(pixels=pixels, pixel_format=fmt, t_capture_ns=t_capture,
                           counter=None if block == NO_COUNTER else block, meta=meta)
        finally:
            result.Release()

    def _convert(self, array):
        fmt = self.config.pixel_format
        if fmt == "Mono8":
            return array.copy(), "Mono8"
        if fmt == "RGB8Packed":
            return cv2.cvtColor(array, cv2.COLOR_RGB2BGR), "BGR8"
        return array.copy(), "BGR8"

    @property
    def is_connected(self) -> bool:
        return (self.device is not None and self.device.IsPylonDeviceAttached()
                and not self.device.IsCameraDeviceRemoved())

    def close(self) -> None:
        device, self.device = self.device, None
        if device is not None:
            self._release(device.StopGrabbing, device.Close, device.DestroyDevice)
