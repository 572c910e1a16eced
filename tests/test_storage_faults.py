"""Storage under the faults of issue 12: re-sent containers, a failed commit, a full disk.

The decision stage re-sends every container the writer has not acknowledged (through
`Recorder(on_commit=...)`), so the Recorder must write each container once whatever the
retries; and a full disk must cost images first, never records, and never stop the writer.
The full-disk tests run on a real 8 MB tmpfs (conftest's small_disk; they skip without root).
"""

from __future__ import annotations

import logging
import shutil

import pytest
from sqlalchemy import func, select, text

from storage import synthetic
from storage.config import StorageConfig
from storage.db import NOT_KEPT, STORED, Container, Detection, Event, View, make_engine, open_database, upgrade
from storage.errors import StorageError
from storage.records import ContainerRecord
from storage.writer import Recorder
from disk_support import fill
from storage_support import IMAGES, assert_consistent, record_all


class Acks:
    """What on_commit reported, one list of sequence numbers per commit."""

    def __init__(self) -> None:
        self.commits: list[list[int]] = []

    def __call__(self, records: list[ContainerRecord]) -> None:
        self.commits.append([r.seq for r in records])

    @property
    def seqs(self) -> list[int]:
        return [seq for commit in self.commits for seq in commit]


def resent(seq: int) -> ContainerRecord:
    """Container `seq` as the decision stage's journal gives it back: through JSON."""
    return ContainerRecord.from_dict(synthetic.container(seq).to_dict())


def rows(db) -> dict[int, tuple[int, int, int]]:
    """Per sequence number: container rows, view rows, detection rows."""
    with db.session() as s:
        found = s.execute(select(Container.seq, func.count(func.distinct(Container.id)),
                                 func.count(func.distinct(View.id)), func.count(Detection.id))
                          .join(View, View.container_id == Container.id, isouter=True)
                          .join(Detection, Detection.view_id == View.id, isouter=True)
                          .group_by(Container.seq)).all()
    return {seq: (c, v, d) for seq, c, v, d in found}


def events(db) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Event.kind).order_by(Event.id)))


# -- idempotent writes ---------------------------------------------------------------------

def test_a_container_recorded_twice_is_one_row_with_one_set_of_views(database_url, tmp_path):
    acks = Acks()
    config = StorageConfig(keep_images="all", batch_size=50)
    with Recorder(database_url, tmp_path, config, on_commit=acks) as rec:
        rec.record(synthetic.container(1), synthetic.images(1, IMAGES))
        rec.record(resent(1), synthetic.images(1, IMAGES))  # twice in the same batch
        rec.record(synthetic.container(2), synthetic.images(2, IMAGES))
        assert rec.flush() == 2
        rec.record(resent(1), synthetic.images(1, IMAGES))  # again after its commit (a writer restart)
        assert rec.flush() == 0
        assert rec.counters["duplicates"] == 2 and rec.counters["images"] == 12
    assert acks.commits == [[1, 1, 2], [1]], "every record reported, in order, duplicates included"
    db = open_database(database_url)
    assert rows(db) == {1: (1, 6, 18), 2: (1, 6, 18)}
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == 12
    assert_consistent(db, tmp_path)
    db.close()


def test_a_restarted_writer_skips_what_its_predecessor_stored(database_url, tmp_path):
    config = StorageConfig(keep_images="rejects")
    with Recorder(database_url, tmp_path, config) as rec:
        record_all(rec, range(5))
    acks = Acks()
    with Recorder(database_url, tmp_path, config, on_commit=acks) as rec:  # the journal re-sends 3-4
        for seq in range(3, 8):
            rec.record(resent(seq), synthetic.images(seq, IMAGES))
    assert acks.seqs == [3, 4, 5, 6, 7]
    db = open_database(database_url)
    assert rows(db) == {seq: (1, 6, 18) for seq in range(8)}
    assert_consistent(db, tmp_path)
    db.close()


def test_migration_keeps_the_first_of_duplicate_containers(database_url, caplog):
    engine = make_engine(database_url)
    upgrade(engine, "0003")
    with engine.begin() as conn:  # the same container three times, as re-sends could have left it
        for seq in (7, 7, 8, 7):
            cid = conn.execute(text("INSERT INTO containers (line_id, seq, t_gate, decision, n_views) "
                                    f"VALUES ('line-1', {seq}, '2026-01-01 00:00:00', 'pass', 1) "
                                    "RETURNING id")).scalar()
            vid = conn.execute(text("INSERT INTO views (container_id, view, camera_id, image_bytes, image_state, "
                                    f"labelled) VALUES ({cid}, 0, 'cam-0', 0, 'none', false) RETURNING id")).scalar()
            conn.execute(text("INSERT INTO detections (view_id, class_name, score, x1, y1, x2, y2) "
                              f"VALUES ({vid}, 'bubble', 0.5, 1, 2, 3, 4)"))
    engine.dispose()
    with caplog.at_level(logging.WARNING, logger="storage.migrations"):
        db = open_database(database_url)
    assert "deleted 2 later duplicate container rows" in caplog.text
    with db.session() as s:
        assert list(s.scalars(select(Container.id).order_by(Container.id))) == [1, 3], "the first is kept"
        assert s.scalar(select(func.count()).select_from(View)) == 2
        assert s.scalar(select(func.count()).select_from(Detection)) == 2
    db.close()


