"""What the pipeline hands to storage: plain data, no database types.

The decision stage fills these and the storage-writer stage passes them to
`storage.writer.Recorder.record`; keeping them free of SQLAlchemy lets the pipeline
build and ship them (as JSON) without importing the ORM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ViewRecord:
    view: int  # 0-5; 0-2 left bank, 3-5 right bank
    camera_id: str
    t_capture: datetime | None = None  # UTC wall time the station received the image
    missing: str | None = None  # why there are no pixels (timeout, camera lost, ...)
    # {"class", "score", "box": [x1, y1, x2, y2], "threshold": the class threshold the line applied}
    detections: list[dict] = field(default_factory=list)


@dataclass
class ContainerRecord:
    seq: int
    line_id: str
    t_gate: datetime  # UTC wall time of the gate event
    decision: str  # "pass" | "reject"
    reason: str | None = None  # "defect", "missing view", "late", ...
    latency_ms: float | None = None  # gate to decision
    model_version: str | None = None
    views: list[ViewRecord] = field(default_factory=list)
    training_sample: bool = False  # keep every view, lossless (PNG), whatever the keep policy
    section: int | None = None  # the mould that made it (storage/moulds.py), when the line reads it
    cavity: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (times as ISO strings) for the pipeline's messages."""
        d = asdict(self)
        d["t_gate"] = self.t_gate.isoformat()
        for v, rec in zip(d["views"], self.views):
            v["t_capture"] = rec.t_capture.isoformat() if rec.t_capture else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ContainerRecord":
        views = [ViewRecord(**{**v, "t_capture": parse_utc(v.get("t_capture"))}) for v in d.get("views", [])]
        return cls(**{**d, "t_gate": parse_utc(d["t_gate"]), "views": views})


@dataclass
class EventRecord:
    """Something the line should know about that is not a container: camera lost, frames dropped."""

    kind: str  # "camera lost", "frames dropped", "late result", ...
    t: datetime = field(default_factory=utc_now)
    line_id: str | None = None
    camera_id: str | None = None
    container_seq: int | None = None
    count: int = 1
    detail: str | None = None


def parse_utc(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
