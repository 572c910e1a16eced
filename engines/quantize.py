"""INT8 for ONNX Runtime on a CPU: static QDQ quantization, kept only when evaluation allows it.

ONNX Runtime's `quantize_static` in QDQ format: weights int8 per output channel with
7-bit range (`reduce_range`: on x86 CPUs without VNNI, ONNX Runtime's u8s8 kernels saturate
with full 8-bit weights; on this project's AVX2-only CI machine the tiny test model's int8
scores correlated 0.78 with fp32 without it, and passed the 0.8 bar with it),
activations uint8 with ranges (MinMax) calibrated on views of the line, letterboxed exactly
as the engines do (engines/preprocess.py). Convolutions only: they are half of rtvp-n's CPU
time, and quantizing the attention and text-matching MatMuls as well cost the shipped
model 0.259 AP50-95 on its test set (0.435 -> 0.176), convolutions alone 0.001
(docs/performance.md). The result is a new model package (parent: the
fp32 one) whose `model.onnx` is the INT8 graph: the registry, `edge model activate` and
`rollback` treat it as any model, and the runtimes run the package's own graph (see
engines/runtimes/__init__.py). Its manifest records `precision: int8`, the calibration
source and count, and COCO AP50-95 of fp32 and int8 on the same labelled views.

The gate: AP50-95 (COCO AP averaged over IoU 0.50:0.95, `metrics.ap`) may drop by at most
`max_ap_loss` (0.01 absolute, one AP point); otherwise the package is refused and removed,
unless `force`, which keeps it with `accepted: false` in its manifest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from engines.config import EngineConfig
from engines.errors import EngineError
from engines.export import INPUT
from engines.package import MANIFEST, ONNX, ModelPackage, check_version_name, sha256
from engines.preprocess import letterbox_into
from engines.runtimes.tensorrt import calibration_views
from storage.files import atomic_write

log = logging.getLogger(__name__)

MAX_AP_LOSS = 0.01  # COCO AP50-95, absolute: one AP point
CALIBRATION_VIEWS = 48
BATCH = 6
SUMMARY = ("ap", "ap50", "ap75", "aps", "images", "gt_boxes")
OPS = ["Conv"]  # what is quantized (see above)


class QuantizationRefused(EngineError):
    """INT8 lost more AP than allowed; the message gives both figures."""


def calibration_files(folder: Path, count: int = CALIBRATION_VIEWS) -> list[Path]:
    """`count` views spread evenly over a folder of views (a captured batch, a synth set's images/)."""
    if count < 1:
        raise EngineError(f"--views {count}: at least one view is needed to calibrate")
    folder = Path(folder)
    files = calibration_views(folder / "images" if (folder / "images").is_dir() else folder)
    picks = np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)
    return [files[i] for i in dict.fromkeys(picks.tolist())]


def letterboxed_batches(files: Sequence[Path], imgsz: int, batch: int = BATCH) -> Iterator[np.ndarray]:
    """(n, 3, imgsz, imgsz) float32 batches of the readable files, as the engines see them."""
    for start in range(0, len(files), batch):
        images = [image for image in (cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files[start:start + batch])
                  if image is not None]
        if images:
            out = np.empty((len(images), 3, imgsz, imgsz), np.float32)
            letterbox_into(images, out)
            yield out


@contextlib.contextmanager
def quantizer_advice_to_debug() -> Iterator[None]:
    """ONNX Runtime's quantizer warns through the root logger: advice to pre-process the graph
    (the AP gate measures the INT8 graph as it comes out) and a box bias that is not an
    initializer (that bias stays float). A line engineer cannot act on either, so they go to
    debug here, under this module's name; records of named loggers pass untouched."""
    root = logging.getLogger()

    def demote(record: logging.LogRecord) -> bool:
        log.debug("onnxruntime.quantization: %s", record.getMessage())
        return False

    root.addFilter(demote)
    try:
        yield
    finally:
        root.removeFilter(demote)


