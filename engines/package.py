"""The model package: one folder per model version, verified before it is used.

    <version>/
      manifest.json   version, parent, created (UTC), arch (what build_model needs),
                      vocabulary, text encoder, SAM weights used, training data,
                      metrics, thresholds, and the sha256 of every file below
      weights.pt      a plain state dict (loaded with torch.load(weights_only=True))
      text.npy        the vocabulary's text embeddings, K x D float32, L2-normalised
      model.onnx      the deploy graph, once exported (optional)

A file whose hash differs from the manifest is refused: a corrupt or tampered model
must never run on a line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EngineError

MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
TEXT = "text.npy"
ONNX = "model.onnx"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelPackage:
    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def arch(self) -> dict[str, Any]:
        return self.manifest["arch"]

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return tuple(self.manifest["vocabulary"])

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.manifest.get("thresholds") or {})

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "ModelPackage":
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise EngineError(f"{path}: not a model package (no {MANIFEST})") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise EngineError(f"{path / MANIFEST}: unreadable manifest ({exc})") from None
        for key in ("version", "arch", "vocabulary", "files"):
            if key not in manifest:
                raise EngineError(f"{path / MANIFEST}: missing '{key}'")
        package = cls(path, manifest)
        if verify:
            package.verify()
        return package

    def verify(self) -> None:
        """Refuse a package whose files are missing or differ from the manifest's hashes."""
        for name, expected in self.manifest["files"].items():
            file = self.path / name
            if not file.is_file():
                raise EngineError(f"{file}: listed in the manifest but missing; re-export or "
                                  "re-register the model")
            if sha256(file) != expected:
                raise EngineError(f"{file}: sha256 differs from the manifest (corrupt or "
                                  "tampered); refusing to load it")

    @classmethod
    def create(cls, path: str | Path, *, version: str, state_dict: dict, arch: dict[str, Any],
               vocabulary: list[str], embeddings: np.ndarray, **info: Any) -> "ModelPackage":
        """Write a package atomically: a temporary folder beside `path`, renamed when complete."""
        import torch

        path = Path(path)
        if path.exists():
            raise EngineError(f"{path}: already exists; choose another version name")
        if len(vocabulary) != len(embeddings):
            raise EngineError(f"{len(vocabulary)} class names but {len(embeddings)} text embeddings")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp / WEIGHTS)
            np.save(tmp / TEXT, np.asarray(embeddings, np.float32))
            manifest = {
                "version": version,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "arch": arch,
                "vocabulary": list(vocabulary),
                **info,
                "files": {name: sha256(tmp / name) for name in (WEIGHTS, TEXT)},
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path, manifest)

    def state_dict(self) -> dict:
        import torch

        try:
            return torch.load(self.path / WEIGHTS, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a damaged file
            raise EngineError(f"{self.path / WEIGHTS}: cannot load weights ({exc})") from None

    def embeddings(self) -> np.ndarray:
        return np.load(self.path / TEXT)

    def add_file(self, name: str, src: Path) -> Path:
        """Move `src` into the package as `name` and record its hash (e.g. model.onnx)."""
        dst = self.path / name
        shutil.move(str(src), dst)
        self.update(files={**self.manifest["files"], name: sha256(dst)})
        return dst

    def update(self, **fields: Any) -> None:
        """Change manifest fields (metrics, thresholds, ...), written atomically."""
        self.manifest.update(fields)
        tmp = self.path / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2))
        tmp.replace(self.path / MANIFEST)
