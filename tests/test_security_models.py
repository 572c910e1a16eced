"""Model integrity (issue 13): no tampered or unchecked model runs on the line.

Real packages in tmp_path, a real registry, the real CLI (click's runner), real ONNX
export and ONNX Runtime; TensorRT's cache logic with stand-in build and deserialize.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.config import load_config
from engines.config import EngineConfig
from engines.errors import EngineError
from engines.package import MANIFEST, TEXT, ModelModified, ModelPackage, sha256
from engines.runtimes import ensure_onnx, load_engine
from engines.runtimes.tensorrt import cached_engine
from engines.registry import DEFAULT_MODEL, SHIPPED, Registry
from engines_support import IMGSZ, VOCABULARY, make_package, stub_package, views


@pytest.fixture
def config(tmp_path, shipped_config_path) -> Path:
    """The shipped config with its data folder in tmp_path."""
    path = tmp_path / "config.yaml"
    path.write_text(shipped_config_path.read_text().replace("data_dir: data", f"data_dir: {tmp_path / 'data'}"))
    return path


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(map(str, args)))
    return result.exit_code, result.output


def edit_manifest(folder: Path, **fields) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(fields)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def test_a_manifest_that_lists_no_files_is_refused(tmp_path, config):
    source = stub_package(tmp_path / "src", "v1")
    edit_manifest(source, files={})  # today: every hash check skipped
    with pytest.raises(EngineError, match=r"'files' does not list weights.pt, text.npy"):
        ModelPackage.load(source)
    code, output = invoke("model", "register", source, "--config", config)
    assert code == 2 and output.count("\n") == 1 and "does not list weights.pt" in output


def test_a_registered_manifest_edited_by_hand_is_modified_and_refused_by_the_line(tmp_path, config):
    code, output = invoke("model", "register", stub_package(tmp_path / "src", "v1"), "--activate",
                          "--config", config)
    assert code == 0, output
    registered = tmp_path / "data" / "models" / "v1"
    edit_manifest(registered, thresholds={"oil": 0.9}, metrics={"ap": 0.99})  # within range: only the digest tells
    code, output = invoke("model", "list", "--config", config)
    assert code == 0 and "modified: manifest metrics, thresholds differ from registration" in output
    with pytest.raises(ModelModified, match=r"model v1: modified \(manifest metrics, thresholds differ"):
        Registry(load_config(config).data_dir).resolve("active")  # the line's model resolution
    code, output = invoke("model", "activate", "v1", "--config", config)
    assert code == 2 and output.count("\n") == 1 and "model v1: modified" in output


def test_tools_that_change_a_registered_manifest_record_its_digest_again(tmp_path):
    registry = Registry(tmp_path / "data")
    package = registry.register(stub_package(tmp_path / "src", "v1"))
    package.update(thresholds={"oil": 0.3})  # what `edge eval --calibrate` does
    assert registry.get("v1").thresholds == {"oil": 0.3}
    (package.path / "registered.json").unlink()
    with pytest.raises(ModelModified, match="no registration digest"):
        registry.get("v1")


@pytest.mark.parametrize("value", [99, 0, -1, "0.5"])
def test_manifest_thresholds_outside_0_1_are_refused(tmp_path, value):
    source = stub_package(tmp_path / "src", "v1")
    edit_manifest(source, thresholds={"oil": value})
    with pytest.raises(EngineError, match=r"thresholds.oil = .*: must be a score in \(0, 1\]"):
        ModelPackage.load(source)


@pytest.mark.parametrize("version", ["../escape", "/tmp/abs", "a/b", ".hidden", ""])
def test_register_with_an_unsafe_version_is_one_line(tmp_path, config, version):
    source = stub_package(tmp_path / "src", "v1")
    edit_manifest(source, version=version)
    code, output = invoke("model", "register", source, "--config", config)
    assert code == 2 and output.count("\n") == 1 and "not a usable name" in output, output
    assert not (tmp_path / "escape").exists() and not list((tmp_path / "data").glob("**/manifest.json"))
    code, output = invoke("model", "activate", "../src/v1", "--config", config)
    assert code == 2 and "not a usable name" in output


def test_a_file_name_outside_the_package_is_refused(tmp_path):
    source = stub_package(tmp_path / "src", "v1")
    manifest = json.loads((source / MANIFEST).read_text())
    edit_manifest(source, files={**manifest["files"], "../../etc/passwd": "0" * 64})
    with pytest.raises(EngineError, match="a package lists files of its own folder only"):
        ModelPackage.load(source)


def test_an_object_array_in_text_npy_is_one_line(tmp_path, config):
    source = stub_package(tmp_path / "src", "v1")
    np.save(source / TEXT, np.array([{"payload": 1}, None], dtype=object), allow_pickle=True)
    manifest = json.loads((source / MANIFEST).read_text())
    edit_manifest(source, files={**manifest["files"], TEXT: sha256(source / TEXT)})
    with pytest.raises(EngineError, match=r"text.npy: not a plain numeric array"):
        ModelPackage.load(source).embeddings()
    code, output = invoke("export", source, "--config", config)
    assert code == 2 and output.count("\n") == 1 and "text.npy: not a plain numeric array" in output, output


def test_the_shipped_package_registers_with_a_digest_and_loads(tmp_path):
    package = Registry(tmp_path / "data", shipped=SHIPPED / DEFAULT_MODEL).active()
    assert package.registered and package.version == DEFAULT_MODEL
    assert package.embeddings().shape == (len(package.vocabulary), package.arch["text_dim"])


# -- artifacts made from a package --------------------------------------------------------------

def zero_scores(path: Path) -> None:
    """Multiply the graph's scores by 0, keeping its metadata: it still 'fits' by metadata alone."""
    proto = onnx.load(str(path))
    producer = next(node for node in proto.graph.node if "scores" in node.output)
    producer.output[list(producer.output).index("scores")] = "scores_raw"
    zero = onnx.helper.make_tensor("zero", onnx.TensorProto.FLOAT, [], [0.0])
    proto.graph.node.extend([onnx.helper.make_node("Constant", [], ["zero_c"], value=zero),
                             onnx.helper.make_node("Mul", ["scores_raw", "zero_c"], ["scores"])])
    onnx.save(proto, str(path))


