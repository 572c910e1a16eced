"""TensorRT: the engine cache's key and rebuild rules here; the real runtime where a GPU is.

The cache logic is plain Python and is tested with real files; building and running
an engine needs tensorrt, pycuda and an NVIDIA GPU, and is skipped (with the reason)
where they are absent.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from engines.config import EngineConfig
from engines.errors import EngineError
from engines.runtimes import load_engine
from engines.runtimes.tensorrt import cached_engine, engine_key, engine_name, import_gpu_stack, why_rebuild
from engines_support import IMGSZ, make_package, views


@pytest.fixture
def key(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"graph")
    return engine_key(onnx, tensorrt_version="10.3.0", gpu="NVIDIA RTX A2000", compute_capability="8.6",
                      precision="fp16", imgsz=640, max_batch=6)


class Builds:
    """Counts builds; 'deserializes' any blob that starts with ENGINE."""

    def __init__(self) -> None:
        self.count = 0

    def build(self) -> bytes:
        self.count += 1
        return b"ENGINE%d" % self.count

    @staticmethod
    def deserialize(blob: bytes):
        return blob if blob.startswith(b"ENGINE") else None


def test_key_names_everything_an_engine_depends_on(key, tmp_path) -> None:
    assert set(key) == {"onnx_sha256", "tensorrt", "gpu", "compute_capability", "precision", "imgsz", "max_batch"}
    assert why_rebuild(dict(key), key) is None
    assert why_rebuild(None, key) == "no cached engine"
    other_gpu = {**key, "gpu": "NVIDIA T4", "compute_capability": "7.5"}
    assert why_rebuild(other_gpu, key) == ("gpu 'NVIDIA T4' -> 'NVIDIA RTX A2000', "
                                           "compute_capability '7.5' -> '8.6'")
    assert "tensorrt '10.0.1' -> '10.3.0'" in why_rebuild({**key, "tensorrt": "10.0.1"}, key)
    (tmp_path / "m.onnx").write_bytes(b"another graph")
    new = engine_key(tmp_path / "m.onnx", tensorrt_version="10.3.0", gpu="NVIDIA RTX A2000",
                     compute_capability="8.6", precision="fp16", imgsz=640, max_batch=6)
    assert why_rebuild(key, new).startswith("onnx_sha256")


def test_cache_is_built_once_then_reused(key, tmp_path) -> None:
    builds, path = Builds(), tmp_path / "cache" / "m-fp16.engine"
    assert cached_engine(path, key, builds.build, builds.deserialize) == b"ENGINE1"
    assert json.loads((tmp_path / "cache" / "m-fp16.engine.json").read_text()) == key
    assert cached_engine(path, key, builds.build, builds.deserialize) == b"ENGINE1"
    assert builds.count == 1


@pytest.mark.parametrize("change", [{"gpu": "NVIDIA T4"}, {"tensorrt": "10.0.1"}, {"precision": "int8"}])
def test_engine_from_another_gpu_or_tensorrt_is_rebuilt_with_a_reason(key, tmp_path, caplog, change) -> None:
    builds, path = Builds(), tmp_path / "m-fp16.engine"
    cached_engine(path, {**key, **change}, builds.build, builds.deserialize)
    with caplog.at_level(logging.WARNING):
        assert cached_engine(path, key, builds.build, builds.deserialize) == b"ENGINE2"
    field = next(iter(change))
    assert f"{field} {change[field]!r} -> {key[field]!r}" in caplog.text
    assert json.loads(path.with_name(path.name + ".json").read_text()) == key


def test_damaged_engine_or_metadata_is_rebuilt_never_loaded(key, tmp_path, caplog) -> None:
    builds, path = Builds(), tmp_path / "m-fp16.engine"
    cached_engine(path, key, builds.build, builds.deserialize)
    path.write_bytes(b"\x00garbage")  # same key, damaged body
    with caplog.at_level(logging.WARNING):
        assert cached_engine(path, key, builds.build, builds.deserialize) == b"ENGINE2"
    assert "differs from its recorded sha256" in caplog.text  # found before TensorRT is handed the file
    path.with_name(path.name + ".json").write_text("{truncated")
    assert cached_engine(path, key, builds.build, builds.deserialize) == b"ENGINE3"


def test_a_build_that_cannot_be_loaded_is_an_error(key, tmp_path) -> None:
    with pytest.raises(EngineError, match="cannot deserialize"):
        cached_engine(tmp_path / "m.engine", key, lambda: b"broken", Builds.deserialize)
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize("version", ["11.0.0", "11.4.1"])
def test_tensorrt_11_is_refused_at_load_naming_the_pin(monkeypatch, version) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
    with pytest.raises(EngineError, match=rf"needs TensorRT 10 \(installed: {version};.*'tensorrt>=10,<11'"):
        import_gpu_stack()


def test_tensorrt_10_passes_the_version_check(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    try:
        import_gpu_stack()  # pycuda and a GPU next: absent here, present on a GPU machine
    except EngineError as exc:
        assert "needs TensorRT 10" not in str(exc)
        assert "pycuda" in str(exc) or "CUDA" in str(exc)


def test_engine_file_names_the_tensorrt_major() -> None:
    assert engine_name(Path("rtvp-640-ab-cd.onnx"), "fp16", "10.3.0") == "rtvp-640-ab-cd-fp16-trt10.engine"
    assert engine_name(Path("m.onnx"), "fp16", "11.0.0") != engine_name(Path("m.onnx"), "fp16", "10.3.0")


def _gpu_stack_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (needs an NVIDIA GPU machine)"
    try:
        import_gpu_stack()
    except EngineError as exc:
        return str(exc)
    return None


def test_tensorrt_runtime_is_a_clear_error_without_the_gpu_stack(tmp_path) -> None:
    if _gpu_stack_reason() is None:
        pytest.skip("tensorrt and a GPU are present; see the test below")
    config = EngineConfig(runtime="tensorrt", imgsz=IMGSZ)
    with pytest.raises(EngineError, match="tensorrt|pycuda|CUDA|GPU"):
        load_engine(make_package(tmp_path / "data" / "models" / "v1"), config, tmp_path / "data" / "cache")


@pytest.mark.skipif(_gpu_stack_reason() is not None, reason=str(_gpu_stack_reason()))
def test_tensorrt_matches_onnxruntime_and_caches_its_engine(tmp_path) -> None:
    package = make_package(tmp_path / "data" / "models" / "v1")
    cache = tmp_path / "data" / "cache"
    config = EngineConfig(imgsz=IMGSZ, precision="fp32", default_threshold=0.3)
    reference = load_engine(package, config, cache)
    with load_engine(package, config.model_copy(update={"runtime": "tensorrt"}), cache) as engine:
        images = views([(820, 700)] * 6)
        for a, b in zip(reference.infer(images), engine.infer(images)):
            assert len(a) == len(b)
            np.testing.assert_allclose(a.scores, b.scores, atol=2e-3)
    assert list((package.path / "cache").glob("*.engine"))
