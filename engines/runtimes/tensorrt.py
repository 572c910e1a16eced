"""TensorRT 10 with pycuda: the line PC's GPU runtime.

TensorRT 10 only: 11 removed the weak-typing builder flags (BuilderFlag.FP16, .INT8) and
the implicit INT8 calibrator that the build below relies on (NVIDIA, "Migrating from
TensorRT 10.x to 11.x"); with 11 installed, loading is a one-line EngineError naming the
fix (setup.py pins tensorrt<11; runtime onnxruntime-gpu is the other way to a GPU).

The engine is built from the exported ONNX file (FP16, or INT8 calibrated on captured
views), with one optimization profile for batch 1..6, and serialized next to the model.
A cached engine is only valid for the ONNX file, TensorRT version, GPU and precision it
was built for: each is recorded beside it (<engine>.json), with the engine's own sha256
(<engine>.sha256), and a mismatch rebuilds it with a log line saying what changed. IO is by tensor name (`set_tensor_address`,
`execute_async_v3`) from page-locked host buffers on one CUDA stream.

tensorrt and pycuda are imported only when this runtime is used; without them (or
without a GPU) loading raises EngineError naming what is missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.config import EngineConfig
from engines.engine import Engine
from engines.errors import EngineError
from engines.export import INPUT, OUTPUTS, check_vocabulary, read_metadata
from engines.package import digest_differs, record_digest, sha256
from engines.preprocess import letterbox_into
from storage.files import atomic_write

log = logging.getLogger(__name__)

WORKSPACE = 4 << 30
TENSORRT_MAJOR = 10  # the API this file is written for
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def import_gpu_stack():
    """tensorrt and pycuda.driver, initialised, or EngineError saying which is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError(f"runtime 'tensorrt' needs the tensorrt package ({exc}); install "
                          "glass-edge[gpu] on a PC with an NVIDIA GPU, or use runtime: onnxruntime") from None
    check_tensorrt_version(trt.__version__)
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            raise EngineError("runtime 'tensorrt': no CUDA GPU found; use runtime: onnxruntime")
    except ImportError as exc:
        raise EngineError(f"runtime 'tensorrt' needs pycuda ({exc}); pip install pycuda") from None
    except cuda.Error as exc:  # no driver, no device
        raise EngineError(f"runtime 'tensorrt': CUDA is not usable here ({exc})") from None
    return trt, cuda


def check_tensorrt_version(version: str) -> None:
    """EngineError unless `version` is a TensorRT 10: 11 has no FP16/INT8 flags nor calibrator."""
    if tensorrt_major(version) != TENSORRT_MAJOR:
        raise EngineError(f"runtime 'tensorrt' needs TensorRT {TENSORRT_MAJOR} (installed: {version}; TensorRT "
                          "11 removed the FP16/INT8 builder flags and INT8 calibrator it builds with); "
                          "pip install 'tensorrt>=10,<11', or use runtime: onnxruntime-gpu")


def tensorrt_major(version: str) -> int:
    return int(version.split(".")[0])


def engine_name(onnx_path: Path, precision: str, tensorrt_version: str) -> str:
    """<onnx stem>-<precision>-trt<major>.engine: engines of two TensorRT majors never share a file."""
    return f"{onnx_path.stem}-{precision}-trt{tensorrt_major(tensorrt_version)}.engine"


def engine_key(onnx_path: Path, *, tensorrt_version: str, gpu: str, compute_capability: str,
               precision: str, imgsz: int, max_batch: int) -> dict[str, Any]:
    """What a serialized engine is only valid for; stored beside it as <engine>.json."""
    return {"onnx_sha256": sha256(onnx_path), "tensorrt": tensorrt_version, "gpu": gpu,
            "compute_capability": compute_capability, "precision": precision,
            "imgsz": imgsz, "max_batch": max_batch}


def why_rebuild(cached: dict[str, Any] | None, wanted: dict[str, Any]) -> str | None:
    """None when the cached engine fits; otherwise what differs, for the log line."""
    if cached is None:
        return "no cached engine"
    changed = [f"{key} {cached.get(key)!r} -> {value!r}" for key, value in wanted.items()
               if cached.get(key) != value]
    return ", ".join(changed) or None


