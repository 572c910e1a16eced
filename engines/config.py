"""Config section owned by `engines/`: which runtime runs which model, and thresholds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from storage.section import Section


def _score(value: float) -> float:
    if not 0 < value <= 1:  # NaN fails this too
        raise ValueError("a score threshold lies in (0, 1]: above 1 that class would never be rejected, "
                         "0 or below would reject every container")
    return value


Score = Annotated[float, AfterValidator(_score)]


class EngineConfig(Section):
    runtime: Literal["onnxruntime", "onnxruntime-gpu", "tensorrt", "torch"] = Field(
        default="onnxruntime",
        description="onnxruntime (CPU), onnxruntime-gpu (its CUDA / TensorRT providers, needs "
                    "glass-edge[gpu-ort]), tensorrt (glass-edge[gpu]), torch (development).")
    model: str = Field(
        default="active",
        description="'active' (the registry's active version), a version name, or a model folder.")
    imgsz: int = Field(default=640, ge=64, description="Model input size; a multiple of 32.")
    threads: int = Field(default=2, ge=1, description="Intra-op threads (ONNX Runtime, torch).")
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    iou: float = Field(default=0.5, gt=0, le=1, description=(
        "NMS overlap within a class; 0.5 keeps fewer pieces of one long thread than 0.7 (docs/training.md)."))
    max_det: int = Field(default=300, ge=1, description="Detections kept per view at most.")
    default_threshold: Score = 0.5
    thresholds: dict[str, Score] = Field(
        default_factory=dict, description="Per-class score threshold in (0, 1]; others use default_threshold.")
