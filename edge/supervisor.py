"""`edge run`'s supervisor: starts the stage processes, watches them, stops them in order.

Start: writer, reject controller, decision stage, workers; once all report ready (the
engine is loaded, the relay port is open, the database is there) the station starts,
and only then does systemd hear READY=1. A stage that cannot start (a user error: exit
code 3) fails the whole start with its alarm; the line never runs half-built.

Watch: a stage that dies is restarted; the reject controller, the decision stage and the
station at once (they keep the ejector's and the gate's time) unless they died before
their first heartbeat, the others with exponential back-off (0.5 s doubling to 30 s,
reset after a minute of good running). The decision stage is told, so
the containers whose views died with it are rejected with reason "worker crashed" at
their deadline instead of waiting. A running stage whose heartbeats stop for
`pipeline.stall_s` is killed and restarted; a starting one has `pipeline.start_timeout_s`
until its first heartbeat (a loaded PC starts a process slowly). systemd's watchdog is
pinged while every stage beats or is being restarted in time and the decision stage's
open containers stay bounded, so a hung line is restarted by systemd.

Stop (SIGTERM, Ctrl-C, or --containers N reached): the station stops taking
containers, the decision stage decides everything in flight, then decision, relay,
workers and writer exit in that order, each draining its input first. Exit code 0.
"""

from __future__ import annotations

import faulthandler
import fcntl
import json
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from edge import logs
from edge.systemd import Notifier
from pipeline import codec, metric_files
from pipeline.errors import PipelineError
from pipeline.sockets import Endpoints, run_dir
from pipeline import stage as stage_process
from pipeline.stage import EXIT_USER_ERROR
from storage.files import Outage, atomic_write

log = logging.getLogger(__name__)


def run_stage(name: str, config_json: dict[str, Any], options: dict[str, Any]) -> None:
    """A stage process's entry (multiprocessing target): logging and the config are the
    application's, so they are set up here, and the stage itself runs in pipeline/stage.py."""
    from edge.config import AppConfig

    logs.setup(options.get("log_level", logging.INFO),
               f"%(asctime)s %(levelname)s {name}[%(process)d] %(name)s: %(message)s")
    stacks_on_request()
    stage_process.main(name, AppConfig.model_validate(config_json), options)


