"""Control charts: the pure SPC module (no database), and the storage writer raising an alarm
that names a bad cavity (real SQLite, records through the Recorder)."""

from __future__ import annotations

import logging

import numpy as np
from decision_support import decide, decision_book, write_config

from bench.spc import machine, run_line
from storage.moulds import delivered
from edge.config import load_config
from pipeline.writer import RecorderAdapter
from storage.db import Event, open_database
from storage.spc import (
    BEYOND,
    RUN,
    PChart,
    SpcMonitor,
    sample,
    sigma_limit,
    upper_limit,
)

MOULDS = machine(8, 2)


def test_exact_limit_leaves_at_most_the_3_sigma_tail_above_it():
    from math import comb

    for centre, n in ((0.05, 100), (0.005, 500), (0.3, 50)):
        ucl = upper_limit(centre, n)
        k = round(ucl * n)
        above = sum(comb(n, i) * centre**i * (1 - centre) ** (n - i) for i in range(k + 1, n + 1))
        assert above <= 0.00135
        assert ucl >= sigma_limit(centre, n) - 1 / n  # not below the textbook limit by more than a count


def test_rules_beyond_the_limit_and_a_run_above_the_centre_alarm_once_per_excursion():
    chart = PChart("cavity 3-1", centre=0.05, n=100)
    assert [a.rule for a in chart.add(20)] == [BEYOND]
    assert chart.add(20) == []  # still out: the same excursion
    assert chart.add(5) == []
    assert [a.rule for a in chart.add(20)] == [BEYOND]  # back inside in between: a new one
    chart = PChart("cavity 1-1", centre=0.05, n=100)
    alarms = [chart.add(7) for _ in range(8)]  # above the centre, below the limit
    assert alarms[:7] == [[]] * 7 and [a.rule for a in alarms[7]] == [RUN]
    assert chart.add(7) == [] and chart.add(5) == [] and chart.add(2) == []


def test_what_the_charts_count():
    assert sample("defect", "3-1", {"bubble"}).defective
    assert not sample("ok", "3-1").defective
    assert sample("mould", "3-1") is None and sample("late result", "3-1") is None


def test_no_alarm_for_good_cavities_over_a_long_in_control_run():
    """200,000 containers of 16 equally good cavities (5 % defective): the measured
    false-alarm rate of the cavity charts stays far below one per 10,000 containers."""
    rng = np.random.default_rng(11)
    monitor = SpcMonitor(subgroup=100, baseline_containers=5000)
    good = {m: 0.05 for m in MOULDS}
    run_line(monitor, rng, 5000, MOULDS, good)
    alarms, _ = run_line(monitor, rng, 200_000, MOULDS, good, first=5000)
    cavity = [a for a in alarms if a.chart.startswith("cavity")]
    assert len(cavity) / 20 <= 0.3, [a.message() for a in cavity]  # per 10,000 containers
    assert len(monitor.charts) == 16 + 5


def test_a_bad_cavity_is_named_within_a_bounded_number_of_containers():
    rng = np.random.default_rng(12)
    monitor = SpcMonitor(subgroup=100, baseline_containers=5000)
    good = {m: 0.05 for m in MOULDS}
    run_line(monitor, rng, 5000, MOULDS, good)
    alarms, until = run_line(monitor, rng, 20_000, MOULDS, {**good, "3-1": 0.15}, stop_at="cavity 3-1", first=5000)
    assert until is not None and until <= 16 * 300  # three subgroups of that cavity at most
    assert all(a.chart == "cavity 3-1" for a in alarms if a.chart.startswith("cavity"))


def test_the_storage_writer_raises_the_alarm_as_warning_event_and_metric(tmp_path, caplog):
    from pipeline import metrics

    config = load_config(write_config(tmp_path, {"keep_images": "none"},
                                      {"subgroup": 20, "baseline_containers": 320, "class_subgroup": 0}))
    adapter = RecorderAdapter(config)
    book = decision_book()
    rng = np.random.default_rng(3)
    named_at = None
    caplog.set_level(logging.WARNING, logger="pipeline.writer")
    for seq in range(1, 3200):
        mould = str(delivered(seq, 8, 2))
        bad = mould == "3-1" and seq > 320
        adapter.record(decide(book, seq, mould, defect=rng.random() < (0.5 if bad else 0.05)), {})
        if seq % 16 == 0:
            adapter.recorder.flush()
            found = [a for a in adapter.alarms]
            adapter.raise_alarms(metrics)
            if any(a.chart == "cavity 3-1" for a in found):
                named_at = seq
                break
    adapter.close()
    assert named_at is not None and named_at <= 320 + 16 * 20 * 3, named_at
    assert "SPC ALARM: cavity 3-1 out of control" in caplog.text
    db = open_database(config.database_url)
    with db.session() as s:
        details = [e.detail for e in s.query(Event).filter_by(kind="spc alarm")]
    db.close()
    assert any(d.startswith("cavity 3-1") for d in details) and not any("cavity 3-2" in d for d in details)
    assert metrics.SPC_ALARMS.labels("cavity 3-1", BEYOND)._value.get() >= 1
