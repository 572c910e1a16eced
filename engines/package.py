"""The model package: one folder per model version, verified before it is used.

    <version>/
      manifest.json   version, parent, created (UTC), arch (what build_model needs),
                      vocabulary, text encoder, SAM weights used, training data,
                      metrics, thresholds, and the sha256 of every file below
      weights.pt      a plain state dict (loaded with torch.load(weights_only=True))
      text.npy        the vocabulary's text embeddings, K x D float32, L2-normalised
      model.onnx      the deploy graph, once exported (optional)
      registered.json the registry's digest of the manifest (only in a registry)

A corrupt or tampered model must never run on a line, so a package is refused when:
its manifest does not list weights.pt and text.npy (nothing would be checked), a listed
file's hash differs, a threshold lies outside (0, 1], or, once registered, the manifest
differs from the digest the registry recorded (a threshold edited by hand). The manifest
pins every file's sha256, so that one digest covers the files too. Files made later from
the package (exported graphs, TensorRT engines) carry a digest of their own beside them,
`<file>.sha256`, and are rebuilt when the file no longer matches it.

The manifest's `schema_version` says which layout it has. A manifest written by an older
glass-edge (none before version 1) is upgraded on load by `upgrade_manifest`, in memory
only: the registry's digest and the file stay as they were until a tool changes the
package (`update`). One written by a newer glass-edge is refused, naming the versions.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EngineError
from storage.files import atomic_write

MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
TEXT = "text.npy"
ONNX = "model.onnx"
REGISTERED = "registered.json"
REQUIRED_FILES = (WEIGHTS, TEXT)  # what loading reads: never unchecked
SCHEMA_VERSION = 1  # the manifest layout this code writes and reads
# A version names a folder: letters, digits, '.', '_', '-', '+'; no '/', no leading dot.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelModified(EngineError):
    """A package differs from what was hashed or registered; `what` says what differs."""

    def __init__(self, version: str, what: str) -> None:
        super().__init__(f"model {version}: modified ({what}); refusing to load it: restore it, or "
                         "register the changed package under a new version")
        self.what = what


def check_version_name(version: object) -> str:
    """`version` if it can name a registry folder, else EngineError (no '/', '..' or odd characters)."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise EngineError(f"model version {str(version)[:80]!r}: not a usable name; use letters, digits, "
                          "'.', '_', '-' and '+' only, starting with a letter or digit (at most 128)")
    return version


def record_digest(path: Path) -> None:
    """Write `<file>.sha256` (sha256sum's format) beside a file made from a package."""
    path.with_name(path.name + ".sha256").write_text(f"{sha256(path)}  {path.name}\n")


def digest_differs(path: Path) -> str | None:
    """None when `path` matches its recorded `<file>.sha256`; otherwise why not, for a log line."""
    try:
        recorded = path.with_name(path.name + ".sha256").read_text().split()[0]
    except (OSError, IndexError):
        return "no recorded digest beside it"
    return None if sha256(path) == recorded else "differs from its recorded sha256"


def _manifest_digests(manifest: dict[str, Any]) -> dict[str, str]:
    """sha256 of each top-level manifest key's value (canonical JSON), so a change can be named."""
    return {key: hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
            for key, value in manifest.items()}


