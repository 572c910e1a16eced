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


def gated_in(query, since: datetime | None, until: datetime | None, line_id: str | None = None):
    """`query` narrowed to containers gated in [since, until) on one line (None: no bound)."""
    if line_id is not None:
        query = query.where(Container.line_id == line_id)
    if since is not None:
        query = query.where(Container.t_gate >= since)
    if until is not None:
        query = query.where(Container.t_gate < until)
    return query


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


DIMENSIONS = ("cavity", "section", "hour", "class", "camera")
DETECTION_DIMENSIONS = {"class", "camera"}  # of a container's detections, not of the container


@dataclass
class Group:
    """One row of `breakdown`: containers of the group, and how they were decided.

    With a class or camera among the dimensions, `rejected` counts the group's rejected
    containers with a detection of that class (in that camera) at or above its threshold,
    and `containers` the containers of the group without that dimension (the rate's base).
    """

    key: dict[str, str]
    containers: int = 0
    passed: int | None = 0
    rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rejected / self.containers if self.containers else 0.0

    def to_dict(self) -> dict:
        return {**self.key, "containers": self.containers, "passed": self.passed, "rejected": self.rejected,
                "reject_rate": round(self.rate, 6), "by_reason": self.by_reason}


def breakdown(db: Database, by: list[str], since: datetime | None = None, until: datetime | None = None,
              thresholds: dict[str, float] | None = None, default_threshold: float = 0.0,
              line_id: str | None = None) -> list[Group]:
    """Containers and rejects grouped by any of DIMENSIONS (`edge db stats --by cavity,hour`).

    A cavity is SECTION-CAVITY ("3-1"), "-" for containers without a mould reader; hours are UTC.
    """
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or not by:
        raise ValueError(f"cannot group by {', '.join(unknown) or 'nothing'}; use {', '.join(DIMENSIONS)}")
    base = [d for d in by if d not in DETECTION_DIMENSIONS]
    hour = _hour(db, Container.t_gate)
    columns = {"cavity": (Container.section, Container.cavity), "section": (Container.section,), "hour": (hour,)}
    selected = [c for d in base for c in columns[d]]

    def window(q):
        return gated_in(q, since, until, line_id)

    def key_of(values) -> dict[str, str]:
        values, key = list(values), {}
        for d in base:
            if d == "cavity":
                section, cavity = values.pop(0), values.pop(0)
                key[d] = "-" if cavity is None else f"{section}-{cavity}"
            else:
                value = values.pop(0)
                key[d] = "-" if value is None else str(value)
        return key

    groups: dict[tuple, Group] = {}
    with db.session() as s:
        for *values, decision, reason, n in s.execute(window(
                select(*selected, Container.decision, func.coalesce(Container.reason, "unknown"), func.count())
                .group_by(*selected, Container.decision, Container.reason))):
            key = key_of(values)
            group = groups.setdefault(tuple(key.values()), Group(key))
            group.containers += n
            if decision == "pass":
                group.passed += n
            else:
                group.rejected += n
                group.by_reason[reason] = group.by_reason.get(reason, 0) + n
        if base == by:
            return sorted(groups.values(), key=_order)
        floor = min([default_threshold, *(thresholds or {}).values()])
        hits = s.execute(window(
            select(*selected, Detection.class_name, View.camera_id, Container.id, func.max(Detection.score))
            .join(View, Detection.view_id == View.id).join(Container, View.container_id == Container.id)
            .where(Container.decision != "pass", Detection.score >= floor)
            .group_by(*selected, Detection.class_name, View.camera_id, Container.id))).all()
    found: dict[tuple, set[int]] = {}
    keys: dict[tuple, dict[str, str]] = {}
    for *values, name, camera, container_id, score in hits:
        if score < (thresholds or {}).get(name, default_threshold):
            continue
        key = key_of(values)
        full = {d: key[d] if d in key else (name if d == "class" else camera) for d in by}
        keys[tuple(full.values())] = full
        found.setdefault(tuple(full.values()), set()).add(container_id)
    rows = []
    for k, ids in found.items():
        full = keys[k]
        parent = groups.get(tuple(full[d] for d in base))
        rows.append(Group(full, containers=parent.containers if parent else 0, passed=None, rejected=len(ids)))
    return sorted(rows, key=_order)


def stats_json(s: Stats, by: list[str] | None = None, groups: list[Group] | None = None) -> dict:
    """What `edge db stats --json` prints (and the shift report embeds: its counts must be these)."""
    return {"containers": s.containers, "passed": s.passed, "rejected": s.rejected, "yield": round(s.yield_, 6),
            "by_reason": s.by_reason, "by_class": s.by_class, "by_camera": s.by_camera,
            "missing_by_camera": s.missing_by_camera, "events": s.events,
            "by_hour": {h: {"containers": n, "rejected": r} for h, (n, r) in s.by_hour.items()},
            **({"by": by, "groups": [g.to_dict() for g in groups or []]} if by else {})}


def _order(group: Group) -> tuple:
    """Cavities in machine order (2-1 before 10-1), the rest alphabetically."""
    out = []
    for d, value in group.key.items():
        if d in ("cavity", "section") and value != "-":
            out.append(tuple(int(part) for part in value.split("-")))
        else:
            out.append((10**9,) if value == "-" else (0, value))
    return tuple(out)


def _hour(db: Database, column):
    if db.engine.dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:00", column)
    return func.to_char(func.date_trunc("hour", column), "YYYY-MM-DD HH24:00")
