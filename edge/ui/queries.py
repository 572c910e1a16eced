"""What the pages read from the line's database: short, indexed queries, read-only.

Each one opens its own short session, so a page never holds a transaction open
against the writer (SQLite WAL: readers never block it anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, exists, func, select
from sqlalchemy.orm import selectinload

from storage.db import STORED, Container, Database, Event, View

SPC_ALARM = "spc alarm"  # the event kind the storage writer gives control-chart alarms (pipeline/writer.py)


@dataclass
class Thresholds:
    by_class: dict[str, float]
    default: float

    def of(self, name: str) -> float:
        return self.by_class.get(name, self.default)


def container(db: Database, container_id: int) -> Container | None:
    with db.session() as session:
        return session.scalar(select(Container).where(Container.id == container_id).options(
            selectinload(Container.views).selectinload(View.detections),
            selectinload(Container.views).selectinload(View.labels)))


def container_id_by_seq(db: Database, line_id: str, seq: int) -> int | None:
    """The latest container with this number (numbers continue across restarts)."""
    with db.session() as session:
        return session.scalar(select(Container.id).where(Container.line_id == line_id, Container.seq == seq)
                              .order_by(Container.t_gate.desc()).limit(1))


def view(db: Database, view_id: int) -> View | None:
    with db.session() as session:
        return session.scalar(select(View).where(View.id == view_id).options(
            selectinload(View.detections), selectinload(View.labels), selectinload(View.container)))


def review_queue(db: Database, limit: int = 50) -> list[Container]:
    """Newest first: rejected containers, and passed ones whose images were kept as a sample,
    that still have a stored view nobody has reviewed."""
    unreviewed = exists().where(View.container_id == Container.id, View.image_state == STORED,
                                View.labelled.is_(False))
    with db.session() as session:
        return list(session.scalars(select(Container).where(unreviewed)
                                    .order_by(Container.t_gate.desc()).limit(limit)))


def spc_alarms(db: Database, since: datetime, line_id: str, limit: int = 20) -> list[tuple[datetime, str]]:
    """The newest control-chart alarms since `since`: (time, what the chart says)."""
    with db.session() as s:
        return [(t, detail) for t, detail in s.execute(
            select(Event.t, Event.detail).where(Event.kind == SPC_ALARM, Event.t >= since, Event.line_id == line_id)
            .order_by(Event.t.desc()).limit(limit))]


def camera_activity(db: Database, since: datetime, until: datetime, line_id: str) -> dict[str, tuple[datetime | None, int]]:
    """Per camera, for containers gated in [since, until): (its last frame, views lost to a grab timeout).

    A grab timeout is stored as the view's missing reason "missing: timeout: ..." (camera/worker.py,
    pipeline/writer.py)."""
    timeout = func.sum(func.coalesce(View.missing, "").like("%timeout%").cast(Integer))
    with db.session() as s:
        rows = s.execute(select(View.camera_id, func.max(View.t_capture), timeout)
                         .join(Container, View.container_id == Container.id)
                         .where(Container.t_gate >= since, Container.t_gate < until, Container.line_id == line_id)
                         .group_by(View.camera_id)).all()
    return {camera: (last, int(n or 0)) for camera, last, n in rows}