def test_a_data_folder_that_cannot_be_created_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create the data folder"):
        Recorder(f"sqlite:///{tmp_path}/edge.db", tmp_path / "file" / "data", StorageConfig())


# -- a real full disk ----------------------------------------------------------------------

def test_low_disk_stops_images_not_records_and_both_return(small_disk):
    acks = Acks()
    config = StorageConfig(keep_images="all", min_free_mb=3, batch_size=5)
    with Recorder(f"sqlite:///{small_disk}/edge.db", small_disk, config, on_commit=acks) as rec:
        record_all(rec, range(5))
        assert not rec.low_disk
        filler = fill(small_disk, leave_mb=2)
        record_all(rec, range(5, 10))
        assert rec.low_disk
        filler.unlink()
        record_all(rec, range(10, 15))
        assert not rec.low_disk
    assert acks.seqs == list(range(15))
    db = open_database(f"sqlite:///{small_disk}/edge.db")
    with db.session() as s:
        states = {seq: set(s.scalars(select(View.image_state).join(Container).where(Container.seq == seq)))
                  for seq in range(15)}
        detail = s.scalars(select(Event.detail).where(Event.kind == "disk low")).one()
    assert all(states[seq] == {STORED} for seq in (*range(5), *range(10, 15)))
    assert all(states[seq] == {NOT_KEPT} for seq in range(5, 10)), "records, without their images"
    assert events(db) == ["disk low", "disk ok"]
    assert detail == "2 MB free, limit 3 MB"
    assert_consistent(db, small_disk)
    db.close()


def test_full_disk_fails_the_commit_cleanly_and_resent_records_commit_once(small_disk):
    url = f"sqlite:///{small_disk}/edge.db"
    acks = Acks()
    config = StorageConfig(keep_images="rejects", min_free_mb=1, batch_size=5)
    rec = Recorder(url, small_disk, config, on_commit=acks)
    record_all(rec, range(5))
    with rec.db.engine.connect() as conn:  # as after an idle checkpoint: the next commit must grow the WAL
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    with rec.db.session() as s:  # a file gone since: the start-up check below has a row to write
        gone = s.scalars(select(View.image_file).where(View.image_state == STORED)).first()
    (small_disk / gone).unlink()
    filler = fill(small_disk)

    record_all(rec, range(5, 9))
    with pytest.raises(StorageError, match="database or disk is full"):
        rec.record(synthetic.container(9), synthetic.images(9, IMAGES))
    assert rec.low_disk and acks.seqs == list(range(5)), "a failed batch is not acknowledged"
    restarted = Recorder(url, small_disk, config)  # a writer (re)starting on the full disk
    assert restarted.repair_report.details[0].startswith("not done: database or disk is full")
    restarted.close()

    filler.unlink()
    for seq in range(5, 11):  # the caller re-sends what was not acknowledged, then goes on
        rec.record(resent(seq), synthetic.images(seq, IMAGES))
    rec.close()
    assert acks.seqs == list(range(11))
    db = open_database(url)
    assert rows(db) == {seq: (1, 6, 18) for seq in range(11)}, "each exactly once, none partial"
    assert events(db) == ["disk low", "disk ok"]
    with Recorder(url, small_disk, config) as again:  # with room again the start-up check is done
        assert again.repair_report.missing_files == 1
    assert_consistent(db, small_disk)
    db.close()




def test_a_batch_s_images_stop_at_the_limit_not_at_the_end_of_the_disk(small_disk):
    """A batch of 20 containers with every view kept is about 8 MB of JPEG, more than the
    space above the limit: the images that fit are stored, the rest are not, the rows commit."""
    config = StorageConfig(keep_images="all", min_free_mb=3, batch_size=20)
    with Recorder(f"sqlite:///{small_disk}/edge.db", small_disk, config) as rec:
        record_all(rec, range(20))
        assert rec.low_disk and 0 < rec.counters["images"] < 20 * 6
        assert shutil.disk_usage(small_disk).free > 2.5e6, "the database's reserve is left"
    db = open_database(f"sqlite:///{small_disk}/edge.db")
    assert rows(db) == {seq: (1, 6, 18) for seq in range(20)}
    assert events(db) == ["disk low"]
    assert_consistent(db, small_disk)
    db.close()
