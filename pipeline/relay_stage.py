"""The reject controller process: decisions in, pulses (or PLC lines) out, on time.

Pulses are scheduled on the monotonic clock: the process sleeps in ZeroMQ's poll until
shortly before the next due time, then spins the last SPIN_NS so that the pulse leaves
within a fraction of a millisecond of the due time. Which containers get one is
pipeline/pulses.py: every gated container is armed, a timely pass cancels its pulse, so
a container whose decision is not in by the ejector is rejected. A reject that arrives
after its container passed the ejector is not fired (it would eject the next container):
it is an alarm naming the container.

A late pulse always has a cause in the audit journal, so it can be told from a fault of
this code. Either the controller learnt of the pulse after its due time and fired it at
once: it came up after that time (a restart), or the arm or reject arrived after it
("arrived late"). Or the controller was kept off the CPU while it had work (preempted,
a vCPU its host held, a write the disk held up), or woken late from a wait (wall time
minus the thread's CPU time, less the wait it asked for): a "stalled" record with
when it happened, counted (edge_relay_stalls_total) and logged. A stall longer than
SPIN_NS can make a pulse late; on a shared or virtualised CPU expect a few, on a line PC
none.

Surviving its own crash: every arm, decision, pulse and alarm is journalled
(<data_dir>/relay/state.journal) before the next message is read. A restarted controller
rebuilds its schedule from it, fires what is still ahead on time, raises an alarm for
every reject whose ejector time passed while it was down, and asks the decision stage
to re-send its open arms and recent decisions (`sync`): those lost in its socket when it
died arrive again, and duplicates are recognised. Every output and alarm is also written
to the audit journal <data_dir>/relay/outputs.jsonl (pipeline/audit.py) and, as an event row, to
the database.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import zmq

from pipeline import codec
from pipeline.audit import audit_logger
from pipeline.journal import PulseJournal
from pipeline.outbox import Outbox
from pipeline.pulses import (ALARMED, ARM, FIRED, MISSED, OVERRULED, PASS, REJECT, SCHEDULED, Key, Pulse,
                             PulseSchedule)
from pipeline.relay import OUTPUTS, PtyPort, open_port, write_name

log = logging.getLogger(__name__)

SPIN_NS = 2_000_000
STALL_LOG_EVERY_S = 60.0  # stalls are journalled each; the log says so at most once a minute
CONFIRM_WINDOW_NS = 1_000_000_000
IDLE_EXIT_S = 0.3
SYNC_RETRY_S = 1.0  # ask the decision stage again until it answers
SYNC_GIVE_UP_S = 5.0  # then alarm the overdue arms without its answer
KEEP_NS = 600 * 1_000_000_000  # journal events kept this long past their ejector time
NOT_EJECTED = "not ejected"  # an alarm: a container that needed a pulse got none
ALARMS = {  # decisions that came too late for the ejector, and what that did to the container
    MISSED: "reject decided %.0f ms after it passed the ejector; NOT ejected",
    OVERRULED: "its pass came %.0f ms after the ejector had rejected it (fail-safe): a good container "
               "was thrown out",
}


class StallWatch:
    """Time this thread spent off the CPU that it did not ask for: wall time minus the
    thread's CPU time since the last check, less the wait it asked the OS for."""

    def __init__(self) -> None:
        self.mark()

    def mark(self) -> None:
        self.wall_ns, self.cpu_ns = time.monotonic_ns(), time.thread_time_ns()

    def off_cpu(self, asked_ns: int = 0) -> tuple[int, int]:
        """(when the interval began, ns off the CPU in it beyond asked_ns); starts the next."""
        began, cpu = self.wall_ns, self.cpu_ns
        self.mark()
        return began, (self.wall_ns - began) - (self.cpu_ns - cpu) - asked_ns


