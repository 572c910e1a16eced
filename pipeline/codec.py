"""Messages between stages other than Frames (camera/frame.py owns those).

Every message is a multipart ZeroMQ message whose first part is a JSON object with a
`kind`; `images` messages add the pixel buffer as a second part. One decoder for all
stages, so a malformed message fails the same way everywhere: ValueError, which the
receiving stage counts and logs before carrying on.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
import zmq

KINDS = {
    "gate",      # station -> decision: container seq entered, t_gate_ns
    "view",      # worker/station -> decision: one view's outcome (inferred, missing, dropped, bad)
    "end",       # station -> decision: no more containers (--containers N done, SIGTERM)
    "crash",     # supervisor -> decision: a stage died; its in-flight views will not come
    "arm",       # decision -> relay: container gated, pulse at due_ns unless a pass comes first
    "decision",  # decision -> relay, writer, observers
    "image",     # worker -> writer: pixels of one view, kept until its decision arrives
    "beat",      # any stage -> supervisor: heartbeat with state and counters
}


def pack(kind: str, **fields: Any) -> bytes:
    return json.dumps({"kind": kind, **fields}, separators=(",", ":")).encode()


def unpack(parts: list) -> dict[str, Any]:
    """Decode a message's header; raise ValueError when it is not one of ours."""
    if not parts:
        raise ValueError("empty message")
    try:
        msg = json.loads(bytes(parts[0]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"header is not JSON: {exc}") from None
    if not isinstance(msg, dict) or msg.get("kind") not in KINDS:
        raise ValueError(f"unknown message kind: {msg.get('kind') if isinstance(msg, dict) else msg!r}")
    return msg


def image_parts(seq: int, view: int, pixels: np.ndarray) -> list:
    pixels = np.ascontiguousarray(pixels)
    return [pack("image", seq=seq, view=view, shape=list(pixels.shape)), pixels]


def image_from_parts(msg: dict[str, Any], parts: list) -> np.ndarray:
    if len(parts) != 2:
        raise ValueError(f"image message: expected 2 parts, got {len(parts)}")
    try:
        return np.frombuffer(parts[1], dtype=np.uint8).reshape(msg["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"image message: pixels do not match shape: {exc}") from None


def require(msg: dict[str, Any], *keys: str) -> None:
    """Raise ValueError naming the first missing field (a truncated or foreign message)."""
    for key in keys:
        if key not in msg:
            raise ValueError(f"{msg['kind']} message without '{key}'")


def waiting(sock: zmq.Socket, copy: bool = True) -> Iterator[list]:
    """The multipart messages already queued on `sock`, without waiting for more."""
    while True:
        try:
            yield sock.recv_multipart(zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            return
