"""Every message between stages: Frames (`frame_parts`, `frame_from_parts`) and the rest.

Every message is a multipart ZeroMQ message whose first part is a JSON object with a
`kind`; `image` messages add the pixel buffer as a second part. Anything can arrive on
a socket (a bug, a stale peer after an upgrade, a local attacker), so one decoder
validates every header against the schema of its kind and refuses anything else with
`BadMessage`. Its `reason` is one of `REASONS`, the label of
`edge_bad_messages_total{stage,reason}`. No other exception leaves `unpack`: the stage
counts the refusal and carries on.

Schemas are strict where a stage computes with a value: ints are ints (an integral
float such as 3.0 is accepted, a bool or "3" is not) within bounds, floats are finite,
strings are strings, and every list and string has a length limit. Unknown fields are
dropped (forward compatibility), never passed on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from typing import Annotated, Any, Literal, Union
from collections.abc import Iterator

import numpy as np
import zmq
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter,
                      ValidationError, model_validator)
from typing_extensions import TypeAliasType, TypedDict

from camera.frame import Frame

REASONS = (
    "parts",          # no part, a part that is not bytes, or a pixel buffer that does not match its shape
    "too large",      # a header over MAX_HEADER_BYTES
    "not json",       # the header is not a JSON object
    "unknown kind",   # no `kind`, or one no stage knows
    "unexpected kind",  # a kind this socket does not carry
    "invalid",        # a field missing, of the wrong type, or out of bounds
    "out of window",  # a time stamp more than FUTURE_S ahead of the receiver's clock
)

MAX_HEADER_BYTES = 4 << 20  # an ack of 10,000 containers is ~0.5 MB
FUTURE_S = 2.0  # processes share the monotonic clock: only skew between reads, never seconds
MAX_TRAVEL_S = 3600.0  # gate to ejector; a replay lifts deadlines to 600 s
MAX_DETECTIONS = 1000  # per view
MAX_ACK = 10_000
MAX_SIDE = 8192  # pixels
MAX_CHANNELS = 4
U63 = 2**63


class BadMessage(ValueError):
    """A message refused by the decoder; `reason` is one of REASONS (a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


# -- field types ------------------------------------------------------------------------

def _integral(value: Any) -> Any:
    """JSON writers may send 3.0 for 3; anything else is left for the strict int to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, Strict(), BeforeValidator(_integral)]
Seq = Annotated[Int, Field(ge=0, lt=U63)]
Nanos = Annotated[Int, Field(ge=0, lt=U63)]  # monotonic ns, the gate's clock
Count = Annotated[Int, Field(ge=0, lt=U63)]
Pid = Annotated[Int, Field(ge=0, lt=2**31)]
View = Annotated[Int, Field(ge=0, le=5)]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Name = Annotated[str, Strict(), Field(max_length=256)]
Text = Annotated[str, Strict(), Field(max_length=4096)]


def _channels(shape: list[int]) -> list[int]:
    if len(shape) == 3 and shape[2] > MAX_CHANNELS:
        raise ValueError(f"{shape[2]} channels, at most {MAX_CHANNELS}")
    return shape


Shape = Annotated[list[Annotated[Int, Field(ge=1, le=MAX_SIDE)]], Field(min_length=2, max_length=3),
                  AfterValidator(_channels)]

# A free-form JSON value (heartbeat counters, camera metadata): finite numbers, bounded lengths.
Value = TypeAliasType("Value", Union[
    Annotated[bool, Strict()], Annotated[Int, Field(ge=-U63, lt=U63)], Float, Text, None,
    Annotated[list["Value"], Field(max_length=64)], Annotated[dict[Name, "Value"], Field(max_length=64)],
])
Values = Annotated[dict[Name, Value], Field(max_length=64)]


# -- schemas, one per kind ---------------------------------------------------------------

class Message(BaseModel):
    """Base of every header: unknown fields are dropped, never trusted."""

    model_config = ConfigDict(extra="ignore")


class Detection(Message):
    class_: Name = Field(alias="class")
    score: Annotated[Float, Field(ge=0, le=1)]
    box: Annotated[list[Float], Field(min_length=4, max_length=4)]  # x1 y1 x2 y2, view pixels
    # The class threshold this score was compared with: the engine's in a view result, the
    # one the decision applied in a decision (stored, and used by `edge samples export`).
    threshold: Annotated[Float, Field(ge=0, le=1)] | None = None


Detections = Annotated[list[Detection], Field(max_length=MAX_DETECTIONS)]


class Scheduled(Message):
    """A container with an ejector time: due_ns follows its gate by a travel time."""

    seq: Seq
    t_gate_ns: Nanos
    due_ns: Nanos

    @model_validator(mode="after")
    def _due_after_gate(self) -> "Scheduled":
        if not 0 <= self.due_ns - self.t_gate_ns <= MAX_TRAVEL_S * 1e9:
            raise ValueError(f"due_ns must follow t_gate_ns by 0-{MAX_TRAVEL_S:g} s")
        return self


Moulds = Annotated[Int, Field(ge=1, le=99)]  # a section or cavity number (storage/moulds.py)


class Moulded(Message):
    """The mould that formed the container (section-cavity), where the gate read it."""

    section: Moulds | None = None
    cavity: Moulds | None = None


class Gate(Moulded):
    """station -> decision: container seq entered at t_gate_ns (from mould section-cavity, if read)."""

    kind: Literal["gate"]
    seq: Seq
    t_gate_ns: Nanos


class ViewOutcome(Message):
    """What became of one view: as a worker or the station reports it, as a decision records it."""

    view: View
    camera_id: Name
    reason: Text | None = None
    t_capture_ns: Nanos | None = None
    detections: Detections = []


class ViewResult(ViewOutcome):
    """worker/station -> decision: one view's outcome."""

    kind: Literal["view"]
    seq: Seq
    t_gate_ns: Nanos
    outcome: Literal["inferred", "missing", "dropped", "bad"]
    model_version: Name | None = None
    worker: Name | None = None
    engine_ms: Annotated[Float, Field(ge=0)] | None = None


class End(Message):
    """station -> decision: no more containers (--containers N done, SIGTERM)."""

    kind: Literal["end"]
    gated: Count


class Crash(Message):
    """supervisor -> decision: a stage died at at_ns; its in-flight views will not come."""

    kind: Literal["crash"]
    stage: Name
    at_ns: Nanos


class Arm(Scheduled):
    """decision -> relay: container gated, pulse at due_ns unless a pass comes first."""

    kind: Literal["arm"]


class DecidedView(ViewOutcome):
    outcome: Literal["inferred", "missing", "dropped", "bad", "lost", "late"]
    t_capture_utc: Name | None = None
    rejecting: Annotated[list[Name], Field(max_length=MAX_DETECTIONS)] = []


class Decision(Scheduled, Moulded):
    """decision -> relay, writer, observers: pipeline/decision.py `_decide`."""

    kind: Literal["decision"]
    line_id: Name
    t_gate_utc: Name
    decided_ns: Nanos
    decision: Literal["pass", "reject"]
    reason: Name
    latency_ms: Float
    model_version: Name | None = None
    views: Annotated[list[DecidedView], Field(max_length=6)]


class Image(Message):
    """worker -> writer: pixels of one view (second part), kept until its decision arrives."""

    kind: Literal["image"]
    seq: Seq
    view: View
    shape: Shape


class Stats(TypedDict, total=False):
    """The heartbeat counters the supervisor computes with; other counters pass as Values."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    decided: Count
    inferred: Count
    gated: Count
    dropped: Count
    open: Count
    waiting: Count
    rejects: Annotated[dict[Name, Count], Field(max_length=64)]
    p50_ms: Float | None
    p99_ms: Float | None
    error: Text


def _known_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return _STATS.validate_python(stats)


class Beat(Message):
    """any stage -> supervisor: heartbeat with state and counters."""

    kind: Literal["beat"]
    stage: Name
    pid: Pid
    state: Name
    t_ns: Nanos
    stats: Annotated[Values, AfterValidator(_known_stats)] = {}


class Ack(Message):
    """writer -> decision: the containers (seq, t_gate_ns) it committed."""

    kind: Literal["ack"]
    keys: Annotated[list[tuple[Seq, Nanos]], Field(max_length=MAX_ACK)]


class Sync(Message):
    """A restarted peer and the decision stage: relay -> decision "re-send open arms and recent
    decisions", writer -> decision "re-send what I have not acknowledged", and decision -> relay
    "that was all" (pid: the relay's)."""

    kind: Literal["sync"]
    stage: Literal["relay", "writer", "decision"]
    pid: Pid


class Alarm(Message):
    """relay -> writer: a container the ejector did not handle as decided (an event row)."""

    kind: Literal["alarm"]
    seq: Seq
    t_gate_ns: Nanos
    alarm: Name
    detail: Text


_STATS = TypeAdapter(Stats)
_SHAPE = TypeAdapter(Shape)
SCHEMAS: dict[str, type[Message]] = {
    model.model_fields["kind"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (Gate, ViewResult, End, Crash, Arm, Decision, Image, Beat, Ack, Sync, Alarm)
}
KINDS = frozenset(SCHEMAS)
CLOCKED = ("t_gate_ns", "t_capture_ns", "at_ns", "t_ns", "decided_ns")  # stamped from the shared clock


# -- decoding ----------------------------------------------------------------------------

def header(parts: Sequence[Any]) -> dict[str, Any]:
    """The first part as a JSON object, size-limited before it is parsed."""
    if not isinstance(parts, (list, tuple)) or not parts:
        raise BadMessage("parts", "empty message")
    try:
        raw = memoryview(parts[0])
    except TypeError:
        raise BadMessage("parts", f"header part is a {type(parts[0]).__name__}, not bytes") from None
    if raw.nbytes > MAX_HEADER_BYTES:
        raise BadMessage("too large", f"header of {raw.nbytes} bytes (at most {MAX_HEADER_BYTES})")
    try:
        head = json.loads(raw.tobytes(), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise BadMessage("not json", f"header is not JSON ({type(exc).__name__})") from None
    if not isinstance(head, dict):
        raise BadMessage("not json", f"header is a JSON {type(head).__name__}, not an object")
    return head


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def validate(model: type[BaseModel], head: dict[str, Any], what: str) -> dict[str, Any]:
    """`head` checked against `model`, as a plain dict with defaults filled in."""
    try:
        return model.model_validate(head).model_dump(by_alias=True)
    except ValidationError as exc:
        raise _invalid(exc, what) from None


def _invalid(exc: ValidationError, what: str) -> BadMessage:
    """A one-line refusal naming the first wrong field (never the hostile value itself)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    where = ".".join([what, *(str(p) for p in errors[0]["loc"])])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return BadMessage("invalid", f"{where}: {errors[0]['msg']}{more}")


def unpack(parts: Sequence[Any], kinds: Collection[str] | None = None,
           now_ns: int | None = None) -> dict[str, Any]:
    """Decode and validate a message's header; raise BadMessage when it is not one of ours.

    `kinds`: those this socket carries (others are refused). `now_ns`: the receiver's
    monotonic clock; a time stamp more than FUTURE_S ahead of it is refused, so a
    forged future container cannot stay open forever. Old stamps pass: each stage
    handles containers past their deadline itself.
    """
    head = header(parts)
    kind = head.get("kind")
    model = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if model is None:
        shown = repr(kind[:40]) if isinstance(kind, str) else f"a {type(kind).__name__}"
        raise BadMessage("unknown kind", f"kind {shown}")
    if kinds is not None and kind not in kinds:
        raise BadMessage("unexpected kind", f"{kind!r} (this socket carries {', '.join(sorted(kinds))})")
    msg = validate(model, head, kind)
    if now_ns is not None:
        limit = now_ns + int(FUTURE_S * 1e9)
        ahead = [key for key in CLOCKED if (msg.get(key) or 0) > limit]
        if ahead:
            raise BadMessage("out of window", f"{kind} {ahead[0]} is {(msg[ahead[0]] - now_ns) / 1e9:.3g} s "
                             f"ahead of now (at most {FUTURE_S:g} s)")
    return msg


def as_pixels(shape: Any, buffer: Any) -> np.ndarray:
    """`buffer` as a uint8 array of `shape`; refuse a bad shape or a size that does not match."""
    try:
        dims = _SHAPE.validate_python(shape)
    except ValidationError as exc:
        raise _invalid(exc, "shape") from None
    try:
        data = memoryview(buffer)
    except TypeError:
        raise BadMessage("parts", f"pixel part is a {type(buffer).__name__}, not bytes") from None
    if data.nbytes != math.prod(dims) or not data.c_contiguous:
        raise BadMessage("parts", f"{data.nbytes} pixel bytes for shape {dims}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def pack(kind: str, **fields: Any) -> bytes:
    return json.dumps({"kind": kind, **fields}, separators=(",", ":")).encode()


def image_parts(seq: int, view: int, pixels: np.ndarray) -> list:
    pixels = np.ascontiguousarray(pixels)
    return [pack("image", seq=seq, view=view, shape=list(pixels.shape)), pixels]


def image_from_parts(msg: dict[str, Any], parts: Sequence[Any]) -> np.ndarray:
    """The pixels of an `image` message whose header `unpack` returned."""
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise BadMessage("parts", f"image message: expected 2 parts, got {_count(parts)}")
    if not isinstance(msg, dict):
        raise BadMessage("invalid", "image message: header is not a dict")
    return as_pixels(msg.get("shape"), parts[1])


class FrameHeader(Message):
    """station -> worker: the first part of a Frame (`frame_parts`), the pixels the second."""

    container_seq: Seq
    view: View
    camera_id: Name
    t_gate_ns: Nanos
    t_capture_ns: Nanos
    pixel_format: Name = "BGR8"
    shape: Shape | None
    missing: Text | None = None
    meta: Values = {}


def frame_header(frame: Frame) -> bytes:
    shape = list(frame.pixels.shape) if frame.pixels is not None else None
    return json.dumps({
        "container_seq": frame.container_seq, "view": frame.view, "camera_id": frame.camera_id,
        "t_gate_ns": frame.t_gate_ns, "t_capture_ns": frame.t_capture_ns,
        "pixel_format": frame.pixel_format, "shape": shape, "missing": frame.missing, "meta": frame.meta,
    }).encode()


def frame_parts(frame: Frame) -> list:
    """A Frame as a multipart message; the pixel buffer is passed as-is so ZeroMQ sends it without a copy."""
    if frame.pixels is None:
        return [frame_header(frame)]
    return [frame_header(frame), np.ascontiguousarray(frame.pixels)]


def frame_from_parts(parts: Sequence[Any]) -> Frame:
    """Rebuild a Frame; BadMessage (a ValueError, which the worker counts) on a malformed one."""
    head = validate(FrameHeader, header(parts), "frame")
    pixels = None
    if head["shape"] is not None:
        if len(parts) != 2:
            raise BadMessage("parts", f"frame: expected 2 parts, got {len(parts)}")
        pixels = as_pixels(head["shape"], parts[1])
    return Frame(container_seq=head["container_seq"], view=head["view"], camera_id=head["camera_id"],
                 t_gate_ns=head["t_gate_ns"], t_capture_ns=head["t_capture_ns"], pixels=pixels,
                 pixel_format=head["pixel_format"], missing=head["missing"], meta=head["meta"])


def _count(parts: Any) -> str:
    return str(len(parts)) if isinstance(parts, (list, tuple)) else f"a {type(parts).__name__}"


def waiting(sock: zmq.Socket, copy: bool = True) -> Iterator[list]:
    """The multipart messages already queued on `sock`, without waiting for more."""
    while True:
        try:
            yield sock.recv_multipart(zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            return
