"""The station tests' gate, line and camera settings, and a captured batch on disk (a module,
not a test file)."""

from __future__ import annotations

import json

import cv2
import numpy as np
from pydantic import TypeAdapter

from camera.config import CameraConfig, GateConfig
from edge.config import LineConfig

GATE = TypeAdapter(GateConfig).validate_python({"driver": "simulated"})
LINE = LineConfig(speed_cpm=1200, travel_time_ms=1000, rotation_delay_ms=10)


def camera_configs(driver: str, **settings) -> list:
    """Six cameras of one driver, views 0-2 on the left bank and 3-5 on the right."""
    return [TypeAdapter(CameraConfig).validate_python(
        {"id": f"{driver}-{view}", "driver": driver, "view": view, "bank": "left" if view < 3 else "right",
         "grab_timeout_ms": 5000, **settings}) for view in range(6)]


def write_batch(root, seqs, absent=()):
    """A captured batch folder as `edge capture export` writes it (docs/storage.md)."""
    (root / "views").mkdir(parents=True)
    containers = []
    for seq in seqs:
        views = []
        for view in range(6):
            if (seq, view) in absent:
                continue
            file = f"views/{seq:06d}_v{view}.png"
            cv2.imwrite(str(root / file), np.full((41, 35, 3), (seq, view, 0), np.uint8))
            views.append({"view": view, "camera_id": f"line-cam-{view}", "file": file,
                          "t_capture": "2026-11-25T10:00:00.000000Z"})
        containers.append({"seq": seq, "t_gate": "2026-11-25T10:00:00Z", "decision": "pass",
                           "model_version": "v1", "views": views})
    (root / "manifest.json").write_text(json.dumps(
        {"format": "edge-batch/1", "line": "line-1", "created": "2026-11-25T10:00:00Z", "containers": containers}))
    return root
