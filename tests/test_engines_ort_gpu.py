"""`runtime: onnxruntime-gpu`: provider selection, and a one-line error (exit 2) without a GPU.

The selection is checked against this machine's real onnxruntime: a CPU build here, so
the error path is what runs; the GPU path runs where onnxruntime-gpu and a GPU are.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edge.cli import main
from engines.config import EngineConfig
from engines.errors import EngineError
from engines.runtimes import load_engine
from engines.runtimes.onnxruntime import GPU_PROVIDERS, default_providers, require_gpu_build, require_gpu_session
from engines_support import IMGSZ, make_package, views

GPU_BUILD = any(name in ort.get_available_providers() for name in GPU_PROVIDERS)


def test_providers_prefer_tensorrt_then_cuda_then_cpu(tmp_path: Path) -> None:
    config = EngineConfig(precision="fp16")
    names = lambda providers: [p if isinstance(p, str) else p[0] for p in providers]  # noqa: E731
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = default_providers(config, tmp_path, 640, 6, everything)
    assert names(chosen) == everything
    assert chosen[0][1]["trt_fp16_enable"] and chosen[0][1]["trt_profile_max_shapes"] == "images:6x3x640x640"
    assert names(default_providers(config, tmp_path, 640, 6, ["CUDAExecutionProvider", "CPUExecutionProvider"])) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert default_providers(config, tmp_path, 640, 6, ort.get_available_providers())[-1] == "CPUExecutionProvider"


def test_a_cpu_build_or_a_cpu_fallback_is_refused_with_the_fix() -> None:
    with pytest.raises(EngineError, match=r"no CUDA or TensorRT execution provider .*'glass-edge\[gpu-ort\]'"):
        require_gpu_build(["AzureExecutionProvider", "CPUExecutionProvider"], "1.32.0")
    require_gpu_build(["CUDAExecutionProvider", "CPUExecutionProvider"], "1.32.0")
    with pytest.raises(EngineError, match="no usable NVIDIA GPU and fell back to CPUExecutionProvider"):
        require_gpu_session(["CPUExecutionProvider"])
    require_gpu_session(["CUDAExecutionProvider", "CPUExecutionProvider"])


@pytest.mark.skipif(GPU_BUILD, reason="onnxruntime-gpu is installed; see the GPU test below")
def test_onnxruntime_gpu_runtime_without_a_gpu_build_is_an_engine_error(tmp_path: Path) -> None:
    package = make_package(tmp_path / "data" / "models" / "v1")
    config = EngineConfig(runtime="onnxruntime-gpu", imgsz=IMGSZ)
    with pytest.raises(EngineError, match="runtime 'onnxruntime-gpu'") as error:
        load_engine(package, config, tmp_path / "data" / "cache")
    assert "\n" not in str(error.value)


@pytest.mark.skipif(GPU_BUILD, reason="onnxruntime-gpu is installed; see the GPU test below")
def test_edge_detect_on_onnxruntime_gpu_exits_2_with_one_line(tmp_path: Path) -> None:
    import cv2

    package = make_package(tmp_path / "models" / "v1")
    image = tmp_path / "view.png"
    cv2.imwrite(str(image), views([(320, 240)])[0])
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):  # no config.yaml: defaults, ./data
        result = runner.invoke(main, ["detect", str(image), "--model", str(package.path), "--runtime",
                                      "onnxruntime-gpu", "--imgsz", str(IMGSZ)])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1].startswith("error: runtime 'onnxruntime-gpu': the installed onnxruntime")


@pytest.mark.skipif(not GPU_BUILD, reason="onnxruntime is a CPU build (onnxruntime-gpu not installed)")
def test_onnxruntime_gpu_runs_on_a_gpu_provider_or_refuses(tmp_path: Path) -> None:
    package = make_package(tmp_path / "data" / "models" / "v1")
    config = EngineConfig(runtime="onnxruntime-gpu", imgsz=IMGSZ, precision="fp32")
    try:
        engine = load_engine(package, config, tmp_path / "data" / "cache")
    except EngineError as exc:  # a GPU build on a machine without a usable GPU
        assert "no usable NVIDIA GPU" in str(exc)
        return
    with engine:
        assert engine.providers[0] in GPU_PROVIDERS and engine.device == "cuda"
        assert len(engine.infer(views([(820, 700)] * 6))) == 6