def cached_engine(engine_path: Path, wanted: dict[str, Any], build: Callable[[], bytes],
                  deserialize: Callable[[bytes], Any]) -> Any:
    """Load the engine at `engine_path` if its key matches `wanted`, else build and store it.

    A cached file that will not deserialize (damaged, or from a TensorRT that recorded
    the same version string) is rebuilt once; a fresh build that will not deserialize
    is an error, never a crash or a retry loop.
    """
    meta_path = engine_path.with_name(engine_path.name + ".json")
    try:
        cached = json.loads(meta_path.read_text()) if engine_path.is_file() else None
    except (OSError, json.JSONDecodeError):
        cached = {}
    reason = why_rebuild(cached, wanted) or digest_differs(engine_path)
    if reason is None:
        engine = deserialize(engine_path.read_bytes())
        if engine is not None:
            log.info("TensorRT engine %s: cached, fits (%s, %s)", engine_path, wanted["gpu"], wanted["precision"])
            return engine
        reason = "cached engine does not deserialize (damaged file)"
    log.warning("building TensorRT engine %s: %s", engine_path, reason)
    blob = build()
    engine = deserialize(blob)
    if engine is None:
        raise EngineError(f"{engine_path}: TensorRT built an engine it cannot deserialize")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(engine_path, "wb", fsync=False) as fh:
        fh.write(blob)
    record_digest(engine_path)
    meta_path.write_text(json.dumps(wanted, indent=2))
    return engine


def calibration_views(folder: Path) -> list[Path]:
    """Captured views for INT8 calibration: a captured batch (views/) or any image folder."""
    root = folder / "views" if (folder / "views").is_dir() else folder
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise EngineError(f"{folder}: no views (.png/.jpg) to calibrate INT8 with; capture a batch "
                          "with `edge capture export` or use precision fp16")
    return files


def _calibrator(trt, cuda, files: list[Path], cache_file: Path, imgsz: int, batch: int):
    """An entropy calibrator that feeds letterboxed captured views, cached to `cache_file`."""

    class ViewCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.files, self.index = files, 0
            self.host = cuda.pagelocked_zeros((batch, 3, imgsz, imgsz), np.float32)
            self.device = cuda.mem_alloc(self.host.nbytes)

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names):
            while self.index < len(self.files):
                chunk = self.files[self.index:self.index + batch]
                self.index += batch
                images = [img for img in (cv2.imread(str(f), cv2.IMREAD_COLOR) for f in chunk) if img is not None]
                if images:
                    letterbox_into(images, self.host)
                    cuda.memcpy_htod(self.device, self.host)
                    return [int(self.device)]
            return None

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            cache_file.write_bytes(bytes(cache))

    return ViewCalibrator()


