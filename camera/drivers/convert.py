"""Pixel conversions shared by the drivers: every view leaves a driver as BGR8 or Mono8."""

from __future__ import annotations

import cv2
import numpy as np


def to_format(image: np.ndarray, pixel_format: str) -> tuple[np.ndarray, str]:
    """Convert a BGR or grey image to the configured format's Frame encoding (BGR8 or Mono8)."""
    if pixel_format == "Mono8":
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return image, "Mono8"
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image, "BGR8"
