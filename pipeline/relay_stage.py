"""The reject controller process: decisions in, pulses (or PLC lines) out, on time.

Pulses are scheduled on the monotonic clock: the process sleeps in ZeroMQ's poll until
shortly before the next due time, then spins the last SPIN_NS so that the pulse leaves
within a fraction of a millisecond of the due time. Which containers get one is
pipeline/pulses.py: every gated container is armed, a timely pass cancels its pulse, so
a container whose decision is not in by the ejector is rejected. A reject for an unarmed
container that arrives after it has passed the ejector is not fired (it would eject the
next container): it is an alarm, logged and counted. Each output is journalled against its container in
<data_dir>/relay/outputs.jsonl (rotated).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

import zmq

from pipeline import codec
from pipeline.pulses import MISSED, OVERRULED, REMEMBER, Pulse, PulseSchedule
from pipeline.relay import PtyPort, Relay, open_port, plc_line, write_name

log = logging.getLogger(__name__)

SPIN_NS = 2_000_000
CONFIRM_WINDOW_NS = 1_000_000_000
IDLE_EXIT_S = 0.3
ALARMS = {  # decisions that came too late for the ejector, and what that did to the container
    MISSED: "reject decided %.0f ms after it passed the ejector; NOT ejected",
    OVERRULED: "its pass came %.0f ms after the ejector had rejected it (fail-safe): a good container "
               "was thrown out",
}


def journal_logger(data_dir: Path) -> logging.Logger:
    folder = Path(data_dir) / "relay"
    folder.mkdir(parents=True, exist_ok=True)
    journal = logging.getLogger("edge.relay.journal")
    journal.propagate = False
    journal.setLevel(logging.INFO)
    journal.handlers.clear()
    handler = logging.handlers.RotatingFileHandler(folder / "outputs.jsonl", maxBytes=10 << 20, backupCount=5)
    handler.setFormatter(logging.Formatter("%(message)s"))
    journal.addHandler(handler)
    return journal


def run(ctx) -> None:
    from pipeline import metrics

    config = ctx.config
    cfg = config.reject
    dev = open_port(cfg.port, cfg.baudrate, cfg.low_latency, "port")
    write_name(config.data_dir, "relay", dev)
    confirm = None
    if cfg.confirm_port:
        confirm = open_port(cfg.confirm_port, cfg.baudrate, False, "confirm_port")
        write_name(config.data_dir, "confirm", confirm)
    relay = Relay(cfg, dev) if cfg.driver == "relay" else None
    lead_ns = int(config.line.relay_lead_ms * 1e6)
    pulse_ns = int(getattr(cfg, "pulse_ms", 0) * 1e6)
    journal = journal_logger(config.data_dir)
    inbox = ctx.endpoints.bind("relay_in", zmq.PULL)
    schedule = PulseSchedule(lead_ns)
    awaiting_confirm: list[tuple[int, int]] = []  # (fired_ns, seq)
    counts = {"decisions": 0, "pulses": 0, "failsafe": 0, "missed": 0, "overruled": 0, "lines": 0,
              "duplicates": 0, "bad": 0, "confirmed": 0, "unconfirmed": 0}
    seen: OrderedDict[tuple[int, int], None] = OrderedDict()  # decided containers
    closed_until = 0  # the relay is on until then (0: off)

    def record(kind: str, seq: int, **fields) -> None:
        journal.info(json.dumps({"kind": kind, "seq": seq,
                                 "utc": datetime.now(timezone.utc).isoformat(), **fields}))

    def handle(msg: dict) -> None:
        codec.require(msg, "seq", "t_gate_ns", "due_ns")
        key = (int(msg["seq"]), int(msg["t_gate_ns"]))
        now = time.monotonic_ns()
        if msg["kind"] == "arm":
            if relay is not None:
                schedule.arm(key, int(msg["due_ns"]), now)
            return
        codec.require(msg, "decision")
        if key in seen:
            counts["duplicates"] += 1
            log.warning("container %d: second decision ignored (one output per container)", key[0])
            return
        seen[key] = None
        if len(seen) > REMEMBER:
            seen.popitem(last=False)
        counts["decisions"] += 1
        if relay is None:  # PLC: tell it now, it times the ejector
            line = plc_line(cfg.message, key[0], msg["decision"], msg.get("reason", ""))
            dev.write(line)
            dev.flush()
            counts["lines"] += 1
            metrics.RELAY.labels("plc", msg["decision"]).inc()
            record("plc", key[0], decision=msg["decision"], line=line.decode(errors="replace").strip())
            return
        due = int(msg["due_ns"])
        outcome = schedule.decide(key, msg["decision"], due, now)
        alarm = ALARMS.get(outcome)
        if alarm:
            late_ms = (now - due) / 1e6
            counts[outcome] += 1
            metrics.RELAY.labels("pulse", outcome).inc()
            log.error("ALARM: container %d: " + alarm, key[0], late_ms)
            record(outcome, key[0], due_ns=due, late_ms=round(late_ms, 3))

    def fire(pulse: Pulse) -> None:
        nonlocal closed_until
        sent = time.monotonic_ns()
        if not closed_until:  # an overlapping pulse just stretches the one that is on
            relay.set(True)
        closed_until = sent + pulse_ns
        seq = pulse.key[0]
        error = sent - pulse.due_ns
        counts["pulses"] += 1
        metrics.RELAY.labels("pulse", "fired").inc()
        metrics.RELAY_ERROR.observe(error / 1e9)
        if pulse.failsafe:
            counts["failsafe"] += 1
            metrics.RELAY.labels("pulse", "failsafe").inc()
            log.error("container %d: no decision by the ejector: rejected (fail-safe)", seq)
        record("pulse", seq, due_ns=pulse.due_ns, sent_ns=sent, error_ms=round(error / 1e6, 3),
               failsafe=pulse.failsafe)
        if confirm is not None:
            awaiting_confirm.append((sent, seq))

    def next_output() -> int | None:
        """When the relay next has to switch: the earliest due pulse, or the end of this one."""
        times = [t for t in (schedule.next_due(), closed_until or None) if t is not None]
        return min(times, default=None)

    def check_confirms() -> None:
        lines = confirm.read_lines() if isinstance(confirm, PtyPort) else \
            [line for line in confirm.read_all().splitlines() if line.strip()]
        now = time.monotonic_ns()
        for _ in lines:
            if awaiting_confirm:
                _, seq = awaiting_confirm.pop(0)
                counts["confirmed"] += 1
                metrics.RELAY.labels("confirm", "confirmed").inc()
                record("confirmed", seq)
        while awaiting_confirm and now - awaiting_confirm[0][0] > CONFIRM_WINDOW_NS:
            _, seq = awaiting_confirm.pop(0)
            counts["unconfirmed"] += 1
            metrics.RELAY.labels("confirm", "unconfirmed").inc()
            log.error("ALARM: container %d: reject pulse fired but no ejection confirmed", seq)
            record("unconfirmed", seq)

    ctx.state = "ready"
    last_input = time.monotonic()
    while ctx.running or schedule or closed_until or time.monotonic() - last_input < IDLE_EXIT_S:
        nxt = next_output()
        wait_ms = 100 if nxt is None else max(0, min(100, (nxt - time.monotonic_ns() - SPIN_NS) // 1_000_000))
        if inbox.poll(wait_ms):
            for parts in codec.waiting(inbox):
                last_input = time.monotonic()
                try:
                    msg = codec.unpack(parts)
                    if msg["kind"] not in ("arm", "decision"):
                        raise ValueError(f"unexpected {msg['kind']} message")
                    handle(msg)
                except (ValueError, KeyError, TypeError) as exc:
                    counts["bad"] += 1
                    metrics.BAD.labels("relay", "malformed").inc()
                    log.warning("bad message for the reject controller (%s); ignored", exc)
        while (nxt := next_output()) is not None and nxt - time.monotonic_ns() <= SPIN_NS:
            while time.monotonic_ns() < nxt:
                pass
            due = schedule.next_due()
            if closed_until and (due is None or closed_until < due):
                relay.set(False)
                closed_until = 0
            else:
                fire(schedule.pop())
        if confirm is not None:
            check_confirms()
        metrics.DEPTH.labels("relay").set(len(schedule))
        ctx.beat(pending=len(schedule), port=getattr(dev, "name", cfg.port), **counts)
    if relay is not None:
        relay.set(False)
    ctx.beat(force=True, pending=0, **counts)
    inbox.close(linger=0)
    dev.close()
