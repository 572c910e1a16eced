"""The Frame seam: one view of one container, as the station emits it.

A missing view is a Frame with `pixels=None` and a `missing` reason: the decision
rejects the container instead of waiting for it. On the wire a Frame is two parts,
`[header JSON, pixels]`, written and read only by pipeline/codec.py (`frame_parts`,
`frame_from_parts`): the camera layer knows nothing of ZeroMQ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VIEWS = 6


@dataclass
class Frame:
    container_seq: int
    view: int  # 0-5; 0-2 left bank, 3-5 right bank
    camera_id: str
    t_gate_ns: int  # monotonic clock of the gate event
    t_capture_ns: int  # monotonic clock when the station received the image
    pixels: np.ndarray | None  # H x W x C uint8, BGR when C == 3; None when missing
    pixel_format: str = "BGR8"  # BGR8 | Mono8
    missing: str | None = None  # why the view is missing (timeout, camera lost, ...)
    meta: dict = field(default_factory=dict)  # camera frame counter, device timestamp, ...
