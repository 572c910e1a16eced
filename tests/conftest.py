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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL (skipped without EDGE_TEST_POSTGRES_URL)."""
    from storage_support import postgres_url

    return f"sqlite:///{tmp_path}/edge.db" if request.param == "sqlite" else postgres_url()


@pytest.fixture
def line(tmp_path, shipped_config_path) -> Path:
    """A config whose data folder holds 10 recorded containers, every view kept (a module may
    define its own `line`: the line its tests need)."""
    from storage_support import recorded_line

    return recorded_line(tmp_path, shipped_config_path)


@pytest.fixture
def decided_line(tmp_path, shipped_config_path) -> Path:
    """A config whose data folder holds 3 containers decided by the line at calibrated thresholds,
    every view kept: what the labelling tests export and import."""
    from labels_support import line_config, record

    path = line_config(tmp_path, shipped_config_path)
    record(path, [0.82, 0.07, 0.3])
    return path


@pytest.fixture
def one_thread():
    """One intra-op torch thread (the RTVP tests use it: `pytestmark`). On this shared 2-core
    machine two OpenMP threads wait for each other at every op while other processes hold the
    cores: a tiny training step went from 0.3 s to 19 s."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A folder holding one tiny real model package with its ONNX graph, for whole-line tests."""
    from line_support import ship_onnx, tiny_package

    root = tmp_path_factory.mktemp("model")
    ship_onnx(tiny_package(root / "tiny-1"))
    return root


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """An 8 MB tmpfs (disk_support.fill makes it full), unmounted afterwards."""
    from disk_support import mount_tmpfs, unmount

    disk = tmp_path / "disk"
    mount_tmpfs(disk, 8)
    yield disk
    unmount(disk)
