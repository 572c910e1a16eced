"""The line-health verdict (`edge/ui/health.assess`, also behind `edge status`) on explicit
scrapes: every worker's samples count, not the first one's."""

from __future__ import annotations

from edge.ui.health import assess


def scrape(seconds: tuple[float, float], views: tuple[float, float], depth: float) -> dict:
    """Two workers' samples as the metrics reader returns them: {name: [(labels, value)]}."""
    return {
        "edge_engine_view_seconds_sum": [({"pid": "11"}, seconds[0]), ({"pid": "12"}, seconds[1])],
        "edge_engine_view_seconds_count": [({"pid": "11"}, views[0]), ({"pid": "12"}, views[1])],
        "edge_model_info": [({"version": "v1"}, 1.0), ({"version": "v2"}, 1.0), ({"version": "v0"}, 0.0)],
        "edge_queue_depth": [({"stage": "worker"}, depth)],
    }


def test_engine_time_and_models_come_from_every_worker():
    history = [(0.0, scrape((1.0, 2.0), (100, 100), 0)), (5.0, scrape((2.0, 5.0), (150, 150), 3)),
               (10.0, scrape((3.0, 8.0), (200, 200), 8))]
    health = assess(history, workers=2)
    # Over the window worker 11 spent 2 s on 100 views and worker 12 6 s on 100: 40 ms a view.
    assert health.engine_ms == 1e3 * ((3.0 + 8.0) - (1.0 + 2.0)) / ((200 + 200) - (100 + 100))
    assert health.models == ["v1", "v2"], "a model reported 0 is not loaded"
    assert any(w.startswith("backlog at worker: 0 -> 8") for w in health.warnings), health.warnings


def test_a_queue_that_shrinks_once_is_no_backlog():
    history = [(0.0, scrape((1, 1), (1, 1), 0)), (5.0, scrape((1, 1), (1, 1), 9)), (10.0, scrape((1, 1), (1, 1), 6))]
    assert not [w for w in assess(history, workers=2).warnings if w.startswith("backlog")]


def test_a_stalled_reject_controller_is_a_warning():
    """edge_relay_stalls_total rising (pipeline/relay_stage.py) warns; standing still, it does not."""
    def with_stalls(n: float) -> dict:
        return {**scrape((1, 1), (1, 1), 0), "edge_relay_stalls_total": [({}, n)]}

    rose = assess([(0.0, with_stalls(1)), (10.0, with_stalls(3))], workers=2).warnings
    assert rose == ["reject controller kept off the CPU over 2 ms (pulses may leave late): a starved or shared "
                    "CPU: 2 in the last 10 s"], rose
    assert assess([(0.0, with_stalls(3)), (10.0, with_stalls(3))], workers=2).warnings == []
