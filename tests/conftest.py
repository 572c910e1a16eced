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
