"""A captured batch folder played back as a camera, for `edge replay`.

Each camera serves its own view of every container in the manifest's order; the
station takes the container seqs from `playlist()`, so replayed frames carry the
batch's own seqs and records can be compared container by container. What it plays is
what `storage.batches.read_batch` accepts, the reader `edge replay` reports from: a view
named outside the folder, or a container whose seq is not a number, is skipped by both.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2

from camera.base import Capture, ViewMissing, monotonic_ns
from camera.drivers.convert import to_format
from camera.drivers.playback import PlaybackCamera
from camera.errors import CameraError
from storage.batches import BatchView, read_batch
from storage.files import read_image

log = logging.getLogger(__name__)
BATCH_FORMAT = "edge-batch/1"


def read_manifest(path: Path, camera_id: str = "batch") -> dict:
    """The batch manifest, checked for format; CameraError naming the camera and folder."""
    manifest_path = Path(path) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except OSError as exc:
        raise CameraError(f"camera {camera_id!r}: cannot read {manifest_path} ({exc.strerror}); "
                          "path: must be a captured batch folder (edge capture export)") from None
    except json.JSONDecodeError as exc:
        raise CameraError(f"camera {camera_id!r}: {manifest_path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BATCH_FORMAT:
        raise CameraError(f"camera {camera_id!r}: {manifest_path} is not an {BATCH_FORMAT} manifest")
    return manifest


class BatchCamera(PlaybackCamera):
    driver = "batch"
    fixed_size = False  # a stored image keeps the size it was captured at

    def __init__(self, config) -> None:
        super().__init__(config)
        self._root = Path(config.path)
        self._views: dict[int, BatchView | None] = {}
        self._order: list[int] = []

    def open(self) -> None:
        read_manifest(self._root, self.id)  # a folder that is no batch is an error, not an empty playlist
        batch = read_batch(self._root, check_images=False)
        if batch.skipped:
            log.warning("camera %r: batch %s: %d entries skipped (`edge replay` lists them), first: %s",
                        self.id, self._root, len(batch.skipped), batch.skipped[0])
        self._order = [container.seq for container in batch.containers]
        self._views = {container.seq: next((v for v in container.views if v.view == self.config.view), None)
                       for container in batch.containers}

    def configure(self) -> None:
        """A stored image keeps the settings it was taken with."""

    def _capture(self, seq: int) -> Capture:
        entry = self._views.get(seq)
        if entry is None:
            raise ViewMissing(f"view {self.config.view} of container {seq} is not in batch {self._root}")
        image = read_image(entry.file, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ViewMissing(f"cannot read {entry.file}")
        pixels, fmt = to_format(image, self.config.pixel_format)
        meta = {"batch_camera_id": entry.camera_id or None,
                "batch_t_capture": entry.t_capture.isoformat() if entry.t_capture else None,
                "file": entry.file.relative_to(self._root.resolve()).as_posix()}
        return Capture(pixels=pixels, pixel_format=fmt, t_capture_ns=monotonic_ns(), meta=meta)

    def playlist(self) -> list[int]:
        return list(self._order)

    def describe(self) -> dict:
        return {"id": self.id, "driver": self.driver, "model": "captured batch", "serial": str(self._root)}
