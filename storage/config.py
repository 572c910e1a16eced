"""Config section owned by `storage/`: where records and images go, and how much disk."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from storage.section import Section


class StorageConfig(Section):
    data_dir: Path = Field(
        default=Path("data"),
        description="Everything the application writes lives here (relative to config.yaml).")
    database: str = Field(
        default="sqlite:///{data_dir}/edge.db",
        description="SQLAlchemy URL (sqlite or postgresql); {data_dir} is replaced by the data folder.")
    keep_images: Literal["all", "rejects", "none"] = "rejects"
    keep_pass_one_in: int = Field(
        default=20, ge=0, description="With keep_images: rejects, also keep one in N passes (0: none).")
    image_format: Literal["jpeg", "png"] = "jpeg"
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    quota_gb: float = Field(default=20.0, gt=0, description="Image store size; oldest unlabelled go first.")
    min_free_mb: float = Field(
        default=1024, ge=0, description="Below this much free space on the data folder's file system "
        "images are not stored; records keep committing.")
    batch_size: int = Field(default=50, ge=1, description="Containers per database transaction at most.")

    @field_validator("database")
    @classmethod
    def _supported_url(cls, url: str) -> str:
        """Checked at `edge config check`, not first met as a traceback when the writer starts."""
        return check_database_url(url)


class SpcConfig(Section):
    """Control charts per mould cavity and per defect class (storage/spc.py), run by the storage writer."""

    enabled: bool = True
    subgroup: int = Field(default=100, ge=10, le=10_000, description="Containers of one cavity per chart point.")
    class_subgroup: int = Field(default=500, ge=0, le=100_000,
                                description="Containers of the line per class-chart point (0: no class charts).")
    baseline_containers: int = Field(default=5000, ge=100, description="Inspected containers that set the "
                                     "centre lines: the most recent ones within baseline_hours at the writer's "
                                     "start, else the first ones it stores.")
    baseline_hours: float = Field(default=24.0, gt=0, description="How far back the baseline may reach.")
    run: int = Field(default=8, ge=2, le=50, description="Points in a row above the centre line that alarm.")


SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def check_database_url(url: str) -> str:
    """`url` if SQLAlchemy parses it and can load its dialect and driver, else ValueError saying why."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    fix = "use sqlite:///{data_dir}/edge.db or postgresql+psycopg://user:password@host/db"
    try:
        parsed = make_url(url.replace("{data_dir}", "data"))
        if parsed.port is not None and not 1 <= parsed.port <= 65535:
            raise ArgumentError("port out of range")
    except (ArgumentError, ValueError):
        raise ValueError(f"not a SQLAlchemy URL with a port 1-65535 if any; {fix}") from None
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise ValueError(f"database {parsed.get_backend_name()!r} is not supported (only "
                         f"{' and '.join(SUPPORTED_DIALECTS)}); {fix}")
    try:
        parsed.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        raise ValueError(f"driver {parsed.drivername!r} cannot be loaded ({exc}); {fix}") from None
    return url
