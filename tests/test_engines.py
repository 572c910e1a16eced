"""Engine plumbing: letterbox, decode/NMS, export checks, runtimes' refusals, artifact places.

The model is a tiny RTVP package (engines_support.py); parity between the runtimes
is in test_engines_parity.py.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engines.config import EngineConfig
from engines.detections import Detections
from engines.engine import Engine, class_thresholds
from engines.errors import EngineError
from engines.export import check_deployable, read_metadata
from engines.package import ModelPackage
from engines.postprocess import decode
from engines.preprocess import PAD_VALUE, Letterbox, letterbox_into
from engines.runtimes import artifact_dir, ensure_onnx, load_engine
from engines.runtimes.onnxruntime import OnnxRuntimeEngine
from engines_support import IMGSZ, SUBSET, VOCABULARY, exported, make_package, views

CONFIG = EngineConfig(imgsz=IMGSZ, threads=1, default_threshold=0.3)


# -- letterbox ---------------------------------------------------------------------------

def test_letterbox_pads_grey_converts_to_rgb_and_maps_boxes_back() -> None:
    image = np.zeros((820, 700, 3), np.uint8)
    image[..., 0] = 255  # pure blue in BGR
    batch = np.zeros((1, 3, IMGSZ, IMGSZ), np.float32)
    (lb,) = letterbox_into([image], batch)
    assert lb.scale == pytest.approx(IMGSZ / 820) and lb.top == 0 and lb.left > 0
    middle = batch[0, :, IMGSZ // 2, IMGSZ // 2]
    np.testing.assert_allclose(middle, [0, 0, 1])  # RGB order: blue is the last channel
    np.testing.assert_allclose(batch[0, :, IMGSZ // 2, 0], PAD_VALUE / 255, rtol=1e-6)
    view_box = np.array([[100, 200, 300, 400]], np.float32)
    model_box = view_box * lb.scale + [lb.left, lb.top, lb.left, lb.top]
    np.testing.assert_allclose(lb.to_view(model_box.astype(np.float32)), view_box, atol=1e-3)


def test_boxes_are_clipped_to_the_view() -> None:
    lb = Letterbox(scale=0.5, left=10, top=0, width=100, height=80)
    out = lb.to_view(np.array([[0, -5, 200, 300]], np.float32))
    np.testing.assert_allclose(out, [[0, 0, 100, 80]])


# -- decode: thresholds and class-wise NMS ------------------------------------------------

def _decode(boxes, scores, thresholds, max_det=300):
    lb = Letterbox(1.0, 0, 0, 640, 640)
    return decode(np.asarray([boxes], np.float32), np.asarray([scores], np.float32), [lb],
                  np.asarray(thresholds, np.float32), ("oil", "bubble"), 0.7, max_det)[0]


def test_nms_suppresses_within_a_class_only() -> None:
    boxes = [[10, 10, 110, 110], [12, 12, 112, 112], [300, 300, 350, 350]]
    scores = [[0.9, 0.8], [0.85, 0.1], [0.1, 0.6]]
    det = _decode(boxes, scores, [0.5, 0.5])
    # oil: anchors 0 and 1 overlap, 1 suppressed; bubble: anchor 0 (0.8) and anchor 2 (0.6).
    assert sorted(zip(det.names(), [round(float(s), 2) for s in det.scores])) == [
        ("bubble", 0.6), ("bubble", 0.8), ("oil", 0.9)]
    assert list(det.scores) == sorted(det.scores, reverse=True)


def test_per_class_thresholds_and_max_det() -> None:
    boxes = [[10, 10, 110, 110], [300, 300, 350, 350]]
    scores = [[0.55, 0.0], [0.0, 0.45]]
    assert _decode(boxes, scores, [0.6, 0.4]).names() == ["bubble"]
    assert _decode(boxes, scores, [0.5, 0.5]).names() == ["oil"]
    assert len(_decode(boxes, scores, [0.1, 0.1], max_det=1)) == 1
    assert len(_decode(boxes, [[np.nan, 0.0], [0.0, 0.0]], [0.1, 0.1])) == 0


def test_thresholds_come_from_config_then_package_then_default() -> None:
    config = EngineConfig(default_threshold=0.5, thresholds={"oil": 0.2, "ghost": 0.1})
    got = class_thresholds(("oil", "bubble", "black spot"), config, {"bubble": 0.7, "oil": 0.9})
    np.testing.assert_allclose(got, [0.2, 0.7, 0.5])
    np.testing.assert_allclose(class_thresholds(("oil",), config, None, score_floor=0.001), [0.001])


# -- export --------------------------------------------------------------------------------

def test_export_passes_checker_and_records_vocabulary(tmp_path) -> None:
    package = make_package(tmp_path / "data" / "models" / "v1")
    path = exported(package, SUBSET)  # written by export_onnx when the session began
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    meta = read_metadata(path)
    assert json.loads(meta["vocabulary"]) == ["bubble", "oil"]
    assert meta["version"] == "v1" and meta["imgsz"] == str(IMGSZ) and meta["batch"] == "dynamic"
    scores = [o for o in proto.graph.output if o.name == "scores"][0]
    assert scores.type.tensor_type.shape.dim[2].dim_value == 2
    assert not list(path.parent.glob(".*tmp")), "temporary file left behind"
    assert {n.op_type for n in proto.graph.node}.isdisjoint({"NonZero", "ScatterND", "Einsum"})


def _graph(nodes, inputs, outputs, inits=()):
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                             opset_imports=[helper.make_opsetid("", 17)])


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_deployable_check_refuses_nonzero_and_data_dependent_shapes() -> None:
    images = _vi("images", ["batch", 3, 64, 64])
    outs = [_vi("boxes", ["batch", 10, 4]), _vi("scores", ["batch", 10, 2])]
    nonzero = _graph([helper.make_node("NonZero", ["images"], ["nz"])], [images], outs)
    with pytest.raises(EngineError, match="NonZero"):
        check_deployable(nonzero, 2, 64)
    # Reshape whose target shape is computed from pixel values: data-dependent.
    data_shape = _graph([helper.make_node("ReduceMax", ["images"], ["m"], keepdims=0),
                         helper.make_node("Cast", ["m"], ["s"], to=TensorProto.INT64),
                         helper.make_node("Reshape", ["images", "s"], ["r"])], [images], outs)
    with pytest.raises(EngineError, match="data-dependent"):
        check_deployable(data_shape, 2, 64)
    # The same Reshape fed by Shape() is fine: it depends on the shape, not on the pixels.
    shape_only = _graph([helper.make_node("Shape", ["images"], ["s"]),
                         helper.make_node("Reshape", ["images", "s"], ["r"])], [images], outs)
    check_deployable(shape_only, 2, 64)
    with pytest.raises(EngineError, match="scores has shape"):
        check_deployable(shape_only, 5, 64)


# -- runtimes refuse what they must not run -------------------------------------------------

def test_onnx_for_another_vocabulary_is_refused(tmp_path) -> None:
    path = exported(make_package(tmp_path / "data" / "models" / "v1"), SUBSET)
    thresholds = np.full(len(VOCABULARY), 0.5, np.float32)
    with pytest.raises(EngineError, match="exported for vocabulary"):
        OnnxRuntimeEngine(path, vocabulary=VOCABULARY, config=CONFIG, thresholds=thresholds,
                          cache_dir=tmp_path)
    engine = OnnxRuntimeEngine(path, vocabulary=("bubble", "oil"), config=CONFIG,
                               thresholds=np.array([0.5, 0.5], np.float32), cache_dir=tmp_path)
    assert engine.vocabulary == ("bubble", "oil") and engine.version == "v1"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_onnx_is_a_clear_error(tmp_path, damage) -> None:
    path = tmp_path / "m.onnx"
    shutil.copy(exported(make_package(tmp_path / "data" / "models" / "v1")), path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x08\x07garbage" * 100,
                      "empty": b""}[damage])
    with pytest.raises(EngineError):
        OnnxRuntimeEngine(path, vocabulary=VOCABULARY, config=CONFIG,
                          thresholds=np.full(len(VOCABULARY), 0.5, np.float32), cache_dir=tmp_path)


def test_optimized_graph_is_saved_once_reused_and_remade_when_damaged(tmp_path) -> None:
    path = exported(make_package(tmp_path / "data" / "models" / "v1"))
    cache = tmp_path / "engines"
    thresholds = np.full(len(VOCABULARY), 0.3, np.float32)
    image = views([(300, 200)])

    def detections():
        with OnnxRuntimeEngine(path, vocabulary=VOCABULARY, config=CONFIG, thresholds=thresholds,
                               cache_dir=cache) as engine:
            assert engine.version == "v1"  # metadata survives the saved graph
            return engine.infer(image)[0]

    first = detections()
    (saved,) = cache.glob("*.opt.onnx")
    made = saved.stat().st_mtime_ns
    second = detections()  # loaded from the saved graph, not optimized again
    assert saved.stat().st_mtime_ns == made and not list(cache.glob(".*.tmp"))
    assert len(first) and first.names() == second.names()
    np.testing.assert_allclose(first.scores, second.scores, rtol=1e-5)
    saved.write_bytes(saved.read_bytes()[:1000])  # damaged: its digest differs, so made again
    third = detections()
    assert saved.stat().st_size > 1000 and third.names() == first.names()


def test_damaged_cached_export_is_exported_again(tmp_path, caplog) -> None:
    package = make_package(tmp_path / "data" / "models" / "v1")
    cache = tmp_path / "data" / "cache"
    path = ensure_onnx(package, CONFIG, cache)
    assert path.parent == package.path / "cache"
    path.write_bytes(path.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        again = ensure_onnx(package, CONFIG, cache)
    assert again == path and "exporting again" in caplog.text
    assert read_metadata(again)["version"] == "v1"


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_bad_input_is_refused(tmp_path, runtime) -> None:
    engine = load_engine(make_package(tmp_path / "data" / "models" / "v1"),
                         CONFIG.model_copy(update={"runtime": runtime}), tmp_path / "data" / "cache")
    good = views([(200, 150)])[0]
    for bad, message in [([], "non-empty"), ([good.astype(np.float32)], "dtype float32"),
                         ([good[..., 0]], "H x W x 3"), ([np.dstack([good, good[..., :1]])], "H x W x 3"),
                         ([good, np.zeros((0, 10, 3), np.uint8)], "view 1: empty"), ("image", "non-empty")]:
        with pytest.raises(EngineError, match=message):
            engine.infer(bad)
    result = engine.infer([good])
    assert len(result) == 1 and isinstance(result[0], Detections)


def test_unknown_runtime_is_a_clear_error(tmp_path) -> None:
    config = EngineConfig.model_construct(**{**CONFIG.model_dump(), "runtime": "openvino"})
    with pytest.raises(EngineError, match="unknown runtime 'openvino'"):
        load_engine(make_package(tmp_path / "data" / "models" / "v1"), config, tmp_path / "data" / "cache")


# -- where exported graphs and engines are written -------------------------------------------

def test_artifacts_go_next_to_a_writable_model_inside_the_data_folder(tmp_path) -> None:
    data = tmp_path / "data"
    inside = make_package(data / "models" / "v1")
    assert artifact_dir(inside, data / "cache") == inside.path.resolve() / "cache"
    outside = make_package(tmp_path / "shipped" / "v1")
    assert artifact_dir(outside, data / "cache", data_dir=tmp_path) == outside.path.resolve() / "cache"
    assert artifact_dir(outside, data / "cache") == data / "cache" / "v1"
    # Not writable (a file where the cache folder would go: chmod does not stop root).
    blocked = make_package(data / "models" / "v2", version="v2")
    shutil.rmtree(blocked.path / "cache")
    (blocked.path / "cache").write_text("")
    assert artifact_dir(blocked, data / "cache") == data / "cache" / "v2"


def test_a_new_vocabulary_gets_its_own_export(tmp_path) -> None:
    package = make_package(tmp_path / "data" / "models" / "v1")
    cache = tmp_path / "data" / "cache"
    full = ensure_onnx(package, CONFIG, cache)
    subset = ensure_onnx(package, CONFIG, cache, vocabulary=SUBSET)
    assert full != subset and full.parent == subset.parent == package.path / "cache"
    assert json.loads(read_metadata(subset)["vocabulary"]) == list(SUBSET)
    engine = load_engine(package, CONFIG, cache, vocabulary=SUBSET)
    assert engine.vocabulary == SUBSET
    found = engine.infer(views([(300, 200)]))[0]
    assert len(found) and set(found.names()) <= set(SUBSET)


def test_shipped_onnx_in_the_package_is_used_when_it_fits(tmp_path) -> None:
    package = make_package(tmp_path / "shipped" / "v1")
    shutil.copy(exported(package), tmp_path / "m.onnx")
    shutil.rmtree(package.path / "cache")
    package.add_file("model.onnx", tmp_path / "m.onnx")
    package = ModelPackage.load(package.path)
    cache = tmp_path / "data" / "cache"
    assert ensure_onnx(package, CONFIG, cache) == package.path / "model.onnx"
    other = CONFIG.model_copy(update={"imgsz": IMGSZ + 32})
    assert ensure_onnx(package, other, cache).parent == cache / "v1"


def test_a_graph_exported_into_the_package_is_found_from_any_cache_dir(tmp_path) -> None:
    package = make_package(tmp_path / "data" / "models" / "v1")
    made_ahead = exported(package)  # what `edge export` leaves in <package>/cache/
    # The pipeline's cache_dir is <data_dir>/cache/engines: its inferred data folder
    # does not contain the package, yet the graph made ahead of time is used.
    assert ensure_onnx(package, CONFIG, tmp_path / "data" / "cache" / "engines") == made_ahead
    assert not (tmp_path / "data" / "cache" / "engines").exists()


def test_nan_outputs_are_an_error_not_a_pass() -> None:
    class Broken(Engine):
        def _forward(self, batch):
            scores = np.zeros((len(batch), 10, 2), np.float32)
            scores[0, 3, 1] = np.nan
            return np.zeros((len(batch), 10, 4), np.float32), scores

    engine = Broken(vocabulary=("oil", "bubble"), version="v1", imgsz=64,
                    thresholds=np.array([0.5, 0.5], np.float32), iou=0.7)
    with pytest.raises(EngineError, match="NaN or infinite"):
        engine.infer(views([(64, 64)]))