def quantize_graph(fp32: Path, out: Path, files: Sequence[Path], imgsz: int, version: str) -> Path:
    """Write the INT8 QDQ graph of `fp32` to `out`, calibrated on `files`: metadata kept, precision
    added, and `version` (the INT8 package's, so records name the model that decided)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = letterboxed_batches(files, imgsz)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(({INPUT: b} for b in self.batches), None)

    out = Path(out)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as scratch:
            raw = Path(scratch) / out.name  # the quantizer writes to a path, not a stream
            with quantizer_advice_to_debug():
                quantize_static(str(fp32), str(raw), Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                                reduce_range=True,
                                calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=OPS)
            proto = onnx.load(str(raw))
        metadata = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
        del proto.metadata_props[:]
        for key, value in {**metadata, "version": version, "precision": "int8",
                           "calibration_views": str(len(files))}.items():
            proto.metadata_props.add(key=key, value=value)
        with atomic_write(out, "wb", fsync=False) as fh:
            fh.write(proto.SerializeToString())
    except Exception as exc:  # the quantizer raises many types; name the graph and cause
        raise EngineError(f"{fp32}: INT8 quantization failed ({type(exc).__name__}: {exc})") from exc
    return out


def summary(metrics: dict) -> dict:
    """The figures a manifest keeps of an evaluation."""
    return {key: metrics.get(key) for key in SUMMARY}


def gate(fp32_ap: float, int8_ap: float, max_ap_loss: float) -> tuple[bool, str]:
    """(accepted, why): INT8 may lose at most max_ap_loss of COCO AP50-95."""
    lost = fp32_ap - int8_ap
    verdict = "within" if lost <= max_ap_loss else "more than"
    return lost <= max_ap_loss, (f"AP50-95 fp32 {fp32_ap:.4f}, int8 {int8_ap:.4f}: {lost:+.4f} lost, "
                                 f"{verdict} the {max_ap_loss:.4f} allowed")


def int8_package(source: ModelPackage, graph: Path, folder: Path, version: str, **info) -> ModelPackage:
    """A package at `folder`: `source`'s weights and text, `graph` as model.onnx, precision int8."""
    folder.mkdir()
    names = [name for name in source.manifest["files"] if name != ONNX]
    for name in names:
        shutil.copy2(source.path / name, folder / name)
    shutil.copy2(graph, folder / ONNX)
    manifest = {**{k: v for k, v in source.manifest.items() if k not in ("metrics", "files")},
                "version": check_version_name(version), "parent": source.version,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "precision": "int8",
                **info, "files": {name: sha256(folder / name) for name in (*names, ONNX)}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return ModelPackage.load(folder)


def quantize_package(source: ModelPackage, calibrate: Path, data: Path, config: EngineConfig, data_dir: Path, *,
                     version: str | None = None, views: int = CALIBRATION_VIEWS, max_ap_loss: float = MAX_AP_LOSS,
                     force: bool = False, progress: bool = False) -> ModelPackage:
    """Quantize `source` on `views` views of `calibrate`, then `register_int8` it (the AP gate on `data`)."""
    from engines.runtimes import ensure_onnx

    if source.manifest.get("precision") == "int8":
        raise EngineError(f"model {source.version} is INT8 already; quantize its parent "
                          f"{source.manifest.get('parent')} instead")
    config = config.model_copy(update={"runtime": "onnxruntime"})
    files = calibration_files(calibrate, views)
    version = version or f"{source.version}-int8"
    check_unregistered(data_dir, version)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    fp32 = ensure_onnx(source, config, Path(data_dir) / "cache", data_dir=Path(data_dir))
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=data_dir) as tmp:
        log.info("quantizing %s to INT8 on %d views of %s ...", source.version, len(files), calibrate)
        graph = quantize_graph(fp32, Path(tmp) / ONNX, files, config.imgsz, version)
        calibration = {"source": str(calibrate), "views": len(files), "method": "MinMax", "format": "QDQ",
                       "ops": OPS, "weights": "int8 per channel", "activations": "uint8"}
        return register_int8(source, graph, calibration, data, config, data_dir, max_ap_loss=max_ap_loss,
                             force=force, progress=progress)


def check_unregistered(data_dir: Path, version: str) -> None:
    """EngineError before any work when `version` is taken."""
    from engines.registry import Registry

    if (Registry(data_dir).root / check_version_name(version)).exists():
        raise EngineError(f"model version {version!r} is already registered; give another with --version")


def register_int8(source: ModelPackage, graph: Path, calibration: dict, data: Path, config: EngineConfig,
                  data_dir: Path, *, max_ap_loss: float = MAX_AP_LOSS, force: bool = False,
                  progress: bool = False) -> ModelPackage:
    """Evaluate `source` (fp32) and its INT8 `graph` on `data`; register the INT8 package if the gate allows.

    Returns the registered package; raises QuantizationRefused (nothing registered) when
    INT8 loses more than `max_ap_loss` AP50-95 and not `force`.
    """
    from engines.registry import Registry
    from engines.training.retrain import evaluate_package

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    version = read_version(graph)
    check_unregistered(data_dir, version)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=data_dir) as tmp:
        package = int8_package(source, graph, Path(tmp) / version, version,
                               quantization={"calibration": calibration})
        figures = {name: evaluate_package(pkg, data, config, data_dir, progress=progress)
                   for name, pkg in (("fp32", source), ("int8", package))}
        accepted, why = gate(figures["fp32"]["ap"], figures["int8"]["ap"], max_ap_loss)
        log.info("INT8 %s: %s", "accepted" if accepted else "refused", why)
        if not accepted and not force:
            raise QuantizationRefused(f"{source.version} INT8 refused: {why}; calibrate on more or other views "
                                      "(--views, --calibrate), or keep it anyway with --force")
        package.update(quantization={"calibration": calibration, "eval": {
            "data": str(data), "metric": "COCO AP50-95 (ap)", "imgsz": config.imgsz, "max_ap_loss": max_ap_loss,
            "accepted": accepted, "forced": not accepted, "verdict": why,
            **{name: summary(metrics) for name, metrics in figures.items()}}},
            metrics={"quantization": {**figures["int8"], "data": str(data), "runtime": "onnxruntime",
                                      "imgsz": config.imgsz}})
        return Registry(data_dir).register(package.path)


def read_version(graph: Path) -> str:
    """The version an INT8 graph was quantized for (its metadata), which names its package."""
    from engines.export import read_metadata

    metadata = read_metadata(graph)
    version = metadata.get("version")
    if metadata.get("precision") != "int8" or not version:
        raise EngineError(f"{graph}: not an INT8 graph of engines.quantize (no precision/version metadata)")
    return version
