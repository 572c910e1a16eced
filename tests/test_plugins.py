"""The plugin registries (storage/plugins.py): config unions name exactly the registered parts,
and a part whose package is missing says which package, never "unknown"."""

from __future__ import annotations

import sys
import typing

import pytest
from pydantic import TypeAdapter

from camera.base import CAMERAS
from camera.config import CameraConfig, GateConfig
from camera.errors import CameraError
from camera.gates.base import GATES
from engines.config import EngineConfig
from engines.runtimes import RUNTIMES
from pipeline.config import RejectConfig
from pipeline.relay import OUTPUTS
from storage.plugins import Plugins


def union_names(annotated) -> set[str]:
    """The `driver` literals of a discriminated config union."""
    members = typing.get_args(typing.get_args(annotated)[0])
    return {name for member in members for name in typing.get_args(member.model_fields["driver"].annotation)}


@pytest.mark.parametrize("union, registry", [(CameraConfig, CAMERAS), (GateConfig, GATES), (RejectConfig, OUTPUTS)])
def test_each_config_union_names_exactly_the_registered_drivers(union, registry):
    assert union_names(union) == set(registry.names)


def test_the_runtime_setting_names_exactly_the_registered_runtimes():
    assert set(typing.get_args(EngineConfig.model_fields["runtime"].annotation)) == set(RUNTIMES.names)


def test_every_registered_class_loads_where_its_packages_are_installed():
    for registry in (CAMERAS, GATES, OUTPUTS):
        for name in registry:
            assert registry.load(name).__name__


def test_a_missing_package_is_named_not_called_an_unknown_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "serial", None)  # as if pyserial were not installed
    monkeypatch.delitem(sys.modules, "camera.gates.serial_lines", raising=False)
    monkeypatch.delitem(sys.modules, "camera.gates.serial_port", raising=False)
    config = TypeAdapter(GateConfig).validate_python({"driver": "serial_lines", "port": "loop://"})
    with pytest.raises(CameraError, match=r"gate driver 'serial_lines' needs the Python package 'serial'.*pyserial"):
        GATES.load(config.driver)


def test_an_unknown_name_lists_the_known_ones():
    plugins = Plugins("widget", {"a": "os:sep"}, ValueError)
    with pytest.raises(ValueError, match=r"unknown widget 'b'; known: a"):
        plugins.load("b")