class ModelPackage:
    def __init__(self, path: Path, manifest: dict[str, Any], stored: dict[str, Any] | None = None) -> None:
        self.path = path
        self.manifest = manifest  # upgraded to SCHEMA_VERSION
        self._stored = manifest if stored is None else stored  # as manifest.json holds it: what is sealed

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

    @property
    def registered(self) -> bool:
        """Whether a registry recorded this package's digest (it lies in a registry)."""
        return (self.path / REGISTERED).is_file()

    @classmethod
    def load(cls, path: str | Path, verify: bool = True, registered: bool = False) -> "ModelPackage":
        """Read and check the manifest; `verify` also hashes the files (and the registry digest,
        which `registered` requires to be there)."""
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise EngineError(f"{path}: not a model package (no {MANIFEST})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EngineError(f"{path / MANIFEST}: unreadable manifest ({exc})") from None
        stored = manifest
        manifest = upgrade_manifest(path / MANIFEST, stored)
        _check_manifest(path / MANIFEST, manifest)
        package = cls(path, manifest, stored)
        if verify:
            package.verify(registered)
        return package

    def verify(self, registered: bool = False) -> None:
        """Refuse a package whose files are missing or differ from the manifest's hashes, or
        whose manifest differs from its registry digest (required when `registered`)."""
        for name, expected in self.manifest["files"].items():
            file = self.path / name
            if not file.is_file():
                raise EngineError(f"{file}: listed in the manifest but missing; re-export or "
                                  "re-register the model")
            if sha256(file) != expected:
                raise ModelModified(self.version, f"{name}: sha256 differs from the manifest, corrupt or tampered")
        if registered or self.registered:
            self._check_registered()

    def seal(self) -> None:
        """Record the digest of the manifest as it is now (the registry does, at registration)."""
        with atomic_write(self.path / REGISTERED, fsync=False) as fh:
            json.dump({"keys": _manifest_digests(self._stored)}, fh, indent=2)

    def _check_registered(self) -> None:
        try:
            recorded = json.loads((self.path / REGISTERED).read_text())["keys"]
            if not isinstance(recorded, dict):
                raise TypeError("'keys' is not an object")
        except FileNotFoundError:
            raise ModelModified(self.version, f"no registration digest ({REGISTERED} is missing)") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelModified(self.version, f"{REGISTERED} is unreadable ({exc})") from None
        current = _manifest_digests(self._stored)
        changed = sorted(key for key in set(recorded) | set(current) if recorded.get(key) != current.get(key))
        if changed:
            raise ModelModified(self.version, f"manifest {', '.join(changed)} differ from registration")

    @classmethod
    def create(cls, path: str | Path, *, version: str, state_dict: dict, arch: dict[str, Any],
               vocabulary: list[str], embeddings: np.ndarray, **info: Any) -> "ModelPackage":
        """Write a package atomically: a temporary folder beside `path`, renamed when complete."""
        import torch

        path = Path(path)
        check_version_name(version)
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
                "schema_version": SCHEMA_VERSION,
                "version": version,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "arch": arch,
                "vocabulary": list(vocabulary),
                **info,
                "files": {name: sha256(tmp / name) for name in (WEIGHTS, TEXT)},
            }
            _check_manifest(path / MANIFEST, manifest)
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
        """K x D float text embeddings; a pickled or object array is refused, never unpickled."""
        file = self.path / TEXT
        try:
            embeddings = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise EngineError(f"{file}: not a plain numeric array ({exc}); re-create the package") from None
        if embeddings.dtype.kind != "f" or embeddings.shape[:1] != (len(self.vocabulary),) or embeddings.ndim != 2:
            raise EngineError(f"{file}: expected {len(self.vocabulary)} x D float embeddings, got "
                              f"{embeddings.dtype} {embeddings.shape}; re-create the package")
        return embeddings

    def add_file(self, name: str, src: Path) -> Path:
        """Move `src` into the package as `name` and record its hash (e.g. model.onnx)."""
        dst = self.path / name
        shutil.move(str(src), dst)
        self.update(files={**self.manifest["files"], name: sha256(dst)})
        return dst

    def update(self, **fields: Any) -> None:
        """Change manifest fields (metrics, thresholds, ...), written atomically.

        A registered package is sealed again: this is the tools' way to change it
        (`edge eval --calibrate`, `--record`), unlike an edit by hand.
        """
        manifest = {**self.manifest, **fields}
        _check_manifest(self.path / MANIFEST, manifest)
        with atomic_write(self.path / MANIFEST, fsync=False) as fh:
            json.dump(manifest, fh, indent=2)
        self.manifest = self._stored = manifest  # written upgraded
        if self.registered:
            self.seal()


def upgrade_manifest(where: Path, manifest: Any) -> Any:
    """`manifest` as this code's SCHEMA_VERSION lays it out (a new dict; the argument is left as it
    was). EngineError for a manifest from a newer glass-edge; anything else not a JSON object is
    returned for `_check_manifest` to refuse."""
    if not isinstance(manifest, dict):
        return manifest
    version = manifest.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise EngineError(f"{where}: schema_version {str(version)[:40]!r} is not a whole number; "
                          "restore the manifest or re-create the package")
    if version > SCHEMA_VERSION:
        raise EngineError(f"{where}: schema_version {version} is newer than this glass-edge reads "
                          f"(up to {SCHEMA_VERSION}); install the glass-edge that made the model")
    manifest = dict(manifest)
    while version < SCHEMA_VERSION:
        manifest = _UPGRADES[version](manifest)
        version = manifest["schema_version"]
    return manifest


def _from_unversioned(manifest: dict[str, Any]) -> dict[str, Any]:
    """Version 1 is the layout manifests had before they carried a version: it only says so."""
    return {"schema_version": 1, **{key: value for key, value in manifest.items() if key != "schema_version"}}


# schema_version -> the pure function that takes a manifest of that version one step on.
_UPGRADES = {0: _from_unversioned}


def _check_manifest(where: Path, manifest: Any) -> None:
    """EngineError naming the first manifest field a line could not trust."""
    if not isinstance(manifest, dict):
        raise EngineError(f"{where}: not a JSON object")
    for key in ("version", "arch", "vocabulary", "files"):
        if key not in manifest:
            raise EngineError(f"{where}: missing '{key}'")
    try:
        check_version_name(manifest["version"])
    except EngineError as exc:
        raise EngineError(f"{where}: {exc}") from None
    vocabulary = manifest["vocabulary"]
    if not isinstance(vocabulary, list) or not all(isinstance(name, str) for name in vocabulary):
        raise EngineError(f"{where}: 'vocabulary' must be a list of class names")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise EngineError(f"{where}: 'files' must map file names to sha256")
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise EngineError(f"{where}: 'files' does not list {', '.join(missing)}: their sha256 must be "
                          "recorded, or nothing would be checked; re-create or re-register the package")
    for name, digest in files.items():
        if "/" in name or "\\" in name or name in ("", ".", "..") or name.startswith("."):
            raise EngineError(f"{where}: file {name!r}: a package lists files of its own folder only")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise EngineError(f"{where}: file {name!r}: {str(digest)[:80]!r} is not a sha256 hex digest")
    thresholds = manifest.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise EngineError(f"{where}: 'thresholds' must map class names to scores in (0, 1]")
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and 0 < value <= 1):
            raise EngineError(f"{where}: thresholds.{name} = {value!r}: must be a score in (0, 1] "
                              "(above 1 no defect of that class is ever rejected)")
