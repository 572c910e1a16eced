"""Opening a serial port by name or pyserial URL (loop://, socket://) with an error naming the port."""

from __future__ import annotations

import serial

from camera.errors import CameraError


def open_port(url: str, **settings) -> serial.SerialBase:
    try:
        return serial.serial_for_url(url, **settings)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise CameraError(f"gate: cannot open serial port {url!r} ({exc}); check gate.port and "
                          "that this user may open it (group dialout)") from None
