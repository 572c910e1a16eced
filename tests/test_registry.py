"""The model registry: register, activate, rollback, remove, and refusing tampered packages."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engines.errors import EngineError
from engines.package import ModelPackage
from engines.registry import ACTIVE, Registry
from engines_support import stub_package


def test_register_activate_rollback(tmp_path):
    registry = Registry(tmp_path / "data", shipped=None)
    assert registry.versions() == [] and registry.active_version() is None
    with pytest.raises(EngineError, match="no active model"):
        registry.active()
    registry.register(stub_package(tmp_path / "src", "v1"))
    registry.register(stub_package(tmp_path / "src", "v2", parent="v1"))
    assert registry.versions() == ["v1", "v2"]
    registry.activate("v1")
    registry.activate("v2")
    assert registry.active().version == "v2"
    assert (tmp_path / "data" / "models" / ACTIVE).read_text().strip() == "v2"
    rows = {row["version"]: row for row in registry.list()}
    assert rows["v2"]["active"] and rows["v2"]["parent"] == "v1" and rows["v2"]["status"] == "ok"
    assert registry.rollback().version == "v1"
    assert registry.active_version() == "v1"
    with pytest.raises(EngineError, match="nothing to roll back"):
        registry.rollback()


def test_register_refuses_duplicates_and_unknown(tmp_path):
    registry = Registry(tmp_path / "data")
    registry.register(stub_package(tmp_path / "src", "v1"))
    with pytest.raises(EngineError, match="already registered"):
        registry.register(tmp_path / "src" / "v1")
    with pytest.raises(EngineError, match="not in the registry"):
        registry.activate("v9")


def test_tampered_package_is_refused(tmp_path):
    registry = Registry(tmp_path / "data")
    source = stub_package(tmp_path / "src", "v1")
    np.save(source / "text.npy", np.zeros((2, 4), np.float32))  # tampered before registering
    with pytest.raises(EngineError, match="sha256"):
        registry.register(source)
    registry.register(stub_package(tmp_path / "src2", "v2"))
    registered = tmp_path / "data" / "models" / "v2"
    (registered / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EngineError, match="corrupt or tampered"):
        registry.activate("v2")
    assert registry.active_version() is None  # ACTIVE never names a broken package
    assert registry.list()[0]["status"].startswith("modified")  # listed as what it is: changed since registration


def test_ensure_default_copies_shipped_model_once(tmp_path):
    shipped = stub_package(tmp_path / "repo_models", "shipped-v1")
    registry = Registry(tmp_path / "data", shipped=shipped)
    assert registry.ensure_default().version == "shipped-v1"
    assert registry.active_version() == "shipped-v1"
    assert registry.ensure_default() is None  # not empty any more: untouched
    manifest = json.loads((tmp_path / "data" / "models" / "shipped-v1" / "manifest.json").read_text())
    assert manifest["vocabulary"] == ["oil", "bubble"]


@pytest.mark.parametrize("version", ["rtvp-n-synth", "rtvp-tiny-synth"])
def test_shipped_models_are_intact_and_calibrated(version):
    """What `edge run` goes live with on a new line (rtvp-n-synth, the default) or a slow CPU
    switches to (rtvp-tiny-synth): hashes verify, every name has a threshold, test figures."""
    from engines.registry import SHIPPED

    package = ModelPackage.load(SHIPPED / version)  # verifies every file's sha256
    assert package.version == version
    assert set(package.thresholds) == set(package.manifest["vocabulary"])
    assert all(0 < t < 1 for t in package.thresholds.values())
    test = package.manifest["metrics"]["test"]  # figures on containers it never saw
    assert test["images"] > 0 and 0 <= test["ap50"] <= 1 and "escape_rate" in test["at_target"]


def test_ensure_default_without_shipped_model_says_so(tmp_path):
    with pytest.raises(EngineError, match="shipped model"):
        Registry(tmp_path / "data", shipped=tmp_path / "absent").ensure_default()


def test_model_cli_list_activate_rollback(tmp_path, shipped_config_path):
    from click.testing import CliRunner

    from edge.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(shipped_config_path.read_text().replace("data_dir: data", f"data_dir: {tmp_path / 'data'}"))
    runner = CliRunner()
    for version in ("v1", "v2"):
        result = runner.invoke(main, ["model", "register", str(stub_package(tmp_path / "src", version)),
                                      "--activate", "--config", str(config)])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["model", "list", "--config", str(config)])
    assert result.exit_code == 0 and "* v2" in result.output and "  v1" in result.output
    result = runner.invoke(main, ["model", "rollback", "--config", str(config)])
    assert result.exit_code == 0 and "active model: v1" in result.output
    result = runner.invoke(main, ["model", "activate", "nope", "--config", str(config)])
    assert result.exit_code == 2 and "not in the registry" in result.output
    (tmp_path / "data" / "models" / "v2" / "text.npy").write_bytes(b"tampered")
    result = runner.invoke(main, ["model", "activate", "v2", "--config", str(config)])
    assert result.exit_code == 2 and "corrupt or tampered" in result.output
    result = runner.invoke(main, ["model", "remove", "v1", "--config", str(config)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "live model" in result.output
    result = runner.invoke(main, ["model", "remove", "v2", "--config", str(config)])  # tampered: still removable
    assert result.exit_code == 0 and "removed v2; 1 versions left" in result.output, result.output


def test_remove_never_takes_the_live_version_or_the_rollback_target(tmp_path):
    registry = Registry(tmp_path / "data", shipped=None)
    for version in ("v1", "v2", "v3"):
        registry.register(stub_package(tmp_path / "src", version))
        registry.activate(version)
    graph = registry.root / "v1" / "cache" / "rtvp-640.onnx"  # what the runtimes export beside a version
    graph.parent.mkdir()
    graph.write_bytes(b"graph")
    with pytest.raises(EngineError, match="v3 is the live model"):
        registry.remove("v3")
    with pytest.raises(EngineError, match="v2 is what `edge model rollback` returns to"):
        registry.remove("v2")
    with pytest.raises(EngineError, match="not in the registry"):
        registry.remove("v9")
    registry.remove("v1")
    assert registry.versions() == ["v2", "v3"] and not (registry.root / "v1").exists()
    assert registry.history() == ["v2", "v3"]
    assert registry.rollback().version == "v2"
    with pytest.raises(EngineError, match="nothing to roll back"):  # never back to the removed v1
        registry.rollback()

    # A removal killed after its rename: the hidden folder is no version, and the next removal clears it.
    shutil.copytree(registry.root / "v2", registry.root / ".removing.v0")
    assert registry.versions() == ["v2", "v3"]
    registry.remove("v3")
    assert sorted(p.name for p in registry.root.iterdir()) == ["ACTIVE", "HISTORY.json", "v2"]
