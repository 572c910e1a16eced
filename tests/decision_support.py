"""Helpers for the tests that decide containers without running the line (a module, not a
test file): a config.yaml for a temporary data folder, and the real DecisionBook fed a gate
event and six views."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.decision import DecisionBook
from storage.moulds import parse_mould

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp: Path, storage: dict | None = None, spc: dict | None = None, **line) -> Path:
    """tmp/config.yaml: the shipped one with its data folder in tmp/data, `storage` settings
    and `line` settings changed, and the `spc` section replaced when given."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["storage"].update(data_dir=str(tmp / "data"), **(storage or {}))
    raw["line"].update(line)
    if spc is not None:
        raw["spc"] = spc
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def decision_book(**kw) -> DecisionBook:
    """The decision stage's state machine at threshold 0.5, rejecting what comes late."""
    return DecisionBook(line_id="line-1", travel_time_ms=1000, relay_lead_ms=30, late_result="reject",
                        thresholds={}, default_threshold=0.5, **kw)


def decide(b: DecisionBook, seq: int, mould: str | None, defect: bool = False, now: int = 10**12,
           spacing_ns: int = 1000) -> dict:
    """Gate (with the mould) and six inferred views through the real DecisionBook."""
    t_gate = now + seq * spacing_ns
    section, cavity = parse_mould(mould) if mould else (None, None)
    b.gate(seq, t_gate, t_gate, section=section, cavity=cavity)
    decision = None
    for view in range(6):
        hit = [{"class": "bubble", "score": 0.9, "box": [10, 10, 40, 40]}] if defect and view == 2 else []
        decision = b.view({"seq": seq, "t_gate_ns": t_gate, "view": view, "camera_id": f"cam-{view}",
                           "outcome": "inferred", "detections": hit, "model_version": "rtvp-test"},
                          t_gate + 1000) or decision
    return decision
