"""The start-up check: make the database and the image store agree again after a crash.

Files are renamed into place before their rows commit, and rows are committed one
transaction per batch, so a kill or power cut can leave: temporary files, files whose
rows never committed (orphans), rows whose file vanished (a purge interrupted, a disk
replaced), and, should a transaction ever be split, containers with fewer view rows
than they recorded. Each is repaired and counted; nothing here raises on what it finds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, update

from storage.db import LOST, STORED, Container, Database, View
from storage.files import is_temporary
from storage.images import ImageStore

log = logging.getLogger(__name__)


@dataclass
class RepairReport:
    temporary_files: int = 0
    orphan_files: int = 0
    missing_files: int = 0  # rows marked lost
    partial_containers: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.temporary_files or self.orphan_files or self.missing_files or self.partial_containers)

    def summary(self) -> str:
        return (f"{self.partial_containers} partial containers removed, {self.orphan_files} orphan files and "
                f"{self.temporary_files} temporary files deleted, {self.missing_files} rows marked lost")


def repair(db: Database, store: ImageStore, line_id: str | None = None) -> RepairReport:
    """Repair this image store against its rows; `line_id` limits it to one line's containers
    (a plant database shared by several line PCs, each with its own image store)."""
    report = RepairReport()
    with db.session.begin() as session:
        counts = (select(View.container_id, func.count().label("n")).group_by(View.container_id)).subquery()
        partial = session.scalars(line_scope(
            select(Container.id).outerjoin(counts, counts.c.container_id == Container.id)
            .where(func.coalesce(counts.c.n, 0) != Container.n_views), line_id)).all()
        if partial:
            session.execute(delete(Container).where(Container.id.in_(partial)))
            report.partial_containers = len(partial)
            report.details.append(f"partial containers removed: ids {partial[:20]}")
        stored = dict(session.execute(line_scope(
            select(View.image_file, View.id).where(View.image_state == STORED), line_id, join=True)).all())

    lost = []
    for relative, view_id in stored.items():
        if not store.path(relative).is_file():
            lost.append(view_id)
            report.details.append(f"{relative}: missing, row {view_id} marked lost")
    if lost:
        with db.session.begin() as session:
            for chunk in _chunks(lost, 500):
                session.execute(update(View).where(View.id.in_(chunk)).values(image_state=LOST, image_bytes=0))
    report.missing_files = len(lost)

    for relative in list(store.files()):
        if is_temporary(relative.rsplit("/", 1)[-1]):
            report.temporary_files += 1
        elif relative not in stored:
            report.orphan_files += 1
            report.details.append(f"{relative}: no row, deleted")
        else:
            continue
        store.delete(relative)
    if not report.clean:
        log.warning("storage check: %s", report.summary())
    return report


def line_scope(query, line_id: str | None, join: bool = False):
    """Restrict a query to one line's containers (no restriction for None)."""
    if line_id is None:
        return query
    if join:
        query = query.join(Container, View.container_id == Container.id)
    return query.where(Container.line_id == line_id)


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]
