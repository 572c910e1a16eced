"""The Frame seam: one view of one container, as the station emits it.

On the wire (pipeline/) a Frame is two parts, `[header JSON, pixels]`; `header()` and
`from_parts()` are the only translation, so every stage reads frames the same way.
A missing view is a Frame with `pixels=None` and a `missing` reason: the decision
rejects the container instead of waiting for it. The header is validated with the
codec's field types (pipeline/codec.py), so a hostile frame fails like any other
message: ValueError (codec.BadMessage), which the worker counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from pipeline import codec

VIEWS = 6


class FrameHeader(codec.Message):
    """What `Frame.header()` writes, in the codec's field types (bounded ints, finite numbers)."""

    container_seq: codec.Seq
    view: codec.View
    camera_id: codec.Name
    t_gate_ns: codec.Nanos
    t_capture_ns: codec.Nanos
    pixel_format: codec.Name = "BGR8"
    shape: codec.Shape | None
    missing: codec.Text | None = None
    meta: codec.Values = {}


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

    def header(self) -> bytes:
        shape = list(self.pixels.shape) if self.pixels is not None else None
        return json.dumps({
            "container_seq": self.container_seq, "view": self.view, "camera_id": self.camera_id,
            "t_gate_ns": self.t_gate_ns, "t_capture_ns": self.t_capture_ns,
            "pixel_format": self.pixel_format, "shape": shape, "missing": self.missing,
            "meta": self.meta,
        }).encode()

    def parts(self) -> list:
        """Multipart message; the pixel buffer is passed as-is so ZeroMQ sends it without a copy."""
        if self.pixels is None:
            return [self.header()]
        return [self.header(), np.ascontiguousarray(self.pixels)]

    @classmethod
    def from_parts(cls, parts: list) -> "Frame":
        """Rebuild a Frame; raise ValueError (codec.BadMessage) on a malformed message."""
        head = codec.validate(FrameHeader, codec.header(parts), "frame")
        pixels = None
        if head["shape"] is not None:
            if len(parts) != 2:
                raise codec.BadMessage("parts", f"frame: expected 2 parts, got {len(parts)}")
            pixels = codec.as_pixels(head["shape"], parts[1])
        return cls(
            container_seq=head["container_seq"], view=head["view"], camera_id=head["camera_id"],
            t_gate_ns=head["t_gate_ns"], t_capture_ns=head["t_capture_ns"], pixels=pixels,
            pixel_format=head["pixel_format"], missing=head["missing"], meta=head["meta"],
        )
