"""Line statistics from the database: yield, and where the rejects come from.

Aggregated in SQL so that a query over months of containers stays cheap on the line PC,
and only reads: it runs beside the writer (WAL) without blocking it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select

from storage.db import Container, Database, Detection, Event, View


@dataclass
class Stats:
    containers: int = 0
    passed: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)  # rejected containers per reason
    by_class: dict[str, int] = field(default_factory=dict)  # rejected containers with the class detected
    by_camera: dict[str, int] = field(default_factory=dict)  # rejected containers with a detection in that camera
    missing_by_camera: dict[str, int] = field(default_factory=dict)  # views without pixels
    by_hour: dict[str, tuple[int, int]] = field(default_factory=dict)  # "YYYY-MM-DD HH:00" -> (containers, rejected)
    events: dict[str, int] = field(default_factory=dict)

    @property
    def yield_(self) -> float:
        return self.passed / self.containers if self.containers else 0.0

    def rate(self, n: int) -> float:
        return n / self.containers if self.containers else 0.0


def line_stats(db: Database, since: datetime | None = None, until: datetime | None = None,
               thresholds: dict[str, float] | None = None, default_threshold: float = 0.0,
               line_id: str | None = None) -> Stats:
    """Counts over containers gated in [since, until) (of one line, or all with None);
    a detection counts at or above its class threshold."""
    thresholds = thresholds or {}

    def window(q, column=Container.t_gate):
        if line_id is not None:
            q = q.where((Container.line_id if column is Container.t_gate else Event.line_id) == line_id)
        if since is not None:
            q = q.where(column >= since)
        if until is not None:
            q = q.where(column < until)
        return q

    stats = Stats()
    with db.session() as s:
        for decision, n in s.execute(window(select(Container.decision, func.count()).group_by(Container.decision))):
            stats.containers += n
            stats.passed += n if decision == "pass" else 0
        stats.rejected = stats.containers - stats.passed
        stats.by_reason = dict(s.execute(window(
            select(func.coalesce(Container.reason, "unknown"), func.count())
            .where(Container.decision != "pass").group_by(Container.reason))).all())
        hour = _hour(db, Container.t_gate)
        rejected = func.sum(case((Container.decision != "pass", 1), else_=0))
        stats.by_hour = {str(h): (n, int(r or 0)) for h, n, r in s.execute(window(
            select(hour, func.count(), rejected).group_by(hour).order_by(hour)))}
        floor = min([default_threshold, *thresholds.values()])
        hits = s.execute(window(
            select(Detection.class_name, View.camera_id, View.container_id, func.max(Detection.score))
            .join(View, Detection.view_id == View.id).join(Container, View.container_id == Container.id)
            .where(Container.decision != "pass", Detection.score >= floor)
            .group_by(Detection.class_name, View.camera_id, View.container_id))).all()
        classes, cameras = defaultdict(set), defaultdict(set)
        for name, camera, container_id, score in hits:
            if score >= thresholds.get(name, default_threshold):
                classes[name].add(container_id)
                cameras[camera].add(container_id)
        stats.by_class = dict(Counter({k: len(v) for k, v in classes.items()}).most_common())
        stats.by_camera = {k: len(v) for k, v in sorted(cameras.items())}
        stats.missing_by_camera = dict(s.execute(window(
            select(View.camera_id, func.count()).join(Container, View.container_id == Container.id)
            .where(View.missing.is_not(None)).group_by(View.camera_id).order_by(View.camera_id))).all())
        stats.events = dict(s.execute(window(
            select(Event.kind, func.sum(Event.count)).group_by(Event.kind), Event.t)).all())
    return stats


def _hour(db: Database, column):
    if db.engine.dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:00", column)
    return func.to_char(func.date_trunc("hour", column), "YYYY-MM-DD HH24:00")
