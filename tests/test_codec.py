"""The message decoder (pipeline/codec.py) and the Frame seam (camera/frame.py) on hostile
input: whatever arrives, they answer with a decoded message or their own refusal
(BadMessage, a ValueError), never another exception (issue 13)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camera.frame import Frame
from engines.detections import Detections
from pipeline import codec
from pipeline.codec import BadMessage
from pipeline.decision import DecisionBook

MS = 1_000_000
NOW = time.monotonic_ns()
INF = "__1e400__"  # replaced by a bare 1e400 in the JSON text: Python reads it as infinity
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decision() -> dict:
    """A decision exactly as pipeline/decision.py builds it: six views, one with a detection."""
    book = DecisionBook(line_id="l1", travel_time_ms=8000, relay_lead_ms=30, late_result="reject",
                        thresholds={}, default_threshold=0.5)
    book.gate(7, NOW, NOW)
    dets = Detections(np.array([[1, 2, 30, 40]], np.float32), np.array([0.9], np.float32),
                      np.array([0]), ("oil",))
    for view in range(5):
        book.view(VALID["view"] | {"view": view, "detections": dets.to_list() if view == 2 else []}, NOW)
    (decided,) = book.flush(NOW + 100 * MS)
    return decided


VALID: dict[str, dict] = {
    "gate": {"seq": 7, "t_gate_ns": NOW},
    "view": {"seq": 7, "view": 1, "t_gate_ns": NOW, "camera_id": "cam1", "outcome": "inferred",
             "reason": None, "t_capture_ns": NOW + 50 * MS, "model_version": "v1", "worker": "worker-0",
             "engine_ms": 12.5, "detections": [{"class": "oil", "score": 0.75, "box": [1.0, 2.0, 30.5, 40.0],
                                                    "threshold": 0.06}]},
    "end": {"gated": 20},
    "crash": {"stage": "worker-0", "at_ns": NOW},
    "arm": {"seq": 7, "t_gate_ns": NOW, "due_ns": NOW + 8000 * MS},
    "image": {"seq": 7, "view": 1, "shape": [4, 5, 3]},
    "beat": {"stage": "decision", "pid": 4242, "state": "ready", "t_ns": NOW,
             "stats": {"open": 0, "decided": 3, "rejects": {"defect": 1}, "p50_ms": None,
                       "station": {"gate": {"events": 3}}}},
    "ack": {"keys": [[7, NOW], [8, NOW + 100 * MS]]},
    "sync": {"stage": "relay", "pid": 4242},
    "alarm": {"seq": 7, "t_gate_ns": NOW, "alarm": "overruled", "detail": "pass came after the pulse"},
}
VALID["decision"] = decision()


@pytest.mark.parametrize("kind", sorted(codec.KINDS))
def test_every_kind_round_trips(kind):
    msg = codec.unpack([codec.pack(kind, **VALID[kind])], kinds={kind}, now_ns=NOW)
    sent, got = json.loads(json.dumps(VALID[kind])), json.loads(json.dumps(msg))
    assert got["kind"] == kind and {key: got[key] for key in sent} == sent


def test_decision_round_trips_exactly_as_decided():
    assert codec.unpack([codec.pack("decision", **VALID["decision"])]) == {"kind": "decision", **VALID["decision"]}


def test_optional_fields_are_filled_and_unknown_fields_dropped():
    msg = codec.unpack([codec.pack("view", seq=1, view=0, t_gate_ns=5, camera_id="c", outcome="missing",
                                   future_field={"x": [1]})])
    assert msg["detections"] == [] and msg["reason"] is None and msg.get("t_capture_ns") is None
    assert "future_field" not in msg


def test_integral_floats_are_ints_and_bools_are_not():
    assert codec.unpack([codec.pack("gate", seq=3.0, t_gate_ns=5)])["seq"] == 3
    assert type(codec.unpack([codec.pack("gate", seq=3.0, t_gate_ns=5)])["seq"]) is int
    for seq in (True, "3", 3.5, -1, 2**63, [3]):
        with pytest.raises(BadMessage) as err:
            codec.unpack([codec.pack("gate", seq=seq, t_gate_ns=5)])
        assert err.value.reason == "invalid"


@pytest.mark.parametrize("raw, reason", [
    (b'{"kind": "view", "seq": 1e400, "view": 0, "t_gate_ns": 1, "camera_id": "c", "outcome": "bad"}', "invalid"),
    (b'{"kind": "arm", "seq": 1e400, "t_gate_ns": 1, "due_ns": 2}', "invalid"),
    (b'{"kind": "image", "seq": 1, "view": 0, "shape": [1e400, 2]}', "invalid"),
    (b'{"kind": "beat", "stage": ["x"]}', "invalid"),
    (b'{"kind": "beat", "stage": "w", "pid": 1, "state": "ready", "t_ns": 1, "stats": {"inferred": "9"}}', "invalid"),
    (b'{"kind": "gate", "seq": NaN, "t_gate_ns": 1}', "not json"),
    (b'{"kind": "gate", "seq": ' + b"9" * 5000 + b', "t_gate_ns": 1}', "not json"),
    (b"[" * 100_000, "not json"),
    (b"\xff\xfe\x00", "not json"),
    (b"[1, 2]", "not json"),
    (b'{"seq": 1}', "unknown kind"),
    (b'{"kind": ["gate"]}', "unknown kind"),
    (b'{"kind": "nope"}', "unknown kind"),
    (b" " * (codec.MAX_HEADER_BYTES + 1), "too large"),
])
def test_regressions_of_issue_13_are_refused_with_their_reason(raw, reason):
    with pytest.raises(BadMessage) as err:
        codec.unpack([raw])
    assert err.value.reason == reason and err.value.reason in codec.REASONS


def test_a_view_dated_in_the_future_is_out_of_window():
    view = VALID["view"] | {"t_gate_ns": NOW + 10**15, "t_capture_ns": NOW + 10**15}
    with pytest.raises(BadMessage) as err:
        codec.unpack([codec.pack("view", **view)], now_ns=NOW)
    assert err.value.reason == "out of window"
    assert codec.unpack([codec.pack("view", **view)])["seq"] == 7  # no clock given: not checked
    soon = VALID["view"] | {"t_gate_ns": NOW + 1900 * MS, "t_capture_ns": None}
    assert codec.unpack([codec.pack("view", **soon)], now_ns=NOW)["t_gate_ns"] == NOW + 1900 * MS
    old = VALID["decision"] | {"t_gate_ns": 1, "due_ns": 5, "decided_ns": 9}
    assert codec.unpack([codec.pack("decision", **old)], now_ns=NOW)["t_gate_ns"] == 1


def test_an_arm_is_due_within_a_travel_time_of_its_gate():
    assert codec.unpack([codec.pack("arm", **VALID["arm"])], now_ns=NOW)  # due 8 s ahead: fine
    for due in (NOW - 1, NOW + int(codec.MAX_TRAVEL_S * 1e9) + 1):
        with pytest.raises(BadMessage, match="due_ns"):
            codec.unpack([codec.pack("arm", **VALID["arm"] | {"due_ns": due})])


def test_a_kind_this_socket_does_not_carry_is_unexpected():
    with pytest.raises(BadMessage) as err:
        codec.unpack([codec.pack("gate", **VALID["gate"])], kinds={"beat"})
    assert err.value.reason == "unexpected kind"


def test_huge_lists_are_refused_by_their_bound():
    keys = [[1, 2]] * (codec.MAX_ACK + 1)
    with pytest.raises(BadMessage, match="keys"):
        codec.unpack([codec.pack("ack", keys=keys)])
    dets = [VALID["view"]["detections"][0]] * (codec.MAX_DETECTIONS + 1)
    with pytest.raises(BadMessage, match="detections"):
        codec.unpack([codec.pack("view", **VALID["view"] | {"detections": dets})])


def test_image_pixels_must_match_a_sane_shape():
    pixels = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    parts = codec.image_parts(7, 1, pixels)
    head = codec.unpack(parts)
    assert np.array_equal(codec.image_from_parts(head, [parts[0], pixels.tobytes()]), pixels)
    cases = [([4, 5, 3], pixels.tobytes()[:-1], "parts"), ([8192, 8193], b"", "invalid"),
             ([4, 5, 5], bytes(100), "invalid"), ([0, 5], b"", "invalid"), ([4, 5, 3], None, "parts"),
             ([2**62, 2**62, 4], b"", "invalid")]
    for shape, buffer, reason in cases:
        with pytest.raises(BadMessage) as err:
            codec.image_from_parts({"shape": shape}, [parts[0], buffer])
        assert err.value.reason == reason
    with pytest.raises(BadMessage):
        codec.image_from_parts(head, [parts[0]])


# -- properties: anything in, BadMessage or a message out ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats() | st.text(max_size=20) | st.just(INF),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
FIELDS = sorted({key for fields in VALID.values() for key in fields} | {"class", "score", "box", "shape"})


def encode(value) -> bytes:
    """JSON text as a hostile peer may write it: NaN, Infinity and 1e400 included."""
    return json.dumps(value).replace(f'"{INF}"', "1e400").encode()


@st.composite
def hostile_headers(draw) -> bytes:
    """A valid message with one field replaced or added, or a header of any shape at all."""
    kind = draw(st.sampled_from(sorted(VALID)))
    head = {"kind": kind, **json.loads(json.dumps(VALID[kind]))}
    choice = draw(st.integers(0, 2))
    if choice == 0:
        head[draw(st.sampled_from(FIELDS))] = draw(json_values)
    elif choice == 1 and kind == "decision":
        head["views"][draw(st.integers(0, 5))][draw(st.sampled_from(FIELDS))] = draw(json_values)
    else:
        head = draw(json_values)
    return encode(head)


def refuses_only_with_bad_message(call) -> None:
    try:
        call()
    except BadMessage as exc:
        assert exc.reason in codec.REASONS


@PROPERTY
@given(hostile_headers())
def test_any_json_header_decodes_or_is_refused(raw):
    refuses_only_with_bad_message(lambda: codec.unpack([raw], now_ns=NOW))
    refuses_only_with_bad_message(lambda: codec.unpack([raw], kinds={"view", "gate"}))


@PROPERTY
@given(st.lists(st.binary(max_size=64) | st.integers() | st.none() | st.text(max_size=8) | json_values.map(encode),
                max_size=4))
def test_any_multipart_message_decodes_or_is_refused(parts):
    refuses_only_with_bad_message(lambda: codec.unpack(parts))
    refuses_only_with_bad_message(lambda: codec.image_from_parts({"shape": [2, 3]}, parts))


@PROPERTY
@given(json_values, st.binary(max_size=64))
def test_any_image_shape_gives_pixels_or_a_refusal(shape, buffer):
    refuses_only_with_bad_message(lambda: codec.image_from_parts({"shape": shape}, [b"{}", buffer]))


# -- codec.frame_from_parts ------------------------------------------------------------

def frame(**kw) -> Frame:
    args = dict(container_seq=3, view=2, camera_id="cam2", t_gate_ns=NOW, t_capture_ns=NOW + MS,
                pixels=np.arange(24, dtype=np.uint8).reshape(2, 4, 3), meta={"frame_counter": 9})
    return Frame(**{**args, **kw})


def test_frames_round_trip_with_and_without_pixels():
    sent = frame()
    got = codec.frame_from_parts(codec.frame_parts(sent))
    assert (got.container_seq, got.view, got.camera_id, got.t_gate_ns, got.meta) == (3, 2, "cam2", NOW, {"frame_counter": 9})
    assert np.array_equal(got.pixels, sent.pixels)
    missing = codec.frame_from_parts(codec.frame_parts(frame(pixels=None, missing="timeout")))
    assert missing.pixels is None and missing.missing == "timeout"


@pytest.mark.parametrize("change", [
    {"container_seq": "__1e400__"}, {"container_seq": True}, {"view": 6}, {"view": -1},
    {"shape": [-2, 4, 3]}, {"shape": [2**40, 2**40, 3]}, {"shape": [2, 4, 4]}, {"camera_id": ["x"]},
    {"meta": {"counter": "__1e400__"}}, {"meta": {"list": list(range(65))}}, {"t_gate_ns": "__1e400__"},
])
def test_hostile_frame_headers_are_value_errors(change):
    head = json.loads(codec.frame_header(frame())) | change
    with pytest.raises(ValueError):
        codec.frame_from_parts([encode(head), np.zeros(24, np.uint8).tobytes()])


@PROPERTY
@given(st.data())
def test_any_frame_message_is_a_frame_or_a_value_error(data):
    head = json.loads(codec.frame_header(frame()))
    choice = data.draw(st.integers(0, 1))
    if choice:
        head[data.draw(st.sampled_from(sorted(head)))] = data.draw(json_values)
    else:
        head = data.draw(json_values)
    extra = data.draw(st.lists(st.binary(max_size=32) | st.none() | st.integers(), max_size=2))
    try:
        codec.frame_from_parts([encode(head), *extra])
    except ValueError:
        pass