def stacks_on_request() -> None:
    """SIGUSR1 writes every thread's stack to stderr (the journal): the supervisor asks a
    stage that will not stop for them before killing it, so the log says where it hung."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


BACKOFF_START_S, BACKOFF_MAX_S, BACKOFF_RESET_S = 0.5, 30.0, 60.0
IMMEDIATE = ("relay", "decision", "station")  # restarted first and at once: the ejector and the gate do not wait
START_TIMEOUT_S = 300.0
EXTEND_EVERY_S, EXTEND_BY_S = 10.0, 60.0  # EXTEND_TIMEOUT_USEC while starting (TimeoutStartSec=120)
STATUS_EVERY_S = 5.0


@dataclass
class Stage:
    name: str
    process: Any = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_START_S
    restart_at: float | None = None
    last_beat: float = 0.0
    state: str = "stopped"
    stats: dict = field(default_factory=dict)
    stopping: bool = False
    error: str | None = None
    beaten: bool = False  # a heartbeat came since the last spawn: judged by stall_s from then on
    carried: dict = field(default_factory=dict)  # counters of earlier incarnations (status sums)

    @property
    def kind(self) -> str:
        return self.name.split("-")[0]

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class Supervisor:
    def __init__(self, config, containers: int | None = None, options: dict | None = None,
                 echo: Callable[[str], None] = log.info, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` (seconds) times heartbeats, start grace and restarts: tests pass their own."""
        self.config = config
        self.clock = clock
        self.options = dict(options or {})
        self.options["containers"] = containers
        self.echo = echo
        self.notifier = Notifier()
        self.run_dir = run_dir(config.data_dir)
        self.stages: dict[str, Stage] = {}
        self.shutdown_requested = False
        self.station_done = False
        self._mp = mp.get_context("spawn")
        self._config_json = config.model_dump(mode="json")
        self._last_status = 0.0
        self._last_ping = 0.0
        self._views = (0, clock())
        self._late_seen = 0
        self._bad_control = 0
        self._pids = Outage(self.run_dir / "stages.json", "it names stale pids until the disk has room", log)

    # -- public ----------------------------------------------------------------------------
    def run(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self.run_dir / "edge.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PipelineError(f"{self.config.data_dir}: another `edge run` uses this data folder") from None
        # --containers N counts this run's gate events, across station restarts (pipeline/feed.py).
        (self.run_dir / "first_seq").unlink(missing_ok=True)
        self._prepare_metrics()
        self.endpoints = Endpoints(self.config.pipeline, self.config.data_dir)
        self.control = self.endpoints.bind("control", zmq.PULL)
        self.to_decision = self.endpoints.connect("results", zmq.PUSH)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._start_line()
            self._watch()
            self._stop_line()
        finally:
            for stage in self.stages.values():
                if stage.alive():
                    stage.process.kill()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.control.close(0)
            self.to_decision.close(0)
            self.endpoints.close()
            lock.close()
        self.echo(self.status_line(final=True))
        return 0

    def total(self, stage: Stage, key: str) -> int:
        """A counter of a stage summed over its restarts."""
        return int(stage.stats.get(key, 0) or 0) + int(stage.carried.get(key, 0))

    def status_line(self, final: bool = False) -> str:
        d = self.stages.get("decision")
        stats = d.stats if d else {}
        rejects = stats.get("rejects", {})  # the decision stage's totals survive its restarts
        decided = stats.get("decided", 0)
        inferred = sum(self.total(s, "inferred") for s in self.stages.values() if s.kind == "worker")
        views, since = self._views
        now = self.clock()
        rate = (inferred - views) / max(now - since, 1e-3)
        if not final:
            self._views = (inferred, now)
        by_reason = ", ".join(f"{k} {v}" for k, v in sorted(rejects.items())) or "none"
        p50, p99 = stats.get("p50_ms"), stats.get("p99_ms")
        lat = f"{p50:.0f}/{p99:.0f} ms" if p50 is not None else "-"
        dropped = self.total(self.stages["station"], "dropped") if "station" in self.stages else 0
        head = "done" if final else "line"
        return (f"{head}: {decided} containers, {sum(rejects.values())} rejects ({by_reason}), "
                f"{rate:.1f} views/s, latency p50/p99 {lat}, dropped {dropped}, "
                f"restarts {sum(s.restarts for s in self.stages.values())}")

    # -- start -----------------------------------------------------------------------------
    def _prepare_metrics(self) -> None:
        """Multiprocess metrics: the folder is emptied and named before any metric exists."""
        folder = self.run_dir / "metrics"
        folder.mkdir(parents=True, exist_ok=True)
        for path in folder.glob("*.db"):
            path.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        metric_files.keep_spares(folder)
        from pipeline import metrics

        metrics.ready("supervisor")
        exposure = self.config.metrics.exposure()
        if exposure:
            log.warning("%s", exposure)
        try:
            metrics.serve(self.config.metrics.address)
        except OSError as exc:
            raise PipelineError(f"metrics.address = {self.config.metrics.address}: cannot listen ({exc}); "
                                "choose a free port") from None

    def _start_line(self) -> None:
        names = ["writer", "relay", "decision"] + [f"worker-{i}" for i in range(self.config.pipeline.workers)]
        for name in names:
            self.stages[name] = Stage(name)
            self._spawn(self.stages[name])
        self._await_ready(names)
        self.stages["station"] = Stage("station")
        self._spawn(self.stages["station"])
        self._await_ready(["station"])
        status = f"inspecting: {self.config.line.speed_cpm:g} containers/min, {self.config.pipeline.workers} workers"
        self.notifier.ready(status)
        self.echo(f"line ready; {status}; metrics on http://{self.config.metrics.address}/metrics")

    def _spawn(self, stage: Stage) -> None:
        for key, value in stage.stats.items():  # keep what the previous incarnation counted
            if isinstance(value, int) and not isinstance(value, bool):
                stage.carried[key] = stage.carried.get(key, 0) + value
        stage.stats, stage.beaten = {}, False
        options = dict(self.options, log_level=logs.own_level(),
                       restarted=stage.restarts > 0)
        stage.process = self._mp.Process(target=run_stage, args=(stage.name, self._config_json, options),
                                         name=stage.name)
        stage.process.start()
        stage.started, stage.state, stage.restart_at, stage.last_beat = self.clock(), "starting", None, self.clock()
        self._write_pids()
        log.info("started %s (pid %d)", stage.name, stage.process.pid)

    def _write_pids(self) -> None:
        """run/stages.json names each stage's pid for tools, rewritten at each (re)start. A full
        disk delays it (retried with each status line), never a restart."""
        pids = {s.name: s.process.pid for s in self.stages.values() if s.process is not None}
        try:
            with atomic_write(self._pids.path, fsync=False) as fh:
                json.dump(pids, fh)
        except OSError as exc:
            self._pids.failed(exc)
            return
        self._pids.ended()

    def _await_ready(self, names: list[str]) -> None:
        end = time.monotonic() + START_TIMEOUT_S
        extended = 0.0
        while True:
            self._receive(0.1)
            if time.monotonic() - extended >= EXTEND_EVERY_S:  # a TensorRT build can take minutes:
                extended = time.monotonic()  # systemd waits while stages are still starting
                self.notifier.extend_timeout(EXTEND_BY_S)
            if self.shutdown_requested:
                raise PipelineError("stopped during start-up")
            for name in names:
                stage = self.stages[name]
                if not stage.alive() and stage.state not in ("ready", "done"):
                    code = stage.process.exitcode
                    why = stage.error or f"exit code {code}"
                    raise PipelineError(f"{name} failed to start: {why}" +
                                        ("" if code == EXIT_USER_ERROR else "; see the log above"))
            if all(self.stages[n].state in ("ready", "done", "drained") for n in names):
                return
            if time.monotonic() > end:
                slow = [n for n in names if self.stages[n].state == "starting"]
                raise PipelineError(f"{', '.join(slow)} not ready after {START_TIMEOUT_S:.0f} s")

    # -- watch -----------------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        if not self.shutdown_requested:
            log.info("%s: stopping: no new containers, finishing those in flight",
                     signal.Signals(signum).name)
        self.shutdown_requested = True

    def _receive(self, timeout_s: float) -> None:
        if not self.control.poll(int(timeout_s * 1000)):
            return
        while True:
            try:
                parts = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = codec.unpack(parts, ("beat",), time.monotonic_ns())
            except codec.BadMessage as exc:
                from pipeline import metrics

                metrics.BAD.labels("supervisor", exc.reason).inc()
                self._bad_control += 1
                if self._bad_control <= 10 or self._bad_control % 1000 == 0:
                    log.warning("bad message on the control socket (%s); ignored (%d so far)", exc,
                                self._bad_control)
                continue
            stage = self.stages.get(msg["stage"])
            if stage is None or stage.process is None or msg["pid"] != stage.process.pid:
                continue
            stage.last_beat, stage.state, stage.beaten = self.clock(), msg["state"], True
            stage.stats = msg["stats"]
            error = stage.stats.get("error")
            stage.error = error if isinstance(error, str) else stage.error

    def _watch(self) -> None:
        while not self.shutdown_requested:
            self._receive(0.1)
            now = self.clock()
            self._tend(now)
            self._health(now)
            if now - self._last_status >= STATUS_EVERY_S:
                self._last_status = now
                metric_files.keep_spares(self.run_dir / "metrics")
                if self._pids.active:
                    self._write_pids()
                line = self.status_line()
                self.echo(line)
                self.notifier.status(line)
                self._warn_overload()

    def _tend(self, now: float) -> None:
        """One look at every stage: restart what is due, kill what is silent, schedule the
        restart of what died (the gate's and the ejector's stages first and at once)."""
        from pipeline import metrics

        for stage in sorted(self.stages.values(), key=lambda s: s.kind not in IMMEDIATE):
            if stage.restart_at is not None:
                if now >= stage.restart_at:
                    stage.restarts += 1
                    self._spawn(stage)
                continue
            if stage.alive():
                if self._silent(stage, now):
                    log.error("ALARM: %s %s for %.0f s; killing it for a restart", stage.name,
                              "silent" if stage.beaten else "not started", now - stage.last_beat)
                    stage.process.kill()
                continue
            code = stage.process.exitcode
            metrics.process_gone(stage.process.pid)
            if stage.kind == "station" and code == 0:
                self.station_done = True
                log.info("station finished (%s containers)", self.options["containers"] or "all")
                self.shutdown_requested = True
                return
            metrics.RESTARTS.labels(stage.kind).inc()
            if now - stage.started > BACKOFF_RESET_S:
                stage.backoff = BACKOFF_START_S
            # The gate and the ejector do not wait: those stages come back at once, unless
            # they die as fast as they start (a cable pulled), which must not spin.
            wait = 0.0 if stage.kind in IMMEDIATE and stage.beaten else stage.backoff
            log.error("ALARM: %s (pid %d) died with exit code %s; restarting in %.1f s", stage.name,
                      stage.process.pid, code, wait)
            self.to_decision.send(codec.pack("crash", stage=stage.name, at_ns=time.monotonic_ns()),
                                  zmq.NOBLOCK)
            stage.restart_at, stage.state = now + wait, "restarting"
            if wait:
                stage.backoff = min(stage.backoff * 2, BACKOFF_MAX_S)

    def _warn_overload(self) -> None:
        """Late-result rejects rising: the system, not the glass, is failing. Say so."""
        late = self.stages["decision"].stats.get("rejects", {}).get("late result", 0)
        if late > self._late_seen:
            log.warning("OVERLOAD: %d containers rejected as 'late result' in the last %.0f s: inference "
                        "does not keep up with the line (lower line.speed_cpm, add workers or a GPU)",
                        late - self._late_seen, STATUS_EVERY_S)
        self._late_seen = late

    def _silent(self, stage: Stage, now: float) -> bool:
        """No heartbeat for stall_s since the last one, or for start_timeout_s since the spawn."""
        limit = self.config.pipeline.stall_s if stage.beaten else self.config.pipeline.start_timeout_s
        return now - stage.last_beat > limit

    def healthy(self, now: float) -> bool:
        """Every stage beats (or is being restarted within its limits), and the decision
        stage's open containers stay within what the line can have in flight."""
        for stage in self.stages.values():
            if stage.restart_at is not None:
                if now - stage.restart_at > self.config.pipeline.start_timeout_s:
                    return False
            elif not stage.alive() or self._silent(stage, now):
                return False
        decision = self.stages["decision"]
        in_flight = self.config.line.travel_time_ms / (1e3 * self.config.line.period_s) + 3
        return not decision.beaten or int(decision.stats.get("open", 0)) <= in_flight * 2

    def _health(self, now: float) -> None:
        interval = self.notifier.watchdog_interval()
        if interval and now - self._last_ping >= interval and self.healthy(now):
            self.notifier.watchdog()
            self._last_ping = now

    # -- stop ------------------------------------------------------------------------------
    def _stop_line(self) -> None:
        self.notifier.stopping("finishing the containers in flight")
        station = self.stages["station"]
        if station.alive():
            self._terminate(station, 15)
        stopped_at = time.monotonic()
        limit = stopped_at + self.config.line.travel_time_ms / 1e3 + 10
        decision = self.stages["decision"]
        while time.monotonic() < limit:
            self._receive(0.1)
            if (decision.last_beat > stopped_at + 0.3 and decision.stats.get("open", 1) == 0
                    and decision.stats.get("waiting", 0) == 0):
                break
        else:
            log.warning("containers still in flight after the deadline; deciding them now")
        # Workers last but the writer: every decision is made, so no process exits beside
        # the reject controller while it still has pulses to fire.
        for kinds in (("decision",), ("relay",), ("worker",), ("writer",)):
            group = [s for s in self.stages.values() if s.kind in kinds]
            for stage in group:
                stage.stopping = True
                if stage.alive():
                    stage.process.terminate()
            for stage in group:
                self._join(stage, 30)
                self._receive(0)

    def _terminate(self, stage: Stage, timeout: float) -> None:
        stage.stopping = True
        stage.process.terminate()
        self._join(stage, timeout)

    def _join(self, stage: Stage, timeout: float) -> None:
        end = time.monotonic() + timeout
        while stage.alive() and time.monotonic() < end:
            self._receive(0.05)
        if stage.alive():
            log.error("%s did not stop in %.0f s; killing it (its stacks follow)", stage.name, timeout)
            try:
                os.kill(stage.process.pid, signal.SIGUSR1)
                stage.process.join(1)
            except ProcessLookupError:
                pass  # it went after all
            stage.process.kill()
            stage.process.join(5)
