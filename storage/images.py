"""The image store: view images under <data_dir>/images/YYYY/MM/DD/, written crash-safe.

A file is written to a hidden temporary name, flushed to disk and renamed (`atomic_write`);
its database row is committed only after the rename. A power cut therefore leaves at worst a
temporary file or a file without a row, both of which `storage.check.repair` removes.
Which views are kept and in which format is decided here, from the storage config.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from storage.config import StorageConfig
from storage.errors import StorageError
from storage.files import atomic_write
from storage.names import view_stem
from storage.records import ContainerRecord

IMAGES = "images"


class ImageStore:
    def __init__(self, data_dir: Path, config: StorageConfig) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / IMAGES
        self.config = config

    def keeps(self, container: ContainerRecord) -> bool:
        """Whether this container's views go to disk under the keep policy."""
        policy = self.config.keep_images
        if policy == "none":
            return False
        if policy == "all" or container.training_sample or container.decision != "pass":
            return True
        n = self.config.keep_pass_one_in
        return n > 0 and container.seq % n == 0

    def extension(self, container: ContainerRecord) -> str:
        """Lossless PNG for training samples (and when configured), JPEG otherwise."""
        return "png" if container.training_sample or self.config.image_format == "png" else "jpg"

    @staticmethod
    def relative_path(line_id: str, t_gate: datetime, seq: int, view: int, ext: str) -> str:
        """images/YYYY/MM/DD/<line>_<HHMMSSffffff>_<seq>_v<view>.<ext>, unique even if seq restarts."""
        return (f"{IMAGES}/{t_gate:%Y/%m/%d}/{_safe_name(line_id)}_{t_gate:%H%M%S%f}_"
                f"{view_stem(seq, view)}.{ext}")

    def write(self, relative: str, image: np.ndarray) -> int:
        """Encode and store atomically; return the bytes on disk."""
        return self.put(relative, self.encode(relative, image))

    def encode(self, relative: str, image: np.ndarray) -> bytes:
        """The file's bytes, in the format its name says."""
        return encode(image, Path(relative).suffix, self.config.jpeg_quality)

    def put(self, relative: str, data: bytes) -> int:
        """Store encoded bytes atomically; return their size. A failed write (a full disk)
        removes its temporary file at once: on a full disk every byte counts."""
        path = self.data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            f.write(data)
        return len(data)

    def delete(self, relative: str) -> None:
        try:
            (self.data_dir / relative).unlink()
        except FileNotFoundError:
            pass

    def path(self, relative: str) -> Path:
        return self.data_dir / relative

    def files(self):
        """Every file under images/ as a data-folder-relative POSIX path (temporary ones included)."""
        if not self.root.exists():
            return
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                yield (Path(dirpath) / name).relative_to(self.data_dir).as_posix()


def encode(image: np.ndarray, suffix: str, jpeg_quality: int = 90) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix in (".jpg", ".jpeg") else \
        [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast: PNG size barely shrinks beyond level 1 on photos
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise StorageError(f"cannot encode a {image.shape} {image.dtype} image as {suffix}")
    return buf.tobytes()


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)
