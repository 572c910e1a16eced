"""Config section owned by `engines/`: which runtime runs which model, and thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from camera.config import Section


class EngineConfig(Section):
    runtime: Literal["onnxruntime", "tensorrt", "torch"] = "onnxruntime"
    model: str = Field(
        default="active",
        description="'active' (the registry's active version), a version name, or a model folder.")
    imgsz: int = Field(default=640, ge=64, description="Model input size; a multiple of 32.")
    threads: int = Field(default=2, ge=1, description="Intra-op threads (ONNX Runtime, torch).")
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    iou: float = Field(default=0.7, gt=0, le=1)
    max_det: int = Field(default=300, ge=1, description="Detections kept per view at most.")
    default_threshold: float = Field(default=0.5, gt=0, le=1)
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Per-class score threshold; others use default_threshold.")
