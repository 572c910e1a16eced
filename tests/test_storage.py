"""Storage: schema upgrades, the Recorder, the quota and the start-up repair (SQLite and PostgreSQL)."""

from __future__ import annotations


import pytest
from sqlalchemy import func, select, text, update

from storage import synthetic
from storage.check import repair
from storage.config import StorageConfig
from storage.db import (LOST, PURGED, STORED, Base, Container, Event, View, current_revision, head_revision,
                        make_engine, open_database, table_names, upgrade)
from storage.images import ImageStore
from storage.records import ContainerRecord, EventRecord
from storage.stats import line_stats
from storage.writer import Recorder
from storage_support import IMAGES, assert_consistent, record_all, postgres_url

# -- schema --------------------------------------------------------------------------------

def test_upgrade_empty_database_reaches_head(database_url):
    db = open_database(database_url)
    assert current_revision(db.engine) == head_revision() == "0006"
    assert {"containers", "views", "detections", "model_versions", "labels", "events"} <= table_names(db.engine)
    db.close()


def test_upgrade_from_previous_revision_keeps_rows(database_url):
    engine = make_engine(database_url)
    upgrade(engine, "0001")
    assert "labels" not in table_names(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO containers (line_id, seq, t_gate, decision, n_views) "
                          "VALUES ('line-1', 41, '2026-01-01 00:00:00', 'reject', 1)"))
        cid = conn.execute(text("SELECT id FROM containers")).scalar()
        conn.execute(text("INSERT INTO views (container_id, view, camera_id, image_bytes, image_state) "
                          f"VALUES ({cid}, 0, 'cam-l0', 0, 'none')"))
    engine.dispose()
    db = open_database(database_url)  # what a line PC does at start-up with new software
    assert current_revision(db.engine) == head_revision()
    with db.session() as s:
        container = s.scalars(select(Container)).one()
        assert (container.seq, container.decision, container.views[0].labelled) == (41, "reject", False)
        assert container.t_gate.tzinfo is not None
    db.close()


