"""ONNX Runtime: the CPU-only line PC's runtime (and CUDA / TensorRT providers where installed).

`runtime: onnxruntime-gpu` is the same engine for a GPU PC without the TensorRT Python
package: it insists on onnxruntime-gpu's TensorRT or CUDA execution provider and refuses
to start rather than fall back to the CPU, where a line would silently run 10x slower.

Input and outputs are bound once per batch size to arrays allocated for the largest
batch (IO binding), so a call allocates nothing: the letterbox writes straight into the
bound input and the graph writes straight into the bound outputs.

On the CPU provider alone, the graph ONNX Runtime optimizes (ORT_ENABLE_ALL) is saved in
the artifact folder the first time and loaded with optimizations off afterwards: a
session starts 4-10x faster (rtvp-n fp32 0.08 s instead of 0.40 s, INT8 0.12 s instead of
1.15 s; docs/performance.md), so a restarted worker is back sooner. Inference is the same graph.
The saved file's name carries the source graph's sha256, the onnxruntime version and the
CPU's instruction set (the optimized layout is specific to them), and it is used only
while it matches its own recorded sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.config import EngineConfig
from engines.engine import Engine
from engines.errors import EngineError
from engines.export import INPUT, OUTPUTS, check_vocabulary
from engines.package import digest_differs, record_digest, sha256

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def default_providers(config: EngineConfig, cache_dir: Path, imgsz: int, max_batch: int,
                      available: Sequence[str]) -> list:
    """TensorRT, then CUDA, then CPU: whichever of them this onnxruntime build has (`available`)."""
    providers: list = []
    if "TensorrtExecutionProvider" in available:
        shape = lambda n: f"{INPUT}:{n}x3x{imgsz}x{imgsz}"  # noqa: E731
        providers.append(("TensorrtExecutionProvider", {
            "trt_fp16_enable": config.precision == "fp16", "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir), "trt_profile_min_shapes": shape(1),
            "trt_profile_opt_shapes": shape(max_batch), "trt_profile_max_shapes": shape(max_batch)}))
    if "CUDAExecutionProvider" in available:
        providers.append("CUDAExecutionProvider")
    return providers + ["CPUExecutionProvider"]


def require_gpu_build(available: Sequence[str], version: str) -> None:
    """EngineError unless this onnxruntime is a GPU build (onnxruntime-gpu)."""
    if not any(name in available for name in GPU_PROVIDERS):
        raise EngineError(f"runtime 'onnxruntime-gpu': the installed onnxruntime {version} has no CUDA or "
                          f"TensorRT execution provider (only {', '.join(available)}); `pip uninstall "
                          "onnxruntime` then `pip install 'glass-edge[gpu-ort]'`, or use runtime: onnxruntime")


def require_gpu_session(used: Sequence[str]) -> None:
    """EngineError when ONNX Runtime fell back to the CPU although it is a GPU build."""
    if not any(name in used for name in GPU_PROVIDERS):
        raise EngineError("runtime 'onnxruntime-gpu': ONNX Runtime found no usable NVIDIA GPU and fell back "
                          f"to {', '.join(used)} (no GPU visible, or CUDA / cuDNN libraries missing: see its "
                          "log above, `nvidia-smi`); fix that or use runtime: onnxruntime")


def cpu_features() -> str:
    """A short tag of this CPU's instruction set: a saved optimized graph is only valid on it."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:8]


