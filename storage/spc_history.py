"""Stored containers as control-chart samples: the baseline at the writer's start, the report's charts.

A container counts as storage/spc.py says (decided `defect` or `ok`); its classes are
those detected at or above their threshold in any view, as `edge db stats` counts them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select

from storage.moulds import mould_name
from storage.db import Container, Database, Detection, View
from storage.spc import INSPECTED, Sample, SpcMonitor, sample
from storage.stats import gated_in


def stored_samples(db: Database, since: datetime | None = None, until: datetime | None = None,
                   line_id: str | None = None, thresholds: dict[str, float] | None = None,
                   default_threshold: float = 0.0, newest: int | None = None) -> list[Sample]:
    """Inspected containers gated in [since, until), oldest first; `newest`: only the last N."""
    query = gated_in(select(Container.id, Container.reason, Container.section, Container.cavity).where(
        Container.reason.in_(list(INSPECTED))), since, until, line_id)
    if newest is not None:
        query = query.order_by(Container.t_gate.desc(), Container.id.desc()).limit(newest)
    else:
        query = query.order_by(Container.t_gate, Container.id)
    with db.session() as s:
        rows = s.execute(query).all()
        if newest is not None:
            rows.reverse()
        classes = _classes(s, [r.id for r in rows if r.reason == "defect"], thresholds or {}, default_threshold)
    return [sample(r.reason, mould_name(r.section, r.cavity), classes.get(r.id, ())) for r in rows]


def _classes(session, ids: list[int], thresholds: dict[str, float], default: float) -> dict[int, set[str]]:
    found: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for container_id, name, score in session.execute(
                select(View.container_id, Detection.class_name, func.max(Detection.score))
                .join(View, Detection.view_id == View.id).where(View.container_id.in_(chunk))
                .group_by(View.container_id, Detection.class_name)):
            if score >= thresholds.get(name, default):
                found[container_id].add(name)
    return found


def seeded_monitor(db: Database, config, at: datetime, line_id: str | None, thresholds: dict[str, float],
                   default_threshold: float) -> SpcMonitor:
    """A monitor whose baseline is the stored containers before `at` (config: the `spc:` section)."""
    monitor = SpcMonitor(config.subgroup, config.baseline_containers, config.run, config.class_subgroup)
    monitor.seed(stored_samples(db, at - timedelta(hours=config.baseline_hours), at, line_id, thresholds,
                                default_threshold, newest=config.baseline_containers))
    return monitor