class RejectController:
    """One reject output (timed relay or PLC) fed by the decision stage, durable across kills."""

    def __init__(self, ctx) -> None:
        from pipeline import metrics

        self.ctx, self.metrics = ctx, metrics
        config = ctx.config
        cfg = config.reject
        self.lead_ns = int(config.line.relay_lead_ms * 1e6)
        self.dev = open_port(cfg.port, cfg.baudrate, cfg.low_latency, "port")
        write_name(config.data_dir, "relay", self.dev)
        self.confirm = None
        if cfg.confirm_port:
            self.confirm = open_port(cfg.confirm_port, cfg.baudrate, False, "confirm_port")
            write_name(config.data_dir, "confirm", self.confirm)
        self.audit = audit_logger(config.data_dir)
        self.state = PulseJournal(Path(config.data_dir) / "relay" / "state.journal", KEEP_NS)
        restored = PulseSchedule.restore(self.lead_ns, self.state.events, time.monotonic_ns())
        self.output = OUTPUTS.load(cfg.driver)(cfg, self.dev, restored.schedule)
        self.seen = restored.seen  # containers whose decision was handled, before the restart too
        self.overdue = restored.overdue
        self.inbox = ctx.endpoints.bind("relay_in", zmq.PULL)
        self.to_decision = Outbox(ctx.endpoints.connect("results", zmq.PUSH), "decision stage")
        self.to_writer = Outbox(ctx.endpoints.connect("storage_in", zmq.PUSH), "storage writer")
        self.awaiting_confirm: list[tuple[int, int]] = []  # (fired_ns, seq)
        self.counts = {"decisions": 0, "pulses": 0, "failsafe": 0, "missed": 0, "overruled": 0,
                       "lines": 0, "duplicates": 0, "bad": 0, "confirmed": 0, "unconfirmed": 0,
                       "not_ejected": 0, "stalls": 0, "restored": self.output.pending()}
        self.watch = StallWatch()
        self._stall_logged = 0.0
        self.started = time.monotonic()
        self.synced = False
        self._asked = 0.0
        metrics.ready("relay")
        for key, due in restored.missed:  # its ejector time passed while no controller was up
            self.alarm(NOT_EJECTED, key, due, "reject decided, but the reject controller was down at the "
                                              "ejector: NOT ejected")
        if self.counts["restored"]:
            log.warning("restarted with %d pulses still ahead; they fire on time", self.counts["restored"])

    # -- inputs --------------------------------------------------------------------------
    def handle(self, msg: dict) -> None:
        kind = msg["kind"]
        if kind == "sync":  # the decision stage has re-sent everything we may have lost
            if msg.get("pid") == os.getpid():
                self._synced()
            return
        key = (msg["seq"], msg["t_gate_ns"])
        due, now = msg["due_ns"], time.monotonic_ns()
        if kind == "arm":
            if self.output.arm(key, due, now):
                self.state.add(ARM, key, due)
                self._arrived_late("arm", key, due, now)
            return
        if key in self.seen:
            self.counts["duplicates"] += 1
            log.debug("container %d: decision already handled (re-sent or duplicate)", key[0])
            return
        self.seen.add(key)
        self.overdue.pop(key, None)
        self.counts["decisions"] += 1
        decision = msg["decision"]
        outcome = self.output.decide(key, decision, msg.get("reason") or "", due, now,
                                     section=msg.get("section"), cavity=msg.get("cavity"))
        self.state.add(REJECT if decision == "reject" else PASS, key, due)
        if outcome == SCHEDULED:
            self._arrived_late("reject", key, due, now)
        if not self.output.timed:
            self.counts["lines"] += 1
            self.metrics.RELAY.labels("plc", decision).inc()
            self.record("plc", key[0], decision=decision, line=self.output.last_line.decode(errors="replace").strip())
            return
        alarm = ALARMS.get(outcome)
        if alarm:
            late_ms = (now - due) / 1e6
            self.counts[outcome] += 1
            self.alarm(outcome, key, due, alarm % late_ms, late_ms=round(late_ms, 3))

    def _arrived_late(self, what: str, key: Key, due_ns: int, now_ns: int) -> None:
        """A pulse scheduled after its due time (but within relay_lead_ms) leaves at once, late:
        journal that its arm or reject reached the controller late (e.g. across its restart)."""
        if now_ns > due_ns:
            self.record("arrived late", key[0], message=what, due_ns=due_ns, at_ns=now_ns,
                        late_ms=round((now_ns - due_ns) / 1e6, 3))

    def _synced(self) -> None:
        if not self.synced:
            log.info("decision stage re-sent its open arms and recent decisions")
        self.synced = True
        self._alarm_overdue()

    def _alarm_overdue(self) -> None:
        """Armed containers whose ejector time passed while we were down, with no decision since."""
        for key, due in list(self.overdue.items()):
            self.alarm(NOT_EJECTED, key, due, "no decision and no fail-safe pulse: the reject controller was "
                                              "down at the ejector; NOT ejected")
        self.overdue.clear()

    # -- outputs -------------------------------------------------------------------------
    def fire(self, pulse: Pulse, sent_ns: int) -> None:
        seq = pulse.key[0]
        error = sent_ns - pulse.due_ns
        self.state.add(FIRED, pulse.key, pulse.due_ns, pulse.failsafe)
        self.counts["pulses"] += 1
        self.metrics.RELAY.labels("pulse", "fired").inc()
        self.metrics.relay_error(error / 1e9)
        if pulse.failsafe:
            self.counts["failsafe"] += 1
            self.metrics.RELAY.labels("pulse", "failsafe").inc()
            log.error("container %d: no decision by the ejector: rejected (fail-safe)", seq)
        self.record("pulse", seq, due_ns=pulse.due_ns, sent_ns=sent_ns, error_ms=round(error / 1e6, 3),
                    failsafe=pulse.failsafe)
        if self.confirm is not None:
            self.awaiting_confirm.append((sent_ns, seq))

    def alarm(self, kind: str, key: Key, due_ns: int, text: str, **fields) -> None:
        """Log, count, journal and store an alarm that names the container."""
        if kind == NOT_EJECTED:
            self.counts["not_ejected"] += 1
        self.metrics.RELAY.labels("pulse", kind).inc()
        log.error("ALARM: container %d: %s", key[0], text)
        self.state.add(ALARMED, key, due_ns)
        self.record(kind, key[0], due_ns=due_ns, **fields)
        self.to_writer.send([codec.pack("alarm", seq=key[0], t_gate_ns=key[1], alarm=kind, detail=text)])

    def check_stall(self, asked_ns: int = 0) -> None:
        """Journal, count and log a stall since the last check (see the module docstring)."""
        began, off_ns = self.watch.off_cpu(asked_ns)
        if off_ns < SPIN_NS:
            return
        self.counts["stalls"] += 1
        self.metrics.RELAY_STALLS.inc()
        self.record("stalled", None, from_ns=began, to_ns=self.watch.wall_ns, ms=round(off_ns / 1e6, 3))
        if time.monotonic() - self._stall_logged >= STALL_LOG_EVERY_S:
            self._stall_logged = time.monotonic()
            log.warning("the reject controller was kept off the CPU for %.1f ms (a starved or shared CPU, or a "
                        "write the disk held up): pulses due then leave late; each stall is in relay/outputs.jsonl",
                        off_ns / 1e6)

    def record(self, kind: str, seq: int | None, **fields) -> None:
        self.audit.info(json.dumps({"kind": kind, "seq": seq, "utc": datetime.now(timezone.utc).isoformat(),
                                    **fields}))

    def check_confirms(self) -> None:
        confirm = self.confirm
        lines = confirm.read_lines() if isinstance(confirm, PtyPort) else \
            [line for line in confirm.read_all().splitlines() if line.strip()]
        now = time.monotonic_ns()
        for _ in lines:
            if self.awaiting_confirm:
                _, seq = self.awaiting_confirm.pop(0)
                self.counts["confirmed"] += 1
                self.metrics.RELAY.labels("confirm", "confirmed").inc()
                self.record("confirmed", seq)
        while self.awaiting_confirm and now - self.awaiting_confirm[0][0] > CONFIRM_WINDOW_NS:
            _, seq = self.awaiting_confirm.pop(0)
            self.counts["unconfirmed"] += 1
            self.metrics.RELAY.labels("confirm", "unconfirmed").inc()
            log.error("ALARM: container %d: reject pulse fired but no ejection confirmed", seq)
            self.record("unconfirmed", seq)

    # -- loop ----------------------------------------------------------------------------
    def _ask_sync(self) -> None:
        now = time.monotonic()
        if self.synced or now - self._asked < SYNC_RETRY_S:
            return
        if self.overdue and now - self.started > SYNC_GIVE_UP_S:
            log.warning("the decision stage did not answer in %.0f s", SYNC_GIVE_UP_S)
            self._alarm_overdue()
        self._asked = now
        self.to_decision.send([codec.pack("sync", stage="relay", pid=os.getpid())])

    def _receive(self, wait_ms: int) -> bool:
        got = False
        self.check_stall()  # the work since the last wait
        ready = self.inbox.poll(wait_ms)
        self.check_stall(wait_ms * 1_000_000)  # woken later than asked (a message wakes it earlier)
        if ready:
            for parts in codec.waiting(self.inbox):
                self._fire_due()  # a burst of messages (a sync, a flood of garbage) must not hold a pulse back
                got = True
                try:
                    msg = codec.unpack(parts, ("arm", "decision", "sync"), time.monotonic_ns())
                except codec.BadMessage as exc:
                    self.counts["bad"] += 1
                    self.metrics.BAD.labels("relay", exc.reason).inc()
                    log.warning("bad message for the reject controller (%s); ignored", exc)
                    continue
                try:
                    self.handle(msg)
                except (OSError, ValueError) as exc:  # e.g. a serial write timing out: keep going
                    self.counts["bad"] += 1
                    self.metrics.BAD.labels("relay", "invalid").inc()
                    log.exception("a %s message could not be handled (%s)", msg["kind"], exc)
        return got

    def _fire_due(self) -> None:
        while (nxt := self.output.next_time()) is not None and nxt - time.monotonic_ns() <= SPIN_NS:
            while time.monotonic_ns() < nxt:
                pass
            sent = time.monotonic_ns()
            pulse = self.output.tick(sent)
            if pulse is not None:
                self.fire(pulse, sent)
            while self.output.too_late:
                late = self.output.too_late.pop()
                late_ms = (sent - late.due_ns) / 1e6
                self.alarm(NOT_EJECTED, late.key, late.due_ns, f"pulse due {late_ms:.0f} ms ago could not be "
                           "fired in time (the reject controller was starting or starved): NOT ejected",
                           late_ms=round(late_ms, 3))

    def run(self) -> None:
        ctx = self.ctx
        ctx.state = "ready"
        self.record("started", None, ready_ns=time.monotonic_ns(), pid=os.getpid(),
                    restored=self.counts["restored"], not_ejected=self.counts["not_ejected"])
        last_input = time.monotonic()
        self.watch.mark()  # stalls count from here, not from the start-up's file reads
        while ctx.running or self.output.busy() or time.monotonic() - last_input < IDLE_EXIT_S:
            self._ask_sync()
            nxt = self.output.next_time()
            wait_ms = 100 if nxt is None else max(0, min(100, (nxt - time.monotonic_ns() - SPIN_NS) // 1_000_000))
            if self._receive(wait_ms):
                last_input = time.monotonic()
            self._fire_due()
            if self.confirm is not None:
                self.check_confirms()
            self.to_decision.flush()
            self.to_writer.flush()
            self.state.compact_if_due(time.monotonic_ns())
            self.metrics.DEPTH.labels("relay").set(self.output.pending())
            ctx.beat(pending=self.output.pending(), port=getattr(self.dev, "name", ctx.config.reject.port),
                     journal_ok=not self.state.degraded, **self.counts)
        self.output.close()
        ctx.beat(force=True, pending=0, **self.counts)
        self.state.close()
        self.inbox.close(linger=0)
        for out in (self.to_decision, self.to_writer):
            out.sock.close(linger=1000)
        self.dev.close()


def run(ctx) -> None:
    RejectController(ctx).run()
