"""Gates on real ports: text lines over a pseudo-terminal pair, modem edges over pyserial's loop://."""

from __future__ import annotations

import os
import time

import pytest
from pydantic import TypeAdapter

from camera.config import GateConfig
from camera.errors import CameraError
from camera.gates import serial_modem
from camera.gates.base import Sequencer, build_gate
from edge.config import LineConfig

LINE = LineConfig(speed_cpm=600, travel_time_ms=1000)


def gate_config(**kw):
    return TypeAdapter(GateConfig).validate_python(kw)


def collect(gate, n: int, limit_s: float = 10.0) -> list:
    events, end = [], time.monotonic() + limit_s
    while len(events) < n and time.monotonic() < end:
        event = gate.wait(0.1)
        if event is not None:
            events.append(event)
    return events


def test_text_lines_on_a_pty_number_containers_and_count_gaps(pty_pair):
    master, port = pty_pair
    with build_gate(gate_config(driver="serial_lines", port=port), LINE) as gate:
        os.write(master, b"101\n102\r\n\n105\n105\nseq 106\n")
        events = collect(gate, 4)
        assert [e.seq for e in events] == [101, 102, 105, 106]
        assert events[-1].raw == "seq 106"
        assert all(a.t_ns <= b.t_ns for a, b in zip(events, events[1:]))
        assert gate.stats() == {"events": 4, "bounces": 0, "missed": 2, "duplicates": 1}


def test_text_lines_without_numbers_count_containers_and_split_reads(pty_pair):
    master, port = pty_pair
    with build_gate(gate_config(driver="serial_lines", port=port, debounce_ms=0), LINE) as gate:
        os.write(master, b"GO\nG")
        first = collect(gate, 1)
        assert gate.wait(0.05) is None  # half a line is not an event yet
        os.write(master, b"O\n")
        second = collect(gate, 1)
        assert [e.seq for e in first + second] == [1, 2]


class FakeTime:
    """Stands in for the modem gate's `time` module: the test says when each level changes,
    so a starved thread cannot stretch a bounce past the debounce time or hide a pulse."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def monotonic_ns(self) -> int:
        return self.ns

    def monotonic(self) -> float:
        return self.ns / 1e9

    def sleep(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


def test_modem_edges_on_loop_are_debounced(monkeypatch):
    """RTS loops to CTS on loop://: each pulse starts with a burst of bounces."""
    clock = FakeTime()
    monkeypatch.setattr(serial_modem, "time", clock)
    config = gate_config(driver="serial_modem", port="loop://", line="cts", debounce_ms=30, poll_ms=0.5)
    with build_gate(config, LINE) as gate:

        def level(on: bool, after_ms: float):
            """Set the sensor's level `after_ms` on, and let the gate poll it once."""
            clock.ns += int(after_ms * 1e6)
            gate.port.rts = on
            return gate.wait(0)

        assert level(False, 0) is None  # loop:// opens with RTS on; a falling edge is no container
        events = []
        for _ in range(5):
            for _ in range(5):  # the container's edge, then contact bounce: 4 rising edges within 8 ms
                events.append(level(True, 1))
                assert level(False, 1) is None
            clock.ns += 100_000_000  # the next container, 110 ms later
        assert [e.seq for e in events if e is not None] == [1, 2, 3, 4, 5]
        assert [i for i, e in enumerate(events) if e is not None] == [0, 5, 10, 15, 20]  # each burst's first
        assert all(b.t_ns - a.t_ns >= 30e6 for a, b in zip(events[::5], events[5::5]))
        assert gate.stats()["bounces"] == 20


def test_falling_edge_gate_fires_when_the_beam_is_interrupted():
    config = gate_config(driver="serial_modem", port="loop://", line="cts", edge="falling", debounce_ms=0)
    with build_gate(config, LINE) as gate:
        gate.port.rts = True
        assert gate.wait(0.05) is None
        gate.port.rts = False
        assert [e.seq for e in collect(gate, 1)] == [1]


def test_sequencer_counts_bounces_and_gaps():
    seq = Sequencer(debounce_ms=5)
    assert seq.edge(0).seq == 1
    assert seq.edge(4_000_000) is None
    assert seq.edge(6_000_000).seq == 2
    assert seq.edge(7_000_000, source_seq=10).seq == 10
    assert seq.edge(8_000_000, source_seq=10) is None
    assert seq.counts == {"events": 3, "bounces": 1, "missed": 0, "duplicates": 1}


def test_pulses_between_polls_advance_the_numbering():
    """What the modem gate does when the port's edge counter shows pulses no poll saw."""
    seq = Sequencer(debounce_ms=5)
    assert seq.edge(0).seq == 1
    assert seq.in_debounce(4_000_000) and not seq.in_debounce(6_000_000)
    seq.skipped(2)
    assert seq.edge(100_000_000).seq == 4  # containers 2 and 3 passed unseen
    assert seq.counts["missed"] == 2


def test_simulated_gate_fires_at_line_speed_in_order():
    with build_gate(gate_config(driver="simulated"), LineConfig(speed_cpm=1200, travel_time_ms=1000)) as gate:
        events = collect(gate, 3)
    assert [e.seq for e in events] == [1, 2, 3]
    assert [b.t_ns - a.t_ns for a, b in zip(events, events[1:])] == [50_000_000, 50_000_000]


def test_unopenable_port_names_it():
    with pytest.raises(CameraError, match="/dev/ttyNOPE"):
        build_gate(gate_config(driver="serial_lines", port="/dev/ttyNOPE"), LINE).open()
