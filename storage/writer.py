"""The storage writer: what the pipeline's last stage calls for every decided container.

Containers are buffered and written one transaction per batch (storage.batch_size, or
whatever is pending after `flush_interval_s`), images first, rows after, so a crash
never leaves a row pointing at a half-written file. The disk quota is enforced after
each commit by purging the oldest unlabelled images; the writer itself never stops for
the quota. A failed image write costs that image, not the container's record.

Records come before images, and none may be lost: the caller re-sends every container
it has not seen acknowledged through `on_commit` (after a failed flush, after a restart),
so a container, identified by (line_id, seq, t_gate), is written once however often it
arrives. Below `storage.min_free_mb` of free disk, images stop and records go on.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from storage.check import RepairReport, line_scope, repair
from storage.config import StorageConfig
from storage.db import NOT_KEPT, PURGED, STORED, Container, Detection, Event, ModelVersion, View, open_database
from storage.errors import StorageError
from storage.images import ImageStore
from storage.records import ContainerRecord, EventRecord, utc_now

log = logging.getLogger(__name__)
COMMIT_ATTEMPTS = 3
RESYNC_EVERY = 100  # flushes between re-reading the stored bytes (others may add labelled PNGs)
LOW_WATER = 0.95  # purge down to this share of the quota, so that not every commit purges

T = TypeVar("T")
Pending = tuple[ContainerRecord, dict[int, np.ndarray]]
Key = tuple[str, int, datetime]  # what identifies a container: (line_id, seq, t_gate in UTC)


class Recorder:
    def __init__(self, database_url: str, data_dir: Path, config: StorageConfig,
                 flush_interval_s: float = 1.0, line_id: str | None = None,
                 on_commit: Callable[[list[ContainerRecord]], None] | None = None) -> None:
        """`line_id` (config line.id) tags events and, on a server database (several line PCs,
        each with its own image store), confines the start-up repair and the quota to this
        line's rows. A SQLite file belongs to one PC: there, all rows are this store's.

        `on_commit` receives, after each successful commit and in the order recorded, every
        container of the batch: those written and those found already stored. What it never
        receives the caller must re-send. Starting on a full disk works: only a bad database
        URL or a data folder that cannot be created stops the writer here."""
        self.config = config
        self.line_id = line_id
        self.on_commit = on_commit
        self.db = open_database(database_url)
        self._scope = line_id if self.db.engine.dialect.name != "sqlite" else None
        self.store = ImageStore(Path(data_dir), config)
        try:
            self.store.data_dir.mkdir(parents=True, exist_ok=True)  # the free-space check looks at it
        except OSError as exc:
            self.db.close()
            raise StorageError(f"{self.store.data_dir}: cannot create the data folder ({exc.strerror}); "
                               "check storage.data_dir in config.yaml") from None
        self.repair_report = self._start_up_check()
        self.flush_interval_s = flush_interval_s
        self.quota_bytes = int(config.quota_gb * 1e9)
        self.counters = {"containers": 0, "duplicates": 0, "images": 0, "image_errors": 0, "purged": 0,
                         "events": 0}
        self.low_disk = False  # free space under storage.min_free_mb: images are not being stored
        self._image_budget = 0  # bytes the batch being flushed may still write
        self._budget_lock = threading.Lock()
        self._pending: list[Pending] = []
        self._events: list[EventRecord] = []
        self._oldest_ns = 0
        self._flushes = 0
        self._versions: dict[str, int] = {}
        self._stored_bytes = self._count_stored_bytes()
        self._quota_warned = False
        self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="image-writer")

    def record(self, container: ContainerRecord, images: dict[int, np.ndarray]) -> None:
        """Queue one decided container with its views' pixels (missing views: absent from `images`)."""
        if not self._pending:
            self._oldest_ns = time.monotonic_ns()
        self._pending.append((container, images))
        if len(self._pending) >= self.config.batch_size:
            self.flush()
        else:
            self.flush_due()

    def flush_due(self) -> None:
        """Flush when the oldest pending container has waited flush_interval_s; call when idle
        too, so the last containers of a quiet line are not held back."""
        if self._pending and time.monotonic_ns() - self._oldest_ns >= self.flush_interval_s * 1e9:
            self.flush()

    def event(self, event: EventRecord) -> None:
        """Queue a line event (camera lost, frames dropped, late result); written with the next flush."""
        self._events.append(event)
        if len(self._events) >= self.config.batch_size:
            self.flush()

    def flush(self) -> int:
        """Write everything pending in one transaction; return the containers added (re-sent
        containers already stored are skipped, not counted).

        On StorageError nothing of the batch is in the database and on_commit is not called:
        its containers are dropped here, the caller re-sends them; its events wait for the
        next flush. The Recorder stays usable."""
        pending, events = self._pending, self._events
        if not pending and not events:
            return 0
        self._pending, self._events = [], []
        written: list[str] = []
        try:
            fresh = self._not_stored(pending) if pending else []
            planned, disk_error = [{} for _ in fresh], False  # views without a file: recorded as not kept
            if pending:
                self._image_budget = self._bytes_above_free_limit()
                if self._image_budget > 0:
                    planned, disk_error = self._store_images(fresh)
                    written = [rel for views in planned for rel, _ in views.values()]
                if change := self._disk_state(low=self._image_budget <= 0):
                    events.append(change)
            added = self._commit(fresh, planned, events)
        except BaseException:
            for relative in written:  # their rows never committed: no orphans left behind
                self.store.delete(relative)
            self._events = events + self._events
            raise
        self._stored_bytes += sum(size for i in added for _, size in planned[i].values())
        self.counters["containers"] += len(added)
        self.counters["duplicates"] += len(pending) - len(added)
        self.counters["images"] += sum(len(planned[i]) for i in added)
        self.counters["events"] += len(events)
        if self.on_commit and pending:
            self.on_commit([container for container, _ in pending])
        self._flushes += 1
        if self._flushes % RESYNC_EVERY == 0:
            self._stored_bytes = self._count_stored_bytes()
        if disk_error or self._stored_bytes > self.quota_bytes:
            try:
                self.enforce_quota()
            except OperationalError as exc:  # the batch is committed; purging waits for the next one
                log.warning("quota: cannot purge now (%s); trying again after the next commit", exc.orig)
        return len(added)

    def enforce_quota(self) -> int:
        """Purge the oldest unlabelled images until the store is under the low-water mark."""
        self._stored_bytes = self._count_stored_bytes()
        target = self.quota_bytes * LOW_WATER
        purged = 0
        while self._stored_bytes > target:
            with self.db.session.begin() as session:
                rows = session.execute(line_scope(
                    select(View.id, View.image_file, View.image_bytes)
                    .where(View.image_state == STORED, View.labelled.is_(False))
                    .order_by(View.id).limit(200), self._scope, join=True)).all()
                chosen, freed = [], 0
                for view_id, relative, size in rows:
                    if self._stored_bytes - freed <= target:
                        break
                    chosen.append((view_id, relative))
                    freed += size
                if chosen:
                    session.execute(update(View).where(View.id.in_([v for v, _ in chosen]))
                                    .values(image_state=PURGED, image_file=None, image_bytes=0))
            if not chosen:
                if not self._quota_warned:
                    log.warning("image store %.2f GB is over its quota of %.2f GB and holds only labelled "
                                "images: raise storage.quota_gb or export and remove labelled samples",
                                self._stored_bytes / 1e9, self.quota_bytes / 1e9)
                    self._quota_warned = True
                break
            for _, relative in chosen:  # after the commit: a crash here leaves orphans, which repair removes
                self.store.delete(relative)
            self._stored_bytes -= freed
            purged += len(chosen)
        self.counters["purged"] += purged
        if purged:
            log.info("quota: purged %d oldest unlabelled images", purged)
        return purged

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown()
            self.db.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _start_up_check(self) -> RepairReport:
        """Repair what a crash left. On a full disk its writes fail: the writer starts anyway,
        because records can commit again as soon as space returns."""
        try:
            return repair(self.db, self.store, self._scope)
        except OperationalError as exc:
            log.warning("start-up check not done, the database cannot be written (%s); starting without it",
                        exc.orig)
            return RepairReport(details=[f"not done: {exc.orig}"])

    def _not_stored(self, pending: list[Pending]) -> list[Pending]:
        """The containers of a batch without a row yet, each once: a re-sent container's images
        have the same file names as its stored ones, so they must not be written (or deleted) again."""
        stored = self._transaction(lambda session: _stored_keys(session, [c for c, _ in pending]))
        fresh = []
        for container, images in pending:
            key = _key(container)
            if key not in stored:
                stored.add(key)
                fresh.append((container, images))
        return fresh

    def _bytes_above_free_limit(self) -> int:
        """What a batch's images may take: images are secondary to records, so they never eat
        into the last storage.min_free_mb of the disk, which are the database's."""
        return shutil.disk_usage(self.store.data_dir).free - int(self.config.min_free_mb * 1e6)

    def _disk_state(self, low: bool) -> EventRecord | None:
        """Log and return an event when images stop for want of space, or start again."""
        if low == self.low_disk:
            return None
        self.low_disk = low
        free_mb = shutil.disk_usage(self.store.data_dir).free / 1e6
        detail = f"{free_mb:.0f} MB free, limit {self.config.min_free_mb:g} MB"
        if low:
            log.warning("disk low: %s; images are not stored, records go on", detail)
        else:
            log.info("disk ok: %s; images are stored again", detail)
        return EventRecord(kind="disk low" if low else "disk ok", line_id=self.line_id, detail=detail)

    def _store_images(self, pending: list[Pending]) -> tuple[list[dict[int, tuple[str, int]]], bool]:
        """Write the kept views' files of a batch; per container, view -> (relative path, bytes),
        and whether an image failed on a file-system error (a full disk: purge after the commit).

        Encoding and fsync release the GIL, so a few threads keep up with "keep every view"
        on a multi-core line PC; a failed image costs that image, never the record, and so does
        one over the free-space budget (that and every later one of the batch).
        """
        jobs = []
        for i, (container, images) in enumerate(pending):
            if not self.store.keeps(container):
                continue
            ext = self.store.extension(container)
            for view in container.views:
                pixels = images.get(view.view)
                if pixels is not None:
                    relative = self.store.relative_path(container.line_id, container.t_gate, container.seq,
                                                        view.view, ext)
                    jobs.append((i, container.seq, view.view, relative, pixels))
        planned: list[dict[int, tuple[str, int]]] = [{} for _ in pending]
        disk_error = False
        for (i, seq, view, relative, _), result in zip(jobs, self._pool.map(self._write_one, jobs)):
            if isinstance(result, Exception):
                self.counters["image_errors"] += 1
                log.error("container %d view %d: image not stored (%s); the record is kept", seq, view, result)
                disk_error = disk_error or isinstance(result, OSError)
            elif result is not None:
                planned[i][view] = (relative, result)
        return planned, disk_error

    def _write_one(self, job) -> int | Exception | None:
        """Encode, take the bytes from the batch's budget and write: the size, the error, or
        None when the budget is spent."""
        relative, pixels = job[3], job[4]
        try:
            data = self.store.encode(relative, pixels)
            with self._budget_lock:
                if len(data) > self._image_budget:
                    self._image_budget = 0
                    return None
                self._image_budget -= len(data)
            return self.store.put(relative, data)
        except (OSError, StorageError) as exc:
            return exc

    def _commit(self, fresh: list[Pending], planned: list[dict[int, tuple[str, int]]],
                events: list[EventRecord]) -> list[int]:
        """One transaction: the containers of `fresh` still not stored, and the events; return the
        indexes in `fresh` inserted. The check is repeated here because another writer of the same
        line (a restart overlapping its predecessor) may have stored one since; the unique index
        turns any remaining race into an IntegrityError, retried."""
        def write(session: Session) -> list[int]:
            stored = _stored_keys(session, [c for c, _ in fresh])
            added = [i for i, (c, _) in enumerate(fresh) if _key(c) not in stored]
            versions = self._version_ids(session, {fresh[i][0].model_version for i in added} - {None})
            _insert_containers(session, [fresh[i][0] for i in added], [planned[i] for i in added], versions)
            if events:
                session.execute(insert(Event), [
                    {"t": e.t, "line_id": e.line_id or self.line_id, "kind": e.kind,
                     "camera_id": e.camera_id, "container_seq": e.container_seq,
                     "count": e.count, "detail": e.detail} for e in events])
            return added

        return self._transaction(write)

    def _transaction(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction, retried: a busy server or a lost race passes on a retry;
        a full disk ("database or disk is full") ends in StorageError after the last attempt."""
        for attempt in itertools.count(1):
            try:
                with self.db.session.begin() as session:
                    return work(session)
            except (OperationalError, IntegrityError) as exc:
                self._versions.clear()  # a version row may not have committed
                if attempt == COMMIT_ATTEMPTS:
                    raise StorageError(f"cannot write to the database after {attempt} attempts: "
                                       f"{exc.orig}") from None
                log.warning("database write failed (%s); retrying", exc.orig)
                time.sleep(0.2 * attempt)

    def _version_ids(self, session, versions: set[str]) -> dict[str, int]:
        for version in versions - self._versions.keys():
            row = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
            if row is None:
                row = ModelVersion(version=version, first_seen=utc_now())
                session.add(row)
                session.flush()
            self._versions[version] = row.id
        return self._versions

    def _count_stored_bytes(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(line_scope(select(func.coalesce(func.sum(View.image_bytes), 0))
                                                 .where(View.image_state == STORED), self._scope, join=True)))


def _key(container: ContainerRecord) -> Key:
    t = container.t_gate
    return container.line_id, container.seq, t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _stored_keys(session: Session, containers: list[ContainerRecord]) -> set[Key]:
    """Which of these containers already have a row (one indexed query per batch)."""
    if not containers:
        return set()
    rows = session.execute(select(Container.line_id, Container.seq, Container.t_gate).where(
        Container.line_id.in_({c.line_id for c in containers}),
        Container.seq.in_({c.seq for c in containers}))).all()
    return {tuple(row) for row in rows} & {_key(c) for c in containers}


def _insert_containers(session: Session, containers: list[ContainerRecord],
                       planned: list[dict[int, tuple[str, int]]], versions: dict[str, int]) -> None:
    """Three multi-row INSERTs per batch (containers, views, detections): a row object per
    detection through the ORM unit of work costs several times more."""
    if not containers:
        return
    ids = session.scalars(insert(Container).returning(Container.id, sort_by_parameter_order=True), [
        {"line_id": c.line_id, "seq": c.seq, "t_gate": c.t_gate, "decision": c.decision, "reason": c.reason,
         "latency_ms": c.latency_ms, "model_version_id": versions.get(c.model_version) if c.model_version else None,
         "n_views": len(c.views), "section": c.section, "cavity": c.cavity} for c in containers]).all()
    view_rows, view_records = [], []
    for container_id, c, files in zip(ids, containers, planned):
        for v in c.views:
            relative, size = files.get(v.view, (None, 0))
            view_rows.append({"container_id": container_id, "view": v.view, "camera_id": v.camera_id,
                              "t_capture": v.t_capture, "missing": v.missing, "image_file": relative,
                              "image_bytes": size, "image_state": STORED if relative else NOT_KEPT,
                              "labelled": False})
            view_records.append(v)
    if not view_rows:
        return
    view_ids = session.scalars(insert(View).returning(View.id, sort_by_parameter_order=True), view_rows).all()
    detections = [{"view_id": view_id, "class_name": d["class"], "score": float(d["score"]),
                   "threshold": d.get("threshold"), "x1": d["box"][0], "y1": d["box"][1], "x2": d["box"][2], "y2": d["box"][3]}
                  for view_id, v in zip(view_ids, view_records) for d in v.detections]
    if detections:
        session.execute(insert(Detection), detections)
