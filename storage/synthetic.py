"""Made-up containers for the storage tests and bench/storage.py: six views, a few detections.

The images are smooth glass-like gradients with sensor noise, so that JPEG and PNG sizes
are close to those of real bottle photographs (pure noise would exaggerate them).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import cv2
import numpy as np

from storage.records import ContainerRecord, ViewRecord

# The renderer's vocabulary (camera.synth.CLASSES), repeated: storage must not import camera/.
CLASSES = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")
HEIGHT, WIDTH = 820, 700
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


def view_image(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    glass = 120 + 60 * np.cos((x - width / 2) / width * np.pi) + 20 * np.sin(y / height * 3 * np.pi)
    img = np.repeat(glass[..., None], 3, axis=2) + rng.normal(0, 3, (height, width, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(3):
        c = (int(rng.integers(50, width - 50)), int(rng.integers(50, height - 50)))
        cv2.circle(img, c, int(rng.integers(3, 15)), (20, 20, 20), -1)
    return img


def container(seq: int, decision: str | None = None, detections_per_view: int = 3, line_id: str = "line-1",
              t_gate: datetime | None = None, model_version: str = "v1") -> ContainerRecord:
    """Container `seq` at 10 per second from T0; every fifth is rejected unless `decision` says."""
    rng = np.random.default_rng(seq)
    t = t_gate or T0 + timedelta(milliseconds=100 * seq)
    decision = decision or ("reject" if seq % 5 == 0 else "pass")
    views = []
    for view in range(6):
        dets = []
        for _ in range(detections_per_view):
            x, y = float(rng.uniform(0, WIDTH - 40)), float(rng.uniform(0, HEIGHT - 40))
            dets.append({"class": CLASSES[int(rng.integers(len(CLASSES)))],
                         "score": round(float(rng.uniform(0.05, 0.9)), 3),
                         "box": [x, y, x + float(rng.uniform(5, 40)), y + float(rng.uniform(5, 40))]})
        t_capture = t + timedelta(milliseconds=5 + 150 * (view >= 3))  # the right bank after the turn
        views.append(ViewRecord(view=view, camera_id=f"cam-{view}", t_capture=t_capture, detections=dets))
    return ContainerRecord(seq=seq, line_id=line_id, t_gate=t, decision=decision,
                           reason="defect" if decision == "reject" else None,
                           latency_ms=float(rng.uniform(20, 80)), model_version=model_version, views=views)


def images(seq: int, cache: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """Six views; with `cache`, reuse a few pre-rendered images (benchmarks measure storage, not drawing)."""
    if cache is None:
        return {v: view_image(seq * 6 + v) for v in range(6)}
    for key in {(seq * 6 + v) % 12 for v in range(6)} - cache.keys():
        cache[key] = view_image(key)
    return {v: cache[(seq * 6 + v) % 12] for v in range(6)}