def test_a_cached_onnx_graph_that_differs_from_its_digest_is_exported_again(tmp_path):
    package = make_package(tmp_path / "data" / "models" / "v1")
    config, cache = EngineConfig(imgsz=IMGSZ), tmp_path / "data" / "cache"
    path = ensure_onnx(package, config, cache, vocabulary=VOCABULARY)
    zero_scores(path)
    tampered = sha256(path)
    assert ensure_onnx(package, config, cache, vocabulary=VOCABULARY) == path
    assert sha256(path) != tampered
    with load_engine(package, config, cache, vocabulary=VOCABULARY, score_floor=0.05) as engine:
        assert sum(len(d) for d in engine.infer(views([(820, 700)], seed=1))) > 0


def test_load_engine_refuses_a_registered_package_changed_since_registration(tmp_path):
    registry = Registry(tmp_path / "data")
    registry.register(make_package(tmp_path / "src" / "v1").path)
    edit_manifest(registry.root / "v1", thresholds={name: 0.99 for name in VOCABULARY})
    stale = ModelPackage.load(registry.root / "v1", verify=False)  # as `edge model list` reads it
    with pytest.raises(ModelModified, match="model v1: modified .*thresholds"):
        load_engine(stale, EngineConfig(imgsz=IMGSZ), tmp_path / "data" / "cache")


def test_a_cached_tensorrt_engine_that_differs_from_its_digest_is_rebuilt(tmp_path):
    built: list[bytes] = []

    def build() -> bytes:
        built.append(b"ENGINE%d" % len(built))
        return built[-1]

    def deserialize(blob: bytes):
        return blob if blob.startswith(b"ENGINE") else None

    path = tmp_path / "m-fp16.engine"
    key = {"onnx_sha256": "0" * 64, "tensorrt": "10.3.0", "gpu": "NVIDIA H200", "precision": "fp16"}
    assert cached_engine(path, key, build, deserialize) == b"ENGINE0"
    assert cached_engine(path, key, build, deserialize) == b"ENGINE0"  # cached, digest matches
    path.write_bytes(b"ENGINE-with-a-swapped-body")  # same key, would deserialize: only the digest tells
    assert cached_engine(path, key, build, deserialize) == b"ENGINE1"
    assert len(built) == 2