def test_models_match_migrations(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = open_database(database_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    changes = [d for group in diff for d in (group if isinstance(group, list) else [group])]
    # Integer widths and server defaults differ by dialect; tables, columns and indexes must not.
    assert [d for d in changes if d[0] not in ("modify_type", "modify_default")] == []
    db.close()


def test_sqlite_runs_in_wal_with_busy_timeout(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/edge.db")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10000
    db.close()


def test_unreachable_database_is_a_user_error(tmp_path):
    from storage.errors import StorageError

    with pytest.raises(StorageError, match="cannot open"):
        open_database("postgresql+psycopg://edge:edge@127.0.0.1:1/none")
    with pytest.raises(StorageError, match="does not parse"):
        open_database("not a url")


# -- recorder ------------------------------------------------------------------------------

def test_recorder_round_trip(database_url, tmp_path):
    config = StorageConfig(keep_images="rejects", keep_pass_one_in=4, batch_size=7)
    with Recorder(database_url, tmp_path, config) as rec:
        for seq in range(1, 11):  # rejects: 5 and 10; sampled passes: 4 and 8
            c = synthetic.container(seq)
            c.views[2].missing = "timeout"
            images = synthetic.images(seq, IMAGES)
            del images[2]
            rec.record(c, images)
        rec.event(EventRecord(kind="frames dropped", camera_id="cam-2", count=3))
    db = open_database(database_url)
    with db.session() as s:
        containers = {c.seq: c for c in s.scalars(select(Container))}
        assert sorted(containers) == list(range(1, 11))
        kept = {seq for seq, c in containers.items() if any(v.image_state == STORED for v in c.views)}
        assert kept == {4, 5, 8, 10}
        c5 = containers[5]
        assert (c5.decision, c5.reason, c5.model_version.version) == ("reject", "defect", "v1")
        assert c5.t_gate == synthetic.container(5).t_gate
        assert [v.view for v in c5.views] == list(range(6))
        assert c5.views[2].missing == "timeout" and c5.views[2].image_state == "none"
        assert c5.views[0].image_file.startswith("images/2026/11/25/") and c5.views[0].image_file.endswith(".jpg")
        expected = synthetic.container(5).views[3].detections
        assert [[d.class_name, d.score, d.box] for d in c5.views[3].detections] == \
            [[d["class"], d["score"], d["box"]] for d in expected]
        assert s.scalars(select(Event)).one().count == 3
    assert_consistent(db, tmp_path)
    db.close()


def test_training_samples_are_png_whatever_the_policy(tmp_path):
    config = StorageConfig(keep_images="rejects", keep_pass_one_in=0, image_format="jpeg")
    with Recorder(f"sqlite:///{tmp_path}/edge.db", tmp_path, config) as rec:
        sample = synthetic.container(3, decision="pass")
        sample.training_sample = True
        rec.record(sample, synthetic.images(3, IMAGES))
        rec.record(synthetic.container(7, decision="pass"), synthetic.images(7, IMAGES))
    files = sorted(p.name for p in (tmp_path / "images").rglob("*.*"))
    assert len(files) == 6 and all(f.endswith("_000003_v%d.png" % i) for i, f in enumerate(files))


def test_records_survive_json(tmp_path):
    c = synthetic.container(9)
    assert ContainerRecord.from_dict(c.to_dict()) == c


# -- quota ---------------------------------------------------------------------------------

def test_quota_purges_oldest_unlabelled_keeps_labelled_and_never_stops(database_url, tmp_path):
    per_container = 6 * 80_000  # about, at JPEG 90
    config = StorageConfig(keep_images="all", quota_gb=8 * per_container / 1e9, batch_size=2)
    cache: dict = {}
    with Recorder(database_url, tmp_path, config) as rec:
        for seq in range(4):
            rec.record(synthetic.container(seq), synthetic.images(seq, cache))
        rec.flush()
        with rec.db.session.begin() as s:  # containers 0 and 1 were labelled by a person
            s.execute(update(View).where(View.container_id.in_(
                select(Container.id).where(Container.seq < 2))).values(labelled=True))
        for seq in range(4, 30):
            rec.record(synthetic.container(seq), synthetic.images(seq, cache))
        rec.flush()
        assert rec.counters["purged"] > 0
        with rec.db.session() as s:
            state = {(c.seq, v.view): v.image_state for c in s.scalars(select(Container)) for v in c.views}
            total = s.scalar(select(func.sum(View.image_bytes)).where(View.image_state == STORED))
        assert len(state) == 30 * 6, "every container is recorded"
        assert all(state[(seq, v)] == STORED for seq in (0, 1) for v in range(6)), "labelled images stay"
        assert all(state[(seq, v)] == PURGED for seq in (2, 3, 4) for v in range(6)), "oldest go first"
        assert all(state[(29, v)] == STORED for v in range(6)), "the newest stay"
        assert total <= config.quota_gb * 1e9
        # Labelled images alone over the quota: the writer still records every container.
        with rec.db.session.begin() as s:
            s.execute(update(View).values(labelled=True))
        for seq in range(30, 40):
            rec.record(synthetic.container(seq), synthetic.images(seq, cache))
        rec.flush()
        assert rec.counters["containers"] == 40
    db = open_database(database_url)
    assert_consistent(db, tmp_path)
    db.close()


# -- start-up repair -----------------------------------------------------------------------

def test_repair_fixes_what_a_crash_leaves(database_url, tmp_path):
    config = StorageConfig(keep_images="all")
    with Recorder(database_url, tmp_path, config) as rec:
        record_all(rec, range(3))
    db = open_database(database_url)
    store = ImageStore(tmp_path, config)
    day = tmp_path / "images/2026/11/25"
    (day / "line-1_080000_000099_v0.jpg").write_bytes(b"orphan: its row never committed")
    (day / ".line-1_080000_000099_v1.jpg.k3j9x.tmp").write_bytes(b"half a file")  # as atomic_write names it
    with db.session() as s:
        gone = s.scalars(select(View).where(View.image_state == STORED)).first()
    store.delete(gone.image_file)
    with db.session.begin() as s:  # a container whose views never all arrived
        s.add(Container(line_id="line-1", seq=99, t_gate=synthetic.T0, decision="pass", n_views=6,
                        views=[View(view=0, camera_id="cam-0", image_bytes=0, image_state="none")]))
    report = repair(db, store)
    assert (report.partial_containers, report.orphan_files, report.temporary_files, report.missing_files) == \
        (1, 1, 1, 1)
    with db.session() as s:
        assert s.get(View, gone.id).image_state == LOST
        assert s.scalar(select(func.count()).select_from(Container)) == 3
    assert_consistent(db, tmp_path)
    assert repair(db, store).clean
    db.close()


# -- stats ---------------------------------------------------------------------------------

def test_stats_yield_and_rejects_by_reason_class_camera_hour(database_url, tmp_path):
    config = StorageConfig(keep_images="none")
    with Recorder(database_url, tmp_path, config) as rec:
        for seq in range(10):
            c = synthetic.container(seq, decision="pass")
            for v in c.views:
                v.detections = []
            if seq in (3, 4):
                c.decision, c.reason = "reject", "defect"
                c.views[seq].detections = [{"class": "bubble", "score": 0.9, "box": [1, 2, 3, 4]},
                                           {"class": "oil", "score": 0.2, "box": [1, 2, 3, 4]}]
            if seq == 7:
                c.decision, c.reason = "reject", "missing view"
                c.views[1].missing = "timeout"
            rec.record(c, {})
    db = open_database(database_url)
    stats = line_stats(db, default_threshold=0.5)
    assert (stats.containers, stats.passed, stats.rejected) == (10, 7, 3)
    assert stats.yield_ == pytest.approx(0.7)
    assert stats.by_reason == {"defect": 2, "missing view": 1}
    assert stats.by_class == {"bubble": 2}
    assert stats.by_camera == {"cam-3": 1, "cam-4": 1}
    assert stats.missing_by_camera == {"cam-1": 1}
    assert stats.by_hour == {"2026-11-25 08:00": (10, 3)}
    assert line_stats(db, since=synthetic.container(5).t_gate).containers == 5
    db.close()


def test_lines_sharing_a_server_database_keep_to_their_own_images(tmp_path):
    url = postgres_url()
    config = StorageConfig(keep_images="all", quota_gb=3 * 6 * 80_000 / 1e9)
    with Recorder(url, tmp_path / "a", config, line_id="line-a") as rec:
        for seq in range(3):
            rec.record(synthetic.container(seq, line_id="line-a"), synthetic.images(seq, IMAGES))
    with Recorder(url, tmp_path / "b", config, line_id="line-b") as rec:  # its repair must not touch line-a
        assert rec.repair_report.clean
        for seq in range(10):
            rec.record(synthetic.container(seq, line_id="line-b"), synthetic.images(seq, IMAGES))
        rec.event(EventRecord(kind="camera lost", camera_id="cam-1"))
    db = open_database(url)
    with db.session() as s:
        states = {c.line_id: set() for c in s.scalars(select(Container))}
        for c in s.scalars(select(Container)):
            states[c.line_id] |= {v.image_state for v in c.views}
    assert states == {"line-a": {STORED}, "line-b": {STORED, PURGED}}, "line-b's quota purged only its own"
    assert line_stats(db, line_id="line-a").containers == 3
    assert line_stats(db, line_id="line-b").events == {"camera lost": 1}
    assert line_stats(db, line_id="line-a").events == {}
    db.close()
