"""Model package: written atomically, verified by hash, tampering refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engines.errors import EngineError
from engines.package import ONNX, SCHEMA_VERSION, WEIGHTS, ModelPackage, upgrade_manifest
from engines.registry import Registry


def make_package(path):
    state = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    emb = np.eye(2, 4, dtype=np.float32)
    return ModelPackage.create(path, version="v1", state_dict=state, arch={"scale": "tiny"},
                               vocabulary=["oil", "bubble"], embeddings=emb, parent=None)


def test_round_trip(tmp_path) -> None:
    make_package(tmp_path / "v1")
    package = ModelPackage.load(tmp_path / "v1")
    assert package.version == "v1" and package.manifest["schema_version"] == SCHEMA_VERSION
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


def write_manifest(folder, edit) -> dict:
    """Rewrite a package's manifest.json through `edit` (as an older or newer glass-edge wrote it)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def test_manifest_without_schema_version_loads_upgraded_and_stays_registered(tmp_path) -> None:
    make_package(tmp_path / "src" / "v1")
    old = write_manifest(tmp_path / "src" / "v1", lambda m: m.pop("schema_version"))
    upgraded = upgrade_manifest(tmp_path, old)
    assert upgraded == {"schema_version": SCHEMA_VERSION, **old} and "schema_version" not in old  # pure
    registry = Registry(tmp_path / "data", shipped=None)
    registry.register(tmp_path / "src" / "v1")  # sealed as the file is: no schema_version in it
    package = registry.get("v1")  # the registration digest still verifies
    assert package.manifest["schema_version"] == SCHEMA_VERSION and package.vocabulary == ("oil", "bubble")
    on_disk = json.loads((package.path / "manifest.json").read_text())
    assert "schema_version" not in on_disk  # upgraded in memory only
    package.update(thresholds={"oil": 0.5})  # a tool's change writes the current layout and seals it
    assert json.loads((package.path / "manifest.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert registry.get("v1").thresholds == {"oil": 0.5}


def test_manifest_from_a_newer_glass_edge_is_refused(tmp_path) -> None:
    make_package(tmp_path / "v1")
    write_manifest(tmp_path / "v1", lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(EngineError, match=f"schema_version {SCHEMA_VERSION + 1} is newer than this "
                                          f"glass-edge reads \\(up to {SCHEMA_VERSION}\\)"):
        ModelPackage.load(tmp_path / "v1")
    write_manifest(tmp_path / "v1", lambda m: m.update(schema_version="2"))
    with pytest.raises(EngineError, match="schema_version '2' is not a whole number"):
        ModelPackage.load(tmp_path / "v1")
