"""The shift report's charts, drawn with matplotlib as inline SVG (no files, no JavaScript)."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # no display on a line PC
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from storage.spc import PChart

RED, BLUE, GREY = "#c0392b", "#2c6fbb", "#888888"


def _svg(fig) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline: without the XML prolog and doctype


def yield_over_time(by_hour: dict[str, tuple[int, int]]) -> str:
    """Yield per UTC hour, with the containers per hour as bars behind it."""
    hours = list(by_hour)
    fig, ax = plt.subplots(figsize=(8, 2.8))
    counts = [n for n, _ in by_hour.values()]
    yields = [100 * (n - r) / n if n else 0 for n, r in by_hour.values()]
    bars = ax.twinx()
    bars.bar(range(len(hours)), counts, color="#dddddd")
    bars.set_ylabel("containers")
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(range(len(hours)), yields, marker="o", color=BLUE)
    ax.set_ylim(0, 100)
    ax.set_ylabel("yield %")
    ax.set_xticks(range(len(hours)), [h[-5:] for h in hours], rotation=45 if len(hours) > 12 else 0)
    ax.set_xlabel("hour (UTC)")
    return _svg(fig)


def pareto(by_class: dict[str, int]) -> str:
    """Rejected containers per defect class, largest first, with the cumulative share."""
    items = sorted(by_class.items(), key=lambda kv: -kv[1])
    fig, ax = plt.subplots(figsize=(8, 2.8))
    names, counts = [k for k, _ in items], [v for _, v in items]
    ax.bar(range(len(items)), counts, color=RED)
    ax.set_xticks(range(len(items)), names)
    ax.set_ylabel("rejected containers")
    total = sum(counts) or 1
    share, running = [], 0
    for n in counts:
        running += n
        share.append(100 * running / total)
    cumulative = ax.twinx()
    cumulative.plot(range(len(items)), share, marker="o", color=GREY)
    cumulative.set_ylim(0, 105)
    cumulative.set_ylabel("cumulative %")
    return _svg(fig)


def control_charts(charts: list[PChart]) -> str:
    """Small multiples: each chart's points (subgroup number), centre line and upper limit
    (dashed); points out of control in red."""
    columns = 4
    rows = max(1, math.ceil(len(charts) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(10, 1.9 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(charts):]:
        ax.axis("off")
    for ax, chart in zip(axes.flat, charts):
        xs = list(range(1, len(chart.points) + 1))
        ax.plot(xs, [100 * p.p for p in chart.points], marker=".", color=BLUE, linewidth=1)
        ax.axhline(100 * chart.centre, color=GREY, linewidth=1)
        ax.axhline(100 * chart.ucl, color=RED, linewidth=1, linestyle="--")
        out = [(x, 100 * p.p) for x, p in zip(xs, chart.points) if p.p > chart.ucl or p.alarms]
        if out:
            ax.scatter(*zip(*out), color=RED, zorder=3, s=30)
        ax.set_title(chart.name, fontsize=9, color=RED if out else "black")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    axes.flat[0].set_ylabel("% defective")
    fig.tight_layout()
    return _svg(fig)
