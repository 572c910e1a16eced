"""Helpers for the storage tests (a module, not a test file): the PostgreSQL test server, a
consistency check of rows against image files, and a data folder with recorded containers.
The `database_url` and `line` fixtures (tests/conftest.py) are built on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, text

from storage import synthetic
from storage.config import StorageConfig
from storage.db import STORED, Container, View, make_engine
from storage.images import ImageStore

IMAGES: dict = {}  # rendered once per session: the tests are about storage, not drawing


def postgres_url() -> str:
    """A fresh, empty schema on the test server; skip where there is none."""
    url = os.environ.get("EDGE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("EDGE_TEST_POSTGRES_URL is not set: no PostgreSQL server to test against")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def assert_consistent(db, data_dir: Path) -> None:
    """No partial container, no orphan or temporary file, no stored row without its file."""
    store = ImageStore(data_dir, StorageConfig())
    with db.session() as s:
        for c in s.scalars(select(Container)):
            assert len(c.views) == c.n_views, f"container {c.seq} is partial"
        stored = set(s.scalars(select(View.image_file).where(View.image_state == STORED)))
    files = set(store.files())
    assert files == stored, f"orphans: {sorted(files - stored)[:3]}, missing: {sorted(stored - files)[:3]}"


def record_all(rec, seqs) -> None:
    """Hand the synthetic containers `seqs` to a Recorder (their views drawn once per session)."""
    for seq in seqs:
        rec.record(synthetic.container(seq), synthetic.images(seq, IMAGES))


def recorded_line(tmp_path: Path, shipped_config: Path) -> Path:
    """A config whose data folder holds 10 recorded containers, every view kept."""
    from edge.config import load_config
    from storage.writer import Recorder

    raw = yaml.safe_load(shipped_config.read_text())
    raw["storage"].update({"data_dir": str(tmp_path / "data"), "keep_images": "all"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path)
    with Recorder(config.database_url, config.data_dir, config.storage) as rec:
        record_all(rec, range(1, 11))
    return path