def build_engine(trt, cuda, onnx_path: Path, *, precision: str, imgsz: int, max_batch: int,
                 calibration: Path | None = None, calibration_cache: Path | None = None) -> bytes:
    """Parse the ONNX file and build a serialized engine with a batch 1..max_batch profile."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
    profile = builder.create_optimization_profile()
    shape = lambda n: (n, 3, imgsz, imgsz)  # noqa: E731
    profile.set_shape(INPUT, shape(1 if network.get_input(0).shape[0] == -1 else max_batch),
                      shape(max_batch), shape(max_batch))
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):  # deprecated in later 10.x
            log.warning("this GPU has no fast FP16; building %s anyway", precision)
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        cache = calibration_cache or onnx_path.with_suffix(".int8.cache")
        if calibration is None and not cache.is_file():
            raise EngineError("precision int8 needs captured views to calibrate on (--calibration BATCH) "
                              f"or a calibration cache ({cache})")
        files = calibration_views(calibration) if calibration is not None else []
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, cuda, files, cache, imgsz, max_batch)
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    return bytes(serialized)


class TensorRTEngine(Engine):
    def __init__(self, onnx_path: Path, *, vocabulary: tuple[str, ...], config: EngineConfig,
                 thresholds: np.ndarray, cache_dir: Path, calibration: Path | None = None,
                 max_batch: int = 6) -> None:
        trt, cuda = import_gpu_stack()
        self._cuda = cuda
        metadata = read_metadata(onnx_path)
        check_vocabulary(onnx_path, metadata, vocabulary)
        imgsz = int(metadata.get("imgsz", config.imgsz))
        if metadata.get("batch", "dynamic") != "dynamic":
            max_batch = int(metadata["batch"])
        super().__init__(vocabulary=vocabulary, version=metadata.get("version", "unknown"), imgsz=imgsz,
                         thresholds=thresholds, iou=config.iou, max_det=config.max_det, max_batch=max_batch)
        self.dynamic = metadata.get("batch", "dynamic") == "dynamic"
        device = cuda.Device(0)
        self._context = device.retain_primary_context()
        self._context.push()
        try:
            major, minor = device.compute_capability()
            wanted = engine_key(onnx_path, tensorrt_version=trt.__version__, gpu=device.name(),
                                compute_capability=f"{major}.{minor}", precision=config.precision,
                                imgsz=imgsz, max_batch=max_batch)
            engine_path = cache_dir / engine_name(onnx_path, config.precision, trt.__version__)
            self._logger = trt.Logger(trt.Logger.WARNING)
            runtime = trt.Runtime(self._logger)
            self.engine = cached_engine(
                engine_path, wanted,
                build=lambda: build_engine(trt, cuda, onnx_path, precision=config.precision, imgsz=imgsz,
                                           max_batch=max_batch, calibration=calibration,
                                           calibration_cache=cache_dir / f"{onnx_path.stem}.int8.cache"),
                deserialize=runtime.deserialize_cuda_engine)
            self.execution = self.engine.create_execution_context()
            self.stream = cuda.Stream()
            self._host: dict[str, np.ndarray] = {}
            self._device: dict[str, Any] = {}
            for i in range(self.engine.num_io_tensors):
                name = self.engine.get_tensor_name(i)
                dims = tuple(max_batch if d == -1 else d for d in self.engine.get_tensor_shape(name))
                self._host[name] = cuda.pagelocked_zeros(dims, trt.nptype(self.engine.get_tensor_dtype(name)))
                self._device[name] = cuda.mem_alloc(self._host[name].nbytes)
                self.execution.set_tensor_address(name, int(self._device[name]))
            if self._host[INPUT].dtype != np.float32:
                raise EngineError(f"{engine_path}: input '{INPUT}' is {self._host[INPUT].dtype}, expected float32")
            for n in sorted({1, max_batch}):  # warm-up: first runs pay for lazy CUDA initialisation
                self._run(n)
            log.info("TensorRT %s on %s (sm %d.%d): %s, %s, batch 1..%d", trt.__version__, device.name(),
                     major, minor, engine_path, config.precision, max_batch)
        finally:
            cuda.Context.pop()

    def _input(self, n: int) -> np.ndarray:
        return self._host[INPUT][:n if self.dynamic else self.max_batch]

    def _run(self, n: int) -> None:
        cuda = self._cuda
        if self.dynamic:
            self.execution.set_input_shape(INPUT, (n, 3, self.imgsz, self.imgsz))
        cuda.memcpy_htod_async(self._device[INPUT], self._host[INPUT][:n], self.stream)
        if not self.execution.execute_async_v3(self.stream.handle):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        for name in OUTPUTS:
            cuda.memcpy_dtoh_async(self._host[name][:n], self._device[name], self.stream)
        self.stream.synchronize()

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(batch)
        self._context.push()
        try:
            self._run(n)
        finally:
            self._cuda.Context.pop()
        return (self._host[OUTPUTS[0]][:n].astype(np.float32, copy=False),
                self._host[OUTPUTS[1]][:n].astype(np.float32, copy=False))

    def close(self) -> None:
        if getattr(self, "_context", None) is None:
            return
        self._context.push()
        try:
            for buffer in self._device.values():
                buffer.free()
            self.execution = self.engine = None
        finally:
            self._cuda.Context.pop()
            self._context.detach()
            self._context = None
