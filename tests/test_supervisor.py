"""The supervisor's judgement on an explicit clock: start grace, restart back-off, health.

No process is started: each stage holds a stand-in process whose life the test sets, and
`_spawn` is replaced by one that records the restart, so every case is arithmetic on time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edge.config import load_config
from edge.supervisor import BACKOFF_START_S, Stage, Supervisor


@dataclass
class StandInProcess:
    pid: int = 4242
    alive: bool = True
    exitcode: int | None = None
    killed: bool = False

    def is_alive(self) -> bool:
        return self.alive

    def kill(self) -> None:
        self.killed = True

    def die(self, code: int = -9) -> None:
        self.alive, self.exitcode = False, code


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outbox:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, flags: int = 0) -> None:
        self.sent.append(data)


@pytest.fixture
def line(tmp_path, shipped_config_path):
    """A supervisor of the shipped line's stages on a fake clock, none of them a real process."""
    (tmp_path / "config.yaml").write_text(shipped_config_path.read_text())  # its data folder: tmp_path/data
    config = load_config(tmp_path / "config.yaml")
    clock = Clock()
    sup = Supervisor(config, clock=clock)
    sup.to_decision = Outbox()
    spawned: list[str] = []

    def spawn(stage: Stage) -> None:  # what _spawn does to the books, without a process
        spawned.append(stage.name)
        stage.process = StandInProcess()
        stage.started = stage.last_beat = clock()
        stage.state, stage.restart_at, stage.beaten = "starting", None, False

    sup._spawn = spawn
    for name in ("writer", "relay", "decision", "worker-0", "station"):
        sup.stages[name] = Stage(name)
        spawn(sup.stages[name])
    spawned.clear()
    return sup, clock, spawned


def crash(sup: Supervisor, name: str) -> Stage:
    """Every stage beating, then `name` dies and the supervisor looks once."""
    beat(sup, sup.clock)
    stage = sup.stages[name]
    stage.process.die()
    sup._tend(sup.clock())
    return stage


def beat(sup: Supervisor, clock: Clock, *names: str) -> None:
    for name in names or sup.stages:
        stage = sup.stages[name]
        stage.last_beat, stage.beaten, stage.state = clock(), True, "running"


def test_a_starting_stage_has_start_timeout_then_stall_s_counts(line):
    sup, clock, _ = line
    stall, grace = sup.config.pipeline.stall_s, sup.config.pipeline.start_timeout_s
    worker = sup.stages["worker-0"]
    beat(sup, clock, "writer", "relay", "decision", "station")
    clock.now += stall + 1  # longer than stall_s, but it has not beaten yet: still starting
    beat(sup, clock, "writer", "relay", "decision", "station")
    sup._tend(clock())
    assert not worker.process.killed
    clock.now += grace - stall  # past start_timeout_s since its spawn
    sup._tend(clock())
    assert worker.process.killed

    worker.process = type(worker.process)()
    beat(sup, clock)  # a beating stage is judged by stall_s from its last beat
    clock.now += stall - 0.1
    sup._tend(clock())
    assert not worker.process.killed
    clock.now += 0.2
    sup._tend(clock())
    assert worker.process.killed


def test_a_worker_comes_back_with_doubling_back_off(line):
    sup, clock, spawned = line
    worker = crash(sup, "worker-0")
    assert worker.restart_at == clock() + BACKOFF_START_S and worker.state == "restarting"
    assert b'"kind":"crash"' in sup.to_decision.sent[-1] and b"worker-0" in sup.to_decision.sent[-1]
    clock.now += BACKOFF_START_S - 0.01
    sup._tend(clock())
    assert spawned == []
    clock.now += 0.02
    sup._tend(clock())
    assert spawned == ["worker-0"] and worker.restarts == 1

    worker.process.die()  # dies again at once: the wait doubles
    sup._tend(clock())
    assert worker.restart_at == pytest.approx(clock() + 2 * BACKOFF_START_S)


def test_the_relay_comes_back_at_once_unless_it_dies_before_beating(line):
    sup, clock, spawned = line
    relay = crash(sup, "relay")
    sup._tend(clock())  # the same instant: no back-off
    assert spawned == ["relay"]

    relay.process.die()  # died before its first heartbeat (a pulled cable): back-off, no spin
    sup._tend(clock())
    assert relay.restart_at == clock() + BACKOFF_START_S and spawned == ["relay"]


def test_health_follows_beats_restarts_and_open_containers(line):
    sup, clock, _ = line
    beat(sup, clock)
    assert sup.healthy(clock())
    clock.now += sup.config.pipeline.stall_s + 1
    assert not sup.healthy(clock())  # every stage silent
    beat(sup, clock)
    assert sup.healthy(clock())

    worker = crash(sup, "worker-0")  # restarting within its limits is healthy
    assert sup.healthy(clock())
    clock.now += sup.config.pipeline.start_timeout_s + 1
    beat(sup, clock, "writer", "relay", "decision", "station")
    worker.restart_at = clock() - sup.config.pipeline.start_timeout_s - 1  # never came back
    assert not sup.healthy(clock())

    worker.restart_at = None
    worker.process = StandInProcess()
    beat(sup, clock)
    sup.stages["decision"].stats = {"open": 10_000}  # far more open containers than the line holds
    assert not sup.healthy(clock())


def _stuck_stage() -> None:
    """A stage that takes SIGTERM and never leaves its loop (forked by the test below)."""
    import signal
    import time

    from edge.supervisor import stacks_on_request

    stacks_on_request()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    while True:
        time.sleep(0.01)


def test_a_stage_that_will_not_stop_leaves_its_stack_in_the_log_and_is_killed(line, capfd, caplog):
    import multiprocessing
    import time

    sup, _, _ = line
    process = multiprocessing.get_context("fork").Process(target=_stuck_stage)
    process.start()
    stage = sup.stages["writer"]
    stage.process = process
    sup._receive = time.sleep  # no control socket in this test: waiting is all _receive does here
    deadline = time.monotonic() + 10
    while "ready" not in capfd.readouterr().out and time.monotonic() < deadline:
        time.sleep(0.05)  # the handler must be in place before the stop request
    process.terminate()
    sup._join(stage, 0.5)
    assert not process.is_alive() and process.exitcode == -9
    assert "writer did not stop in 0 s; killing it" in caplog.text
    stacks = capfd.readouterr().err
    assert "_stuck_stage" in stacks and "test_supervisor.py" in stacks  # where it hung, by function and file
