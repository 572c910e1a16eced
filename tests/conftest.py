"""Shared fixtures: the shipped config, a temporary data folder, offline model loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing is downloaded at test time: the text encoder loads from site-packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def shipped_config_path() -> Path:
    return ROOT / "config.yaml"


@pytest.fixture
def pty_pair():
    """A pseudo-terminal: (master fd the test writes the device's side to, the port's name)."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A folder holding one tiny real model package with its ONNX graph, for whole-line tests."""
    from test_line_support import ship_onnx, tiny_package

    root = tmp_path_factory.mktemp("model")
    ship_onnx(tiny_package(root / "tiny-1"))
    return root
