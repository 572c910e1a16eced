"""The reject controller process: decisions in, pulses (or PLC lines) out, on time.

Pulses are scheduled on the monotonic clock: the process sleeps in ZeroMQ's poll until
shortly before the next due time, then spins the last SPIN_NS so that the pulse leaves
within a fraction of a millisecond of the due time. A decision that arrives after its
container has passed the ejector is not fired (it would eject the next container): it
is an alarm, logged and counted. Each output is journalled against its container in
<data_dir>/relay/outputs.jsonl (rotated).
"""

from __future__ import annotations

import heapq
import json
import logging
import logging.handlers
import time
from datetime import datetime, timezone
from pathlib import Path

import zmq

from pipeline import codec
from pipeline.relay import PtyPort, Relay, open_port, plc_line, write_name

log = logging.getLogger(__name__)

SPIN_NS = 2_000_000
CONFIRM_WINDOW_NS = 1_000_000_000
IDLE_EXIT_S = 0.3


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
    events: list[tuple[int, int, str, int]] = []  # (t_ns, order, "on"|"off", seq)
    order = 0
    seen: dict[tuple[int, int], int] = {}
    awaiting_confirm: list[tuple[int, int]] = []  # (fired_ns, seq)
    counts = {"decisions": 0, "pulses": 0, "missed": 0, "lines": 0, "duplicates": 0, "bad": 0,
              "confirmed": 0, "unconfirmed": 0}
    closed_until = 0

    def record(kind: str, seq: int, **fields) -> None:
        journal.info(json.dumps({"kind": kind, "seq": seq,
                                 "utc": datetime.now(timezone.utc).isoformat(), **fields}))

    def handle(msg: dict) -> None:
        nonlocal order
        codec.require(msg, "seq", "t_gate_ns", "due_ns", "decision")
        key = (int(msg["seq"]), int(msg["t_gate_ns"]))
        if key in seen:
            counts["duplicates"] += 1
            log.warning("container %d: second decision ignored (one output per container)", key[0])
            return
        seen[key] = 1
        if len(seen) > 100_000:
            seen.pop(next(iter(seen)))
        counts["decisions"] += 1
        if relay is None:  # PLC: tell it now, it times the ejector
            line = plc_line(cfg.message, key[0], msg["decision"], msg.get("reason", ""))
            dev.write(line)
            dev.flush()
            counts["lines"] += 1
            metrics.RELAY.labels("plc", msg["decision"]).inc()
            record("plc", key[0], decision=msg["decision"], line=line.decode(errors="replace").strip())
            return
        if msg["decision"] != "reject":
            return
        due = int(msg["due_ns"])
        now = time.monotonic_ns()
        if now > due + lead_ns:
            counts["missed"] += 1
            metrics.RELAY.labels("pulse", "missed").inc()
            log.error("ALARM: container %d: reject decided %.0f ms after it passed the ejector; NOT "
                      "ejected", key[0], (now - due) / 1e6)
            record("missed", key[0], due_ns=due, late_ms=round((now - due) / 1e6, 3))
            return
        order += 1
        heapq.heappush(events, (due, order, "on", key[0]))

    def fire(t_ns: int, action: str, seq: int) -> None:
        nonlocal closed_until, order
        if action == "on":
            sent = time.monotonic_ns()
            if sent < closed_until:  # previous pulse still on: stretch it
                closed_until = sent + pulse_ns
            else:
                relay.set(True)
                closed_until = sent + pulse_ns
            order += 1
            heapq.heappush(events, (closed_until, order, "off", seq))
            error = sent - t_ns
            counts["pulses"] += 1
            metrics.RELAY.labels("pulse", "fired").inc()
            metrics.RELAY_ERROR.observe(error / 1e9)
            record("pulse", seq, due_ns=t_ns, sent_ns=sent, error_ms=round(error / 1e6, 3))
            if confirm is not None:
                awaiting_confirm.append((sent, seq))
        elif time.monotonic_ns() >= closed_until:
            relay.set(False)

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
    while ctx.running or events or time.monotonic() - last_input < IDLE_EXIT_S:
        now = time.monotonic_ns()
        wait_ms = 100
        if events:
            wait_ms = max(0, min(100, (events[0][0] - now - SPIN_NS) // 1_000_000))
        if inbox.poll(wait_ms):
            for parts in codec.waiting(inbox):
                last_input = time.monotonic()
                try:
                    msg = codec.unpack(parts)
                    if msg["kind"] != "decision":
                        raise ValueError(f"unexpected {msg['kind']} message")
                    handle(msg)
                except (ValueError, KeyError, TypeError) as exc:
                    counts["bad"] += 1
                    metrics.BAD.labels("relay", "malformed").inc()
                    log.warning("bad message for the reject controller (%s); ignored", exc)
        while events and events[0][0] - time.monotonic_ns() <= SPIN_NS:
            t_ns, _, action, seq = heapq.heappop(events)
            while time.monotonic_ns() < t_ns:
                pass
            fire(t_ns, action, seq)
        if confirm is not None:
            check_confirms()
        metrics.DEPTH.labels("relay").set(len(events))
        ctx.beat(pending=len(events), port=getattr(dev, "name", cfg.port), **counts)
    if relay is not None:
        relay.set(False)
    ctx.beat(force=True, pending=0, **counts)
    inbox.close(linger=0)
    dev.close()
