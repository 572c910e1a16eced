"""The runtimes behind the Engine seam, one file each, and `load_engine` that picks one.

    load_engine(package, config, cache_dir) -> Engine
    open_engine(model, config, data_dir) -> Engine    (the model resolved by the registry)

ONNX Runtime (on the CPU, or `onnxruntime-gpu`: its CUDA / TensorRT execution providers)
and TensorRT run an exported ONNX file. A package that ships a
`model.onnx` for the asked vocabulary and input size uses it; otherwise the graph is
exported on first use. Exported files and TensorRT engines are written next to the
model (<package>/cache/) when the package folder is writable and inside the data folder,
else into `cache_dir/<version>/` (a read-only or shipped model outside the data folder is
never written to). <package>/cache/ is always looked in first, so a graph or engine made
ahead of time by `edge export` / `edge engine build` is found whatever cache_dir a
caller passes. File names carry the input size, a hash of the vocabulary and its
embeddings and the weights' hash, so a new vocabulary or new weights never reuse a
stale graph. A cached graph is used only while it matches the sha256 recorded beside it
at export (a graph edited in place, metadata and all, is exported again), and a
package's own model.onnx only when its manifest lists it (and so pins its hash).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from engines.config import EngineConfig
from engines.engine import Engine, class_thresholds
from engines.errors import EngineError
from engines.export import export_onnx, read_metadata, vocabulary_embeddings, vocabulary_hash
from engines.package import ONNX, WEIGHTS, ModelPackage, digest_differs
from storage.plugins import Plugins

log = logging.getLogger(__name__)

CACHE = "cache"  # the artifact folder inside a package

# runtime name (EngineConfig.runtime) -> "module:class"; modules import their SDK lazily.
RUNTIMES: Plugins[Engine] = Plugins("runtime", {
    "onnxruntime": "engines.runtimes.onnxruntime:OnnxRuntimeEngine",
    "onnxruntime-gpu": "engines.runtimes.onnxruntime:OnnxRuntimeGpuEngine",
    "tensorrt": "engines.runtimes.tensorrt:TensorRTEngine",
    "torch": "engines.runtimes.torch:TorchEngine",
}, EngineError, install="see docs/runtimes.md for what each runtime needs")
# Runtimes that refuse to run without an NVIDIA GPU (the systemd unit grants them /dev/nvidia*).
GPU_RUNTIMES = ("onnxruntime-gpu", "tensorrt")


def artifact_dir(package: ModelPackage, cache_dir: Path, data_dir: Path | None = None) -> Path:
    """Where this package's exported graphs and engines go (see the module docstring)."""
    data_dir = Path(data_dir or Path(cache_dir).parent).resolve()
    path = package.path.resolve()
    if path.is_relative_to(data_dir) and _writable(path / CACHE):
        return path / CACHE
    return Path(cache_dir) / package.version


def _writable(folder: Path) -> bool:
    """Try it: permission bits say nothing about read-only mounts, nor to root."""
    try:
        folder.mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def onnx_name(package: ModelPackage, vocabulary: Sequence[str], embeddings, imgsz: int,
              batch: int | None = None) -> str:
    """The exported file's name: input size, vocabulary hash, weights hash (and a fixed batch)."""
    weights = package.manifest["files"].get(WEIGHTS, "")[:8]
    fixed = f"-b{batch}" if batch else ""
    return f"rtvp-{imgsz}-{vocabulary_hash(vocabulary, embeddings)}-{weights}{fixed}.onnx"


def ensure_onnx(package: ModelPackage, config: EngineConfig, cache_dir: Path, *,
                vocabulary: Sequence[str] | None = None, data_dir: Path | None = None) -> Path:
    """An ONNX file of this package for `vocabulary` at config.imgsz: shipped, cached or exported now."""
    vocabulary, embeddings = vocabulary_embeddings(package, vocabulary)
    wanted = {"vocabulary": json.dumps(list(vocabulary)), "vocabulary_hash": vocabulary_hash(vocabulary, embeddings),
              "imgsz": str(config.imgsz), "batch": "dynamic"}
    shipped = package.path / ONNX
    if ONNX in package.manifest["files"] and _fits(shipped, wanted):  # its sha256 verified with the package
        return shipped
    name = onnx_name(package, vocabulary, embeddings, config.imgsz)
    target = artifact_dir(package, cache_dir, data_dir) / name
    # <package>/cache/ first, whoever's cache_dir this is: `edge export` may have put it there.
    for path in dict.fromkeys([package.path / CACHE / name, target]):
        if path.is_file():
            changed = digest_differs(path)
            if changed is None and _fits(path, wanted):
                return path
            log.warning("%s: %s; exporting again", path, changed or "does not fit (damaged or other vocabulary)")
    return export_onnx(package, target, vocabulary=vocabulary, imgsz=config.imgsz)


def _fits(path: Path, wanted: dict[str, str]) -> bool:
    try:
        metadata = read_metadata(path)
    except EngineError as exc:
        log.warning("%s", exc)
        return False
    return all(metadata.get(key) == value for key, value in wanted.items())


def open_engine(model: str | Path, config: EngineConfig, data_dir: Path, **options) -> Engine:
    """The engine for `model` ("active", a registered version or a package folder) as every
    command and the line's workers set it up: resolved by the registry in `data_dir`,
    artifacts cached in <data_dir>/cache; `options` as for `load_engine`."""
    from engines.registry import Registry

    data_dir = Path(data_dir)
    return load_engine(Registry(data_dir).resolve(model), config, data_dir / "cache", data_dir=data_dir, **options)


def load_engine(package: ModelPackage, config: EngineConfig, cache_dir: Path, *,
                vocabulary: Sequence[str] | None = None, score_floor: float | None = None,
                data_dir: Path | None = None, **options) -> Engine:
    """The engine config.runtime names, for `package` (its vocabulary unless one is given).

    cache_dir lies inside the data folder (by convention <data_dir>/cache); data_dir
    defaults to its parent. score_floor replaces the per-class thresholds (evaluation).
    `options` go to the runtime (providers=, device=, calibration=, max_batch=).
    """
    cls = RUNTIMES.load(config.runtime)
    package.verify()  # its files, and its registration digest where it has one: nothing changed since load
    vocabulary = tuple(vocabulary) if vocabulary else package.vocabulary
    thresholds = class_thresholds(vocabulary, config, package.thresholds, score_floor)
    if config.runtime == "torch":
        return cls(package, config=config, thresholds=thresholds, vocabulary=vocabulary, **options)
    onnx_path = ensure_onnx(package, config, cache_dir, vocabulary=vocabulary, data_dir=data_dir)
    # The engine goes beside its graph when that is the package's cache (written under the
    # data-folder rule), so `edge engine build` and the line find the same engine.
    engines_dir = onnx_path.parent if onnx_path.parent == package.path / CACHE else artifact_dir(
        package, cache_dir, data_dir)
    return cls(onnx_path, vocabulary=vocabulary, config=config, thresholds=thresholds,
               cache_dir=engines_dir, **options)
