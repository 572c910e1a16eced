"""Config section owned by `storage/`: where records and images go, and how much disk."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from camera.config import Section


class StorageConfig(Section):
    data_dir: Path = Field(
        default=Path("data"),
        description="Everything the application writes lives here (relative to config.yaml).")
    database: str = Field(
        default="sqlite:///{data_dir}/edge.db",
        description="SQLAlchemy URL; {data_dir} is replaced by the data folder.")
    keep_images: Literal["all", "rejects", "none"] = "rejects"
    keep_pass_one_in: int = Field(
        default=20, ge=0, description="With keep_images: rejects, also keep one in N passes (0: none).")
    image_format: Literal["jpeg", "png"] = "jpeg"
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    quota_gb: float = Field(default=20.0, gt=0, description="Image store size; oldest unlabelled go first.")
    batch_size: int = Field(default=50, ge=1, description="Containers per database transaction at most.")