def session_options(ort, threads: int):
    """The engine's session options: `threads` intra-op threads, one op at a time, the graph
    optimized at load (ORT_ENABLE_ALL); bench/cpu_speed.py times sessions made with them."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def cpu_session(ort, onnx_path: Path, options, cache_dir: Path):
    """A CPU session of `onnx_path`, from its optimized graph saved in cache_dir (made there once)."""
    saved = Path(cache_dir) / (f"{onnx_path.stem}-{sha256(onnx_path)[:12]}-ort{ort.__version__}-"
                               f"{cpu_features()}.opt.onnx")
    if saved.is_file() and digest_differs(saved) is None:
        level, options.graph_optimization_level = (options.graph_optimization_level,
                                                   ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        try:
            return ort.InferenceSession(str(saved), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # damaged or from another build: make it again
            log.warning("%s: cannot load the saved optimized graph (%s); optimizing again", saved, exc)
            options.graph_optimization_level = level
    tmp = saved.with_name(f".{saved.name}.{os.getpid()}.tmp")
    try:
        saved.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch()  # a read-only cache fails here, not inside ONNX Runtime
        options.optimized_model_filepath = str(tmp)
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        tmp.replace(saved)
        record_digest(saved)
        return session
    except OSError as exc:  # a read-only cache: run without saving
        log.warning("%s: cannot save the optimized graph (%s)", saved, exc)
        options.optimized_model_filepath = ""
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    finally:
        tmp.unlink(missing_ok=True)


class OnnxRuntimeEngine(Engine):
    def __init__(self, onnx_path: Path, *, vocabulary: tuple[str, ...], config: EngineConfig,
                 thresholds: np.ndarray, cache_dir: Path, providers: list | None = None,
                 max_batch: int = 6) -> None:
        import onnxruntime as ort

        providers = providers or default_providers(config, cache_dir, config.imgsz, max_batch,
                                                   ort.get_available_providers())
        options = session_options(ort, config.threads)
        try:
            self.session = (cpu_session(ort, Path(onnx_path), options, cache_dir)
                            if providers == ["CPUExecutionProvider"] else
                            ort.InferenceSession(str(onnx_path), options, providers=providers))
        except Exception as exc:  # InvalidProtobuf, NoSuchFile, Fail: a missing or damaged file
            raise EngineError(f"{onnx_path}: ONNX Runtime cannot load it ({str(exc).strip()[:300]}); "
                              "re-export with `edge export`") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        check_vocabulary(onnx_path, metadata, vocabulary)
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [INPUT] or [o.name for o in self.session.get_outputs()] != list(OUTPUTS):
            raise EngineError(f"{onnx_path}: expected input '{INPUT}' and outputs {list(OUTPUTS)}; "
                              "not an `edge export` graph")
        batch_dim, _, imgsz, _ = inputs[0].shape
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        super().__init__(vocabulary=vocabulary, version=metadata.get("version", "unknown"), imgsz=imgsz,
                         thresholds=thresholds, iou=config.iou, max_det=config.max_det,
                         max_batch=self.fixed_batch or max_batch)
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        anchors = self.session.get_outputs()[0].shape[1]
        self._images = np.zeros((self.max_batch, 3, imgsz, imgsz), np.float32)
        self._outputs = (np.zeros((self.max_batch, anchors, 4), np.float32),
                         np.zeros((self.max_batch, anchors, len(vocabulary)), np.float32))
        self._bindings: dict[int, tuple] = {}
        log.info("ONNX Runtime %s: %s (%s), %d classes, input %dx%d, providers %s", ort.__version__,
                 onnx_path, self.version, len(vocabulary), imgsz, imgsz, ", ".join(self.providers))

    def _input(self, n: int) -> np.ndarray:
        return self._images[:self.fixed_batch or n]

    def _binding(self, n: int):
        """IO bound to the pre-allocated arrays for a batch of n, made once per n."""
        import onnxruntime as ort

        if n not in self._bindings:
            binding = self.session.io_binding()
            host = ort.OrtValue.ortvalue_from_numpy(self._images[:n])  # shares the memory
            device = host if self.device == "cpu" else ort.OrtValue.ortvalue_from_shape_and_type(
                (n, 3, self.imgsz, self.imgsz), np.float32, "cuda", 0)
            binding.bind_ortvalue_input(INPUT, device)
            for name, array in zip(OUTPUTS, self._outputs):
                binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array[:n]))
            self._bindings[n] = (binding, device)
        return self._bindings[n]

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(batch)
        binding, device = self._binding(n)
        if self.device != "cpu":
            device.update_inplace(self._images[:n])
        self.session.run_with_iobinding(binding)
        return self._outputs[0][:n], self._outputs[1][:n]

    def close(self) -> None:
        self._bindings.clear()
        self.session = None


class OnnxRuntimeGpuEngine(OnnxRuntimeEngine):
    """`runtime: onnxruntime-gpu`: OnnxRuntimeEngine that starts only on a GPU provider."""

    def __init__(self, onnx_path: Path, **kwargs) -> None:
        import onnxruntime as ort

        require_gpu_build(ort.get_available_providers(), ort.__version__)
        super().__init__(onnx_path, **kwargs)
        try:
            require_gpu_session(self.providers)
        except EngineError:
            self.close()
            raise
