"""INT8 static quantization (engines/quantize.py, `edge quantize`) on a tiny RTVP package.

Real parts: the tiny package of engines_support.py, a rendered labelled synth set,
ONNX Runtime's quantizer and sessions, the registry in a temporary data folder. The
quantizer is slow-ish (seconds per run), so one INT8 graph serves the gate tests.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from camera.synth_dataset import SynthRecipe, write_dataset
from edge.cli import main
from engines.config import EngineConfig
from engines.errors import EngineError
from engines.package import ONNX
from engines.quantize import QuantizationRefused, calibration_files, letterboxed_batches, quantize_graph, \
    quantize_package, quantizer_advice_to_debug, register_int8
from engines.registry import Registry
from engines.runtimes import ensure_onnx, load_engine
from engines_support import IMGSZ, VOCABULARY, exported, make_package

CONFIG = EngineConfig(imgsz=IMGSZ, threads=1, default_threshold=0.5)
CALIBRATION = {"source": "synth", "views": 6}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Two rendered containers (12 labelled views): calibration and evaluation set alike."""
    out = tmp_path_factory.mktemp("synth") / "set"
    write_dataset(out, SynthRecipe(containers=2, seed=5, classes=VOCABULARY), progress=False)
    return out


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, synth):
    """(fp32 source package, its INT8 graph for version v1-int8)."""
    root = tmp_path_factory.mktemp("quantized")
    source = make_package(root / "src" / "v1")
    return source, quantize_graph(exported(source), root / "int8.onnx", calibration_files(synth, 6), IMGSZ,
                                  "v1-int8")


def _run(path, batch: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": batch})


def test_int8_graph_has_qdq_nodes_and_answers_like_fp32(quantized, synth) -> None:
    source, int8 = quantized
    fp32 = exported(source)
    proto = onnx.load(str(int8))
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["precision"] == "int8" and meta["calibration_views"] == "6" and meta["version"] == "v1-int8"
    assert json.loads(meta["vocabulary"]) == list(VOCABULARY)
    batch = next(letterboxed_batches(calibration_files(synth, 12)[-4:], IMGSZ))  # views it was not calibrated on
    (boxes32, scores32), (boxes8, scores8) = _run(fp32, batch), _run(int8, batch)
    assert scores32.std() > 0.1  # spread scores: something to compare
    # An untrained tiny model quantizes worse than a trained one; the AP gate is what decides.
    assert np.corrcoef(scores8.ravel(), scores32.ravel())[0, 1] > 0.8 and np.abs(scores8 - scores32).mean() < 0.15
    assert np.median(np.abs(boxes8 - boxes32)) < 0.04 * IMGSZ
    assert np.abs(scores8 - scores32).max() > 0  # it really is another graph


def test_accepted_int8_package_is_registered_with_its_figures_and_runs(quantized, synth, tmp_path) -> None:
    source, int8 = quantized
    data_dir = tmp_path / "data"
    package = register_int8(source, int8, CALIBRATION, synth, CONFIG, data_dir, max_ap_loss=1.0)
    manifest = package.manifest
    assert package.version == "v1-int8" and manifest["parent"] == "v1" and manifest["precision"] == "int8"
    assert manifest["quantization"]["calibration"] == CALIBRATION
    result = manifest["quantization"]["eval"]
    assert result["accepted"] and not result["forced"] and result["fp32"]["images"] == 12
    assert result["int8"]["ap"] == manifest["metrics"]["quantization"]["ap"]
    assert Registry(data_dir, shipped=None).get("v1-int8").path == data_dir / "models" / "v1-int8"
    assert ensure_onnx(package, CONFIG, data_dir / "cache", data_dir=data_dir) == package.path / ONNX
    views = [np.ascontiguousarray(b.transpose(1, 2, 0)[..., ::-1] * 255).astype(np.uint8)
             for b in next(letterboxed_batches(calibration_files(synth, 12)[:3], IMGSZ))]
    with load_engine(package, CONFIG, data_dir / "cache", data_dir=data_dir) as engine:
        assert engine.version == "v1-int8" and len(engine.infer(views)) == 3
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".quantize-")]
    with pytest.raises(EngineError, match="already registered"):
        register_int8(source, int8, CALIBRATION, synth, CONFIG, data_dir)
    with pytest.raises(EngineError, match="INT8 already; quantize its parent v1"):
        quantize_package(package, synth, synth, CONFIG, data_dir)


def test_gate_refuses_what_it_cannot_meet_and_force_keeps_it_marked(quantized, synth, tmp_path) -> None:
    source, int8 = quantized
    data_dir = tmp_path / "data"
    with pytest.raises(QuantizationRefused, match=r"AP50-95 fp32 .* lost, more than the -1.0000 allowed"):
        register_int8(source, int8, CALIBRATION, synth, CONFIG, data_dir, max_ap_loss=-1.0)
    assert Registry(data_dir, shipped=None).versions() == []
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".quantize-")]
    kept = register_int8(source, int8, CALIBRATION, synth, CONFIG, data_dir, max_ap_loss=-1.0, force=True)
    result = kept.manifest["quantization"]["eval"]
    assert not result["accepted"] and result["forced"] and "more than" in result["verdict"]


def test_cli_quantizes_and_refuses_in_one_line(synth, tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml: data folder ./data
    make_package(tmp_path / "data" / "models" / "v1")
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(main, ["quantize", "data/models/v1", "--calibrate", str(synth / "images"),
                                       "--data", str(synth), "--views", "2", "--imgsz", str(IMGSZ),
                                       "--max-ap-loss", "-1"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "v1 INT8 refused" in result.output and "--force" in result.output
    # ONNX Runtime's advice reached no one as a root warning (it did before quantizer_advice_to_debug)
    assert not [r for r in caplog.records if r.name == "root" and r.levelno >= logging.WARNING]


def test_quantizer_advice_goes_to_debug_and_named_warnings_pass(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="engines.quantize")  # an `edge` command set engines to INFO
    with quantizer_advice_to_debug():
        logging.warning("Please consider to run pre-processing before quantization")
        logging.getLogger("engines.export").warning("a real warning")
    logging.warning("after: the root logger is as it was")
    seen = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert seen == [("engines.quantize", "DEBUG",
                     "onnxruntime.quantization: Please consider to run pre-processing before quantization"),
                    ("engines.export", "WARNING", "a real warning"),
                    ("root", "WARNING", "after: the root logger is as it was")]


def test_calibration_needs_views(tmp_path) -> None:
    with pytest.raises(EngineError, match="no views"):
        calibration_files(tmp_path)
    with pytest.raises(EngineError, match="at least one view"):
        calibration_files(tmp_path, 0)
