"""Model package: written atomically, verified by hash, tampering refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engines.errors import EngineError
from engines.package import ONNX, WEIGHTS, ModelPackage


def make_package(path):
    state = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    emb = np.eye(2, 4, dtype=np.float32)
    return ModelPackage.create(path, version="v1", state_dict=state, arch={"scale": "tiny"},
                               vocabulary=["oil", "bubble"], embeddings=emb, parent=None)


def test_round_trip(tmp_path) -> None:
    make_package(tmp_path / "v1")
    package = ModelPackage.load(tmp_path / "v1")
    assert package.version == "v1"
    assert package.vocabulary == ("oil", "bubble")
    assert torch.equal(package.state_dict()["layer.weight"], torch.arange(6.0).reshape(2, 3))
    assert package.embeddings().shape == (2, 4)
    assert not list(tmp_path.glob(".v1.*")), "temporary folder left behind"


def test_tampered_weights_are_refused(tmp_path) -> None:
    make_package(tmp_path / "v1")
    with open(tmp_path / "v1" / WEIGHTS, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(EngineError, match="sha256 differs"):
        ModelPackage.load(tmp_path / "v1")


def test_missing_file_and_bad_manifest(tmp_path) -> None:
    make_package(tmp_path / "v1")
    (tmp_path / "v1" / WEIGHTS).unlink()
    with pytest.raises(EngineError, match="missing"):
        ModelPackage.load(tmp_path / "v1")
    (tmp_path / "v1" / "manifest.json").write_text("{not json")
    with pytest.raises(EngineError, match="unreadable manifest"):
        ModelPackage.load(tmp_path / "v1")
    with pytest.raises(EngineError, match="not a model package"):
        ModelPackage.load(tmp_path / "elsewhere")


def test_existing_version_and_mismatched_vocabulary(tmp_path) -> None:
    make_package(tmp_path / "v1")
    with pytest.raises(EngineError, match="already exists"):
        make_package(tmp_path / "v1")
    with pytest.raises(EngineError, match="2 class names but 3"):
        ModelPackage.create(tmp_path / "v2", version="v2", state_dict={}, arch={},
                            vocabulary=["a", "b"], embeddings=np.zeros((3, 4)))


def test_added_file_is_hashed(tmp_path) -> None:
    package = make_package(tmp_path / "v1")
    onnx = tmp_path / "export.onnx"
    onnx.write_bytes(b"graph")
    package.add_file(ONNX, onnx)
    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    assert ONNX in manifest["files"]
    (tmp_path / "v1" / ONNX).write_bytes(b"other graph")
    with pytest.raises(EngineError, match="model.onnx: sha256 differs"):
        ModelPackage.load(tmp_path / "v1")
