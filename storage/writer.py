"""The storage writer: what the pipeline's last stage calls for every decided container.

Containers are buffered and written one transaction per batch (storage.batch_size, or
whatever is pending after `flush_interval_s`), images first, rows after, so a crash
never leaves a row pointing at a half-written file. The disk quota is enforced after
each commit by purging the oldest unlabelled images; the writer itself never stops for
the quota. A failed image write costs that image, not the container's record.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

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


class Recorder:
    def __init__(self, database_url: str, data_dir: Path, config: StorageConfig,
                 flush_interval_s: float = 1.0, line_id: str | None = None) -> None:
        """`line_id` (config line.id) tags events and, on a server database (several line PCs,
        each with its own image store), confines the start-up repair and the quota to this
        line's rows. A SQLite file belongs to one PC: there, all rows are this store's."""
        self.config = config
        self.line_id = line_id
        self.db = open_database(database_url)
        self._scope = line_id if self.db.engine.dialect.name != "sqlite" else None
        self.store = ImageStore(Path(data_dir), config)
        self.repair_report: RepairReport = repair(self.db, self.store, self._scope)
        self.flush_interval_s = flush_interval_s
        self.quota_bytes = int(config.quota_gb * 1e9)
        self.counters = {"containers": 0, "images": 0, "image_errors": 0, "purged": 0, "events": 0}
        self._pending: list[tuple[ContainerRecord, dict[int, np.ndarray]]] = []
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
        """Write everything pending in one transaction; return the containers written."""
        pending, events = self._pending, self._events
        if not pending and not events:
            return 0
        self._pending, self._events = [], []
        planned = self._store_images(pending)
        written = [rel for views in planned for rel, _ in views.values()]
        try:
            self._commit(pending, planned, events)
        except BaseException:
            for relative in written:  # their rows never committed: no orphans left behind
                self.store.delete(relative)
            raise
        added = sum(size for views in planned for _, size in views.values())
        self._stored_bytes += added
        self.counters["containers"] += len(pending)
        self.counters["images"] += len(written)
        self.counters["events"] += len(events)
        self._flushes += 1
        if self._flushes % RESYNC_EVERY == 0:
            self._stored_bytes = self._count_stored_bytes()
        if self._stored_bytes > self.quota_bytes:
            self.enforce_quota()
        return len(pending)

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

    def _store_images(self, pending: list[tuple[ContainerRecord, dict[int, np.ndarray]]]
                      ) -> list[dict[int, tuple[str, int]]]:
        """Write the kept views' files of a batch; per container, view -> (relative path, bytes).

        Encoding and fsync release the GIL, so a few threads keep up with "keep every view"
        on a multi-core line PC; a failed image costs that image, never the record.
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
        for (i, seq, view, relative, _), result in zip(jobs, self._pool.map(self._write_one, jobs)):
            if isinstance(result, Exception):
                self.counters["image_errors"] += 1
                log.error("container %d view %d: image not stored (%s); the record is kept", seq, view, result)
                full_disk = isinstance(result, OSError)
            else:
                planned[i][view] = (relative, result)
                full_disk = False
            if full_disk:
                self.enforce_quota()  # make room for the next batch
        return planned

    def _write_one(self, job) -> int | Exception:
        relative, pixels = job[3], job[4]
        try:
            return self.store.write(relative, pixels)
        except (OSError, StorageError) as exc:
            self.store.delete(relative)
            return exc

    def _commit(self, pending, planned, events: list[EventRecord]) -> None:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                with self.db.session.begin() as session:
                    versions = self._version_ids(session, {c.model_version for c, _ in pending} - {None})
                    _insert_containers(session, [c for c, _ in pending], planned, versions)
                    if events:
                        session.execute(insert(Event), [
                            {"t": e.t, "line_id": e.line_id or self.line_id, "kind": e.kind,
                             "camera_id": e.camera_id, "container_seq": e.container_seq,
                             "count": e.count, "detail": e.detail} for e in events])
                return
            except (OperationalError, IntegrityError) as exc:
                self._versions.clear()  # a version row may not have committed
                if attempt == COMMIT_ATTEMPTS:
                    raise StorageError(f"cannot write {len(pending)} containers to the database after "
                                       f"{attempt} attempts: {exc.orig}") from None
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


def _insert_containers(session, containers: list[ContainerRecord], planned: list[dict[int, tuple[str, int]]],
                       versions: dict[str, int]) -> None:
    """Three multi-row INSERTs per batch (containers, views, detections): a row object per
    detection through the ORM unit of work costs several times more."""
    if not containers:
        return
    ids = session.scalars(insert(Container).returning(Container.id, sort_by_parameter_order=True), [
        {"line_id": c.line_id, "seq": c.seq, "t_gate": c.t_gate, "decision": c.decision, "reason": c.reason,
         "latency_ms": c.latency_ms, "model_version_id": versions.get(c.model_version) if c.model_version else None,
         "n_views": len(c.views)} for c in containers]).all()
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
                   "x1": d["box"][0], "y1": d["box"][1], "x2": d["box"][2], "y2": d["box"][3]}
                  for view_id, v in zip(view_ids, view_records) for d in v.detections]
    if detections:
        session.execute(insert(Detection), detections)
