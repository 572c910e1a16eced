"""The decision stage process: results in, decisions out to relay, storage and observers."""

from __future__ import annotations

import logging
import time
from collections import deque

import zmq

from pipeline import codec
from pipeline.decision import DecisionBook
from pipeline.journal import DecisionJournal
from pipeline.outbox import Outbox
from pipeline.sockets import run_dir

log = logging.getLogger(__name__)


def build_book(config) -> DecisionBook:
    return DecisionBook(
        line_id=config.line.id, travel_time_ms=config.line.travel_time_ms,
        relay_lead_ms=config.line.relay_lead_ms, late_result=config.line.late_result,
        # The engine returns only detections at or above their class threshold (config, else
        # the package's, else the default): each one counts. Config thresholds are applied
        # again so that a stand-in or older engine cannot pass a low score.
        thresholds=dict(config.engine.thresholds), default_threshold=0.0,
        cameras={cam.view: cam.id for cam in config.cameras})


def run(ctx) -> None:
    from pipeline import metrics

    config = ctx.config
    book = build_book(config)
    journal = DecisionJournal(run_dir(config.data_dir) / "decision.journal")
    results = ctx.endpoints.bind("results", zmq.PULL)
    observers = ctx.endpoints.bind("decisions", zmq.PUB)
    outputs = [Outbox(ctx.endpoints.connect("relay_in", zmq.PUSH), "reject controller"),
               Outbox(ctx.endpoints.connect("storage_in", zmq.PUSH), "storage writer")]
    poller = zmq.Poller()
    poller.register(results, zmq.POLLIN)
    rejects: dict[str, int] = {}
    passes, bad, ended = 0, 0, False
    latencies: deque[float] = deque(maxlen=500)
    # Default to reject: the timed relay pulses every gated container unless a pass reaches it
    # in time (pipeline/pulses.py), so a starved or dead decision stage still rejects. A PLC
    # times its own ejector and is told each decision only.
    arm = config.line.late_result == "reject" and config.reject.driver == "relay"

    def opened(seq: int, t_gate_ns: int) -> None:
        journal.opened(seq, t_gate_ns)
        if arm:
            outputs[0].send([codec.pack("arm", seq=seq, t_gate_ns=t_gate_ns,
                                        due_ns=book.open[(seq, t_gate_ns)].due_ns)])

    def publish(decision: dict) -> None:
        nonlocal passes
        journal.done(decision["seq"], decision["t_gate_ns"])
        parts = [codec.pack("decision", **decision)]
        for out in outputs:
            out.send(parts)
        observers.send_multipart(parts, zmq.NOBLOCK)
        metrics.DECISIONS.labels(decision["decision"], decision["reason"]).inc()
        metrics.LATENCY.observe(decision["latency_ms"] / 1e3)
        for v in decision["views"]:
            metrics.FRAMES.labels("decision", v["outcome"], v["reason"] or "").inc()
        latencies.append(decision["latency_ms"])
        if decision["decision"] == "reject":
            rejects[decision["reason"]] = rejects.get(decision["reason"], 0) + 1
            log.info("container %d: REJECT (%s) in %.0f ms", decision["seq"], decision["reason"],
                     decision["latency_ms"])
        else:
            passes += 1
            log.debug("container %d: pass in %.0f ms", decision["seq"], decision["latency_ms"])

    if journal.lost:  # this stage died with containers open: reject them now, fail-safe
        now = time.monotonic_ns()
        book.crash("decision", now)
        for seq, t_gate_ns in journal.lost:
            book.gate(seq, t_gate_ns, now)
        for decision in book.flush(now):
            decision["reason"] = "decision restarted"
            decision["decision"] = "reject"
            log.error("container %d was open when the decision stage died: rejected", decision["seq"])
            publish(decision)
    ctx.state = "ready"
    while ctx.running:
        now = time.monotonic_ns()
        deadline = book.next_deadline()
        wait_ms = 100 if deadline is None else max(0, min(100, (deadline - now) // 1_000_000 + 1))
        if poller.poll(wait_ms):
            for parts in codec.waiting(results):
                try:
                    msg = codec.unpack(parts)
                    kind = msg["kind"]
                    if kind == "view":
                        codec.require(msg, "seq", "t_gate_ns", "view")
                        before = dict(book.counts)
                        key = (int(msg["seq"]), int(msg["t_gate_ns"]))
                        known = key in book.open
                        decision = book.view(msg, time.monotonic_ns())
                        if not known and key in book.open:
                            opened(*key)
                        if decision:
                            publish(decision)
                        for key, reason in (("late_views", "late result"), ("unknown", "unknown container"),
                                            ("duplicate", "duplicate result")):
                            if book.counts[key] > before[key]:
                                metrics.BAD.labels("decision", reason).inc()
                                if key == "late_views":
                                    metrics.FRAMES.labels("decision", "late", "after decision").inc()
                    elif kind == "gate":
                        codec.require(msg, "seq", "t_gate_ns")
                        key = (int(msg["seq"]), int(msg["t_gate_ns"]))
                        known = key in book.open
                        book.gate(*key, time.monotonic_ns())
                        if not known and key in book.open:
                            opened(*key)
                    elif kind == "crash":
                        book.crash(msg.get("stage", "?"), int(msg.get("at_ns", time.monotonic_ns())))
                        log.warning("%s crashed: its in-flight views will be rejected at their deadline",
                                    msg.get("stage"))
                    elif kind == "end":
                        ended = True
                        log.info("station finished; deciding the %d containers in flight", len(book.open))
                    else:
                        raise ValueError(f"unexpected {kind} message on the results socket")
                except (ValueError, TypeError, KeyError) as exc:
                    bad += 1
                    metrics.BAD.labels("decision", "malformed").inc()
                    log.warning("bad message on results (%s); ignored", exc)
        for decision in book.expire(time.monotonic_ns()):
            publish(decision)
        for out in outputs:
            out.flush()
        metrics.DEPTH.labels("decision").set(len(book.open))
        if ended and not book.open:
            ctx.state = "drained"
        lat = sorted(latencies)
        ctx.beat(open=len(book.open), decided=book.counts["decided"], passes=passes, rejects=rejects,
                 late_views=book.counts["late_views"], unknown=book.counts["unknown"], bad=bad,
                 waiting=sum(len(o.waiting) for o in outputs),
                 p50_ms=lat[len(lat) // 2] if lat else None,
                 p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None)
    for decision in book.flush(time.monotonic_ns()):
        log.warning("container %d decided at shutdown with views outstanding", decision["seq"])
        publish(decision)
    stop = time.monotonic() + 5
    while any(o.waiting for o in outputs) and time.monotonic() < stop:
        for out in outputs:
            out.flush()
        time.sleep(0.01)
    lat = sorted(latencies)
    ctx.beat(force=True, open=0, decided=book.counts["decided"], passes=passes, rejects=rejects,
             p50_ms=lat[len(lat) // 2] if lat else None,
             p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None)
    journal.close()
    for sock in (results, observers):
        sock.close(linger=0)
    for out in outputs:
        out.sock.close(linger=5000)
