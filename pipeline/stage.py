"""What every stage process shares: config, logging, signals, sockets, heartbeats.

A stage is started by the supervisor through multiprocessing (spawn: the process entry is
`edge.supervisor.run_stage`, which sets up logging and the config, then calls `main`),
runs its loop while `ctx.running`, and reports a heartbeat (state + counters) to the
supervisor at most every HEARTBEAT_S from that loop: a loop that hangs stops the
heartbeats, which stops systemd's watchdog pings.

SIGTERM asks a stage to drain and exit 0; SIGINT is ignored (Ctrl-C reaches the whole
process group, and the supervisor decides the order of the shutdown). The stage's own
thread blocks SIGTERM: a signal taken there interrupts the ZeroMQ poll the stage waits in,
and pyzmq (27.3) restarts an interrupted poll with its whole timeout, so a stop request
delayed the reject controller's next pulse by up to one poll (seen: 49 ms, past the 30 ms
lead; tests/test_relay_timing.py).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import zmq

from pipeline import codec
from pipeline.sockets import Endpoints

HEARTBEAT_S = 0.5
EXIT_USER_ERROR = 3  # a stage that cannot start because of config/hardware: do not restart

STAGES = {
    "station": "pipeline.feed",
    "worker": "pipeline.worker",
    "decision": "pipeline.decision_stage",
    "relay": "pipeline.relay_stage",
    "writer": "pipeline.writer",
}


# Stages that keep time and do little work run SCHED_FIFO where allowed (what, priority).
REALTIME = {"decision": ("decision stage", 5), "relay": ("reject controller", 10)}


class StageContext:
    def __init__(self, name: str, config: Any, options: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.options = options
        self._stopped = False
        self.state = "starting"
        self.endpoints = Endpoints(config.pipeline, config.data_dir)
        self.control = self.endpoints.connect("control", zmq.PUSH)
        self._last_beat = 0.0
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # This (main) thread never takes SIGTERM, so it never interrupts the stage's poll:
        # another thread takes it and the handler runs here at the next Python line, or,
        # when every thread blocks it, it stays pending until `running` reads it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def _on_term(self, *_: Any) -> None:
        self._stopped = True

    @property
    def running(self) -> bool:
        if not self._stopped and signal.SIGTERM in signal.sigpending():
            signal.sigwait({signal.SIGTERM})
            self._stopped = True
        return not self._stopped

    def beat(self, force: bool = False, **stats: Any) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        try:
            self.control.send(codec.pack("beat", stage=self.name, pid=os.getpid(), state=self.state,
                                         t_ns=time.monotonic_ns(), stats=stats), zmq.NOBLOCK)
        except zmq.Again:
            pass  # supervisor away: its watchdog notices the silence, not us

    def factory(self, key: str, default: Callable) -> Callable:
        """A stand-in (tests, bench) passed by the supervisor, else the real part."""
        return self.options.get(key) or default

    def close(self) -> None:
        self.control.close(linger=500)
        self.endpoints.close()


def realtime_priority(what: str, priority: int) -> bool:
    """Ask for SCHED_FIFO so a loaded PC cannot delay a deadline or a pulse.

    Needs CAP_SYS_NICE or a LimitRTPRIO (packaging/edge.service sets it). Used by the
    stages that keep time and do little work: the decision stage and the reject controller.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        logging.getLogger(__name__).info("%s runs at real-time priority (SCHED_FIFO %d)", what, priority)
        return True
    except (PermissionError, OSError, AttributeError) as exc:
        logging.getLogger(__name__).warning(
            "no real-time priority for the %s (%s); its timing depends on the machine's load", what, exc)
        return False


def _die_with_parent() -> None:
    """If the supervisor is killed outright, its stages follow (Linux PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def main(name: str, config: Any, options: dict[str, Any]) -> None:
    """Run stage NAME in this process; the caller (edge/supervisor.py) has set up logging
    and validated the application's config, whose sections the stages read."""
    _die_with_parent()
    kind = name.split("-")[0]
    module = importlib.import_module(STAGES[kind])
    if kind in REALTIME:  # before any thread exists: ZeroMQ's I/O thread inherits the policy
        realtime_priority(*REALTIME[kind])
    ctx = StageContext(name, config, options)
    try:
        module.run(ctx)
    except Exception as exc:
        from camera.errors import CameraError
        from engines.errors import EngineError
        from pipeline.errors import PipelineError
        from storage.errors import StorageError

        if isinstance(exc, (PipelineError, CameraError, EngineError, StorageError)):
            logging.getLogger(name).error("ALARM: %s cannot start: %s", name, exc)
            ctx.state = "failed"
            ctx.beat(force=True, error=str(exc)[:1000])  # the decoder refuses longer free text
            ctx.close()
            os._exit(EXIT_USER_ERROR)
        raise
    ctx.close()
