"""Statistical process control: p-charts per mould cavity and per defect class, with alarms.

Pure (no database, no clock): fed one inspected container at a time, it says when a chart
goes out of control. The storage writer feeds it after each commit (pipeline/writer.py),
the shift report and bench/spc.py replay stored or simulated containers through it.

- A **cavity chart** plots, for each subgroup of `subgroup` containers from that mould,
  the share rejected for a defect. Its centre line is the whole machine's share over the
  baseline window, so a cavity is compared with its sister moulds: one that was bad
  before the baseline still stands out.
- A **class chart** plots, for each subgroup of `class_subgroup` containers of the line,
  the share with that defect class detected; centre line: that class's share in the
  baseline. Classes are rarer than defects, so their subgroups are larger.
- **Limits**: the upper limit is the 3-sigma limit p-bar + 3 sqrt(p-bar (1 - p-bar) / n)
  made exact: the share above which a binomial(n, p-bar) count lies with the probability
  3 sigma promises a normal one (0.135 %). At the n p-bar of a glass line (a few defects
  per subgroup) the normal approximation is skewed and would fire several times as often
  (bench/spc.py measures both). A baseline without a single defect takes
  p-bar = 1 / (baseline containers), so that one defect is not an alarm.
- **Alarms** (Western Electric rules 1 and 2 on the upper side: a plant acts on a mould
  getting worse; a better one is good news): a point above the upper limit, or
  `run` (8) points in a row above the centre line (a count within half a container of the
  centre counts as on it, which breaks a run: a discrete count is otherwise "above" far
  more often than half the time and runs fire many times too often). One alarm per excursion: a chart that
  alarmed raises the same rule again only after a point back inside (rule 1) or a point
  at or below the centre (rule 2).
- **Baseline**: the first `baseline_containers` inspected containers the monitor sees (or
  those `seed` gives it from the database at start); charts start after it.

Counted: containers decided `defect` (defective) or `ok`. Containers rejected for their
mould (taken out on purpose) or not inspected (missing view, late result, crash) are
left out of every chart.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

INSPECTED = {"defect": True, "ok": False}  # reason -> defective
BEYOND, RUN = "beyond 3 sigma", "run above centre"


@dataclass(frozen=True)
class Sample:
    """One inspected container as the charts see it."""

    mould: str | None  # "3-1", None without a mould reader
    defective: bool
    classes: frozenset[str] = frozenset()  # defect classes detected at or above their threshold


def sample(reason: str | None, mould: str | None, classes: Iterable[str] = ()) -> Sample | None:
    """The chart sample of a decided container, or None when it is not counted (see above)."""
    if reason not in INSPECTED:
        return None
    return Sample(mould, INSPECTED[reason], frozenset(classes) if INSPECTED[reason] else frozenset())


@dataclass(frozen=True)
class Alarm:
    chart: str  # "cavity 3-1" | "class bubble"
    rule: str  # BEYOND | RUN
    point: int  # subgroup number on that chart, from 1
    p: float
    centre: float
    ucl: float
    n: int

    def message(self) -> str:
        return (f"{self.chart} out of control ({self.rule}): {self.p:.1%} of the last {self.n} containers, "
                f"centre {self.centre:.1%}, upper limit {self.ucl:.1%}")


@dataclass
class Point:
    p: float
    alarms: list[str] = field(default_factory=list)


TAIL = 0.00135  # P(Z > 3) of a normal: what a 3-sigma limit is meant to leave above it


def sigma_limit(centre: float, n: int) -> float:
    """The textbook p-chart limit, p-bar + 3 sigma (normal approximation)."""
    return min(1.0, centre + 3 * math.sqrt(centre * (1 - centre) / n))


def upper_limit(centre: float, n: int) -> float:
    """The smallest share k/n with P(binomial(n, centre) > k) <= TAIL."""
    q = 1.0 - centre
    term = q ** n  # P(X = 0)
    below = term
    for k in range(n):
        if 1.0 - below <= TAIL:
            return k / n
        term *= (n - k) / (k + 1) * centre / q
        below += term
    return 1.0


class PChart:
    """One chart: centre and limit fixed at creation, one point per `add`."""

    def __init__(self, name: str, centre: float, n: int, run: int = 8, exact: bool = True) -> None:
        self.name, self.centre, self.n, self.run = name, centre, n, run
        self.ucl = upper_limit(centre, n) if exact else sigma_limit(centre, n)
        self.points: list[Point] = []
        self._above = 0  # points in a row above the centre
        self._raised: set[str] = set()  # rules alarmed in the current excursion

    def add(self, defective: int) -> list[Alarm]:
        """One subgroup of n containers with `defective` of them counted."""
        p = defective / self.n
        point = Point(p)
        self.points.append(point)
        # A count cannot sit on the centre line: within half a container of it counts as on it.
        self._above = self._above + 1 if defective > self.n * self.centre + 0.5 else 0
        if p <= self.ucl:
            self._raised.discard(BEYOND)
        if self._above == 0:
            self._raised.discard(RUN)
        for rule, broken in ((BEYOND, p > self.ucl), (RUN, self._above >= self.run)):
            if broken and rule not in self._raised:
                self._raised.add(rule)
                point.alarms.append(rule)
        return [Alarm(self.name, rule, len(self.points), p, self.centre, self.ucl, self.n) for rule in point.alarms]


class SpcMonitor:
    """Every cavity's and class's chart, fed container by container."""

    def __init__(self, subgroup: int = 100, baseline_containers: int = 5000, run: int = 8,
                 class_subgroup: int = 500, exact: bool = True) -> None:
        self.subgroup, self.baseline_containers, self.run = subgroup, baseline_containers, run
        self.class_subgroup, self.exact = class_subgroup, exact
        self.baseline_n = 0
        self._baseline_defective = 0
        self._baseline_classes: dict[str, int] = defaultdict(int)
        self.charts: dict[str, PChart] = {}
        self._open: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # chart -> [containers, counted]
        self._line_classes: dict[str, int] = defaultdict(int)
        self._line_n = 0

    @property
    def ready(self) -> bool:
        """True once the baseline is complete and the charts run."""
        return self.baseline_n >= self.baseline_containers

    @property
    def centre(self) -> float:
        """The machine's defect share in the baseline (the cavity charts' centre line)."""
        return max(self._baseline_defective, 1) / max(self.baseline_n, 1)

    def class_centre(self, name: str) -> float:
        return max(self._baseline_classes.get(name, 0), 1) / max(self.baseline_n, 1)

    def seed(self, samples: Iterable[Sample]) -> None:
        """Baseline from history (the database's most recent containers) before live ones."""
        for s in samples:
            if self.ready:
                return
            self._to_baseline(s)

    def add(self, s: Sample | None) -> list[Alarm]:
        if s is None:
            return []
        if not self.ready:
            self._to_baseline(s)
            return []
        alarms = []
        if s.mould is not None:
            alarms += self._count(f"cavity {s.mould}", int(s.defective), self.centre)
        if self.class_subgroup:
            alarms += self._count_classes(s)
        return alarms

    def _to_baseline(self, s: Sample) -> None:
        self.baseline_n += 1
        self._baseline_defective += s.defective
        for name in s.classes:
            self._baseline_classes[name] += 1

    def _chart(self, name: str, centre: float, n: int) -> PChart:
        chart = self.charts.get(name)
        if chart is None:
            chart = self.charts[name] = PChart(name, centre, n, self.run, self.exact)
        return chart

    def _count(self, name: str, defective: int, centre: float) -> list[Alarm]:
        tally = self._open[name]
        tally[0] += 1
        tally[1] += defective
        if tally[0] < self.subgroup:
            return []
        counted, tally[0], tally[1] = tally[1], 0, 0
        return self._chart(name, centre, self.subgroup).add(counted)

    def _count_classes(self, s: Sample) -> list[Alarm]:
        """Line subgroups: every class seen so far (baseline or live) gets a point each subgroup."""
        self._line_n += 1
        for name in s.classes:
            self._line_classes[name] += 1
        if self._line_n < self.class_subgroup:
            return []
        alarms = []
        for name in sorted(set(self._baseline_classes) | set(self._line_classes)):
            chart = self._chart(f"class {name}", self.class_centre(name), self.class_subgroup)
            alarms += chart.add(self._line_classes.get(name, 0))
        self._line_n = 0
        self._line_classes.clear()
        return alarms
