"""The decision stage process: results in, decisions out to relay, storage and observers.

The decisions themselves are pipeline/decision.py's DecisionBook (pure logic). This
stage adds what makes them durable (pipeline/journal.py's DecisionJournal, written
before anything is sent):

- every decision stays in the journal until the storage writer acknowledges its commit
  (`ack`); unacknowledged ones are re-sent every RESEND_S, at once when a restarted
  writer asks (`sync`), and each second while the stage stops (the writer stops after it):
  a killed writer or a full disk loses no record, and a stop soon after a failed commit
  leaves none to the next run;
- a restarted reject controller asks (`sync`) and gets the arms of every open container
  and every recent decision again, then a `sync` back that says "that was all";
- a restarted decision stage rejects the containers it had open, re-sends its recent and
  unacknowledged decisions, and opens the gates the station logged that it never heard of;
- its totals (decided, passes, rejects by reason) survive its restarts through the journal;
  a new run of the line (`edge run`, a service start) counts from zero.

Moulds taken out (pipeline/mould_rejects.py: config and `edge mould reject`) are looked
up about once a second and given to the book, which rejects their containers (`mould`).
"""

from __future__ import annotations

import logging
import time
from collections import deque

import zmq

from pipeline import codec
from pipeline.decision import DecisionBook
from pipeline.journal import DecisionJournal, GateLog, Key
from pipeline.mould_rejects import MouldRejects
from pipeline.outbox import Outbox
from pipeline.sockets import run_dir

log = logging.getLogger(__name__)

MOULDS_CHECK_S = 1.0  # how often the mould rejects file is looked at
RESEND_S = 10.0  # a decision the writer has not acknowledged after this long is sent again
RESEND_BATCH = 500  # at most this many re-sent per second (a writer back from an outage catches up)
KEEP_RECENT_S = 60.0  # decisions re-sent to a restarted reject controller: ejector time this recent
UNACKED_LIMIT = 100_000  # beyond this many unacknowledged decisions the oldest is dropped (ALARM)


def build_book(config) -> DecisionBook:
    return DecisionBook(
        line_id=config.line.id, travel_time_ms=config.line.travel_time_ms,
        relay_lead_ms=config.line.relay_lead_ms, late_result=config.line.late_result,
        # The engine returns only detections at or above their class threshold (config, else
        # the package's, else the default): each one counts. Config thresholds are applied
        # again so that a stand-in or older engine cannot pass a low score.
        thresholds=dict(config.engine.thresholds), default_threshold=0.0,
        cameras={cam.view: cam.id for cam in config.cameras})


class DecisionStage:
    def __init__(self, ctx) -> None:
        from pipeline import metrics

        self.ctx, self.metrics = ctx, metrics
        config = ctx.config
        self.book = build_book(config)
        self.moulds = MouldRejects(config.data_dir, config.line.reject_moulds)
        self.book.reject_moulds = self.moulds.current()
        self._moulds_check = time.monotonic()
        self.journal = DecisionJournal(run_dir(config.data_dir) / "decision.journal", int(KEEP_RECENT_S * 1e9))
        if not ctx.options.get("restarted"):  # a new `edge run`: its status counts its own containers
            self.journal.count_from_zero()
        self.gates_path = run_dir(config.data_dir) / "gates.log"
        self.results = ctx.endpoints.bind("results", zmq.PULL)
        self.observers = ctx.endpoints.bind("decisions", zmq.PUB)
        self.relay = Outbox(ctx.endpoints.connect("relay_in", zmq.PUSH), "reject controller")
        self.writer = Outbox(ctx.endpoints.connect("storage_in", zmq.PUSH), "storage writer")
        # Default to reject: the timed relay pulses every gated container unless a pass reaches it
        # in time (pipeline/pulses.py), so a starved or dead decision stage still rejects. A PLC
        # times its own ejector and is told each decision only.
        self.arm = config.line.late_result == "reject" and config.reject.driver == "relay"
        self.sent_at: dict[Key, float] = {}  # when each unacknowledged decision last went to the writer
        self.latencies: deque[float] = deque(maxlen=500)
        self.bad = 0
        self.ended = False
        self._resend_check = 0.0
        metrics.ready("decision")

    # -- restart -------------------------------------------------------------------------
    def recover(self) -> None:
        """Pick up what a previous run of this stage left: nothing decided is lost or doubled."""
        now = time.monotonic_ns()
        for key, decision in self.journal.decisions.items():
            self.book.remember(key, decision["decision"])
        for decision in self.journal.recent(now):  # the reject controller may not have had them
            self.relay.send([codec.pack("decision", **decision)])
        for decision in self.journal.unacked():
            self._to_writer(decision)
        lost = list(self.journal.lost)
        if self.journal.same_boot:  # gates the station logged whose message may have died with us
            lost += self.adopt_logged_gates(now, set(lost))
        if lost:
            self.book.crash("decision", now)
            self.reject_now(lost, now, "decision restarted", to_relay=self.journal.same_boot)

    def adopt_logged_gates(self, now: int, known: set[Key]) -> list[Key]:
        """Gates in the station's log that never reached us (their message died in a killed
        station's or decision stage's socket): opened if still in time, else returned."""
        known = known | set(self.book.open) | set(self.book.decided)
        oldest = now - int(KEEP_RECENT_S * 1e9) - self.book.travel_ns
        late = []
        for key in GateLog.read(self.gates_path):
            if key in known or not oldest <= key[1] <= now:
                continue
            if key[1] + self.book.deadline_offset_ns > now:  # still in time: decided as usual
                self.book.gate(*key, now)
                self.opened(key)
                log.warning("container %d: its gate message was lost; taken from the station's gate log", key[0])
            else:
                late.append(key)
        return late

    def reject_now(self, keys: list[Key], now: int, reason: str, to_relay: bool = True) -> None:
        """Fail-safe: containers whose views can no longer be trusted to come are rejected at once."""
        for key in keys:
            self.book.gate(*key, now)
        for decision in self.book.decide_now(keys, now):
            decision["reason"] = reason
            decision["decision"] = "reject"
            log.error("container %d: %s: rejected", decision["seq"], reason)
            self.publish(decision, to_relay=to_relay)

    # -- inputs --------------------------------------------------------------------------
    def handle(self, msg: dict) -> None:
        kind, now = msg["kind"], time.monotonic_ns()
        if kind == "view":
            before = dict(self.book.counts)
            key = (msg["seq"], msg["t_gate_ns"])
            known = key in self.book.open
            decision = self.book.view(msg, now)
            if not known and key in self.book.open:
                self.opened(key)
            if decision:
                self.publish(decision)
            for count, reason in (("late_views", "late result"), ("unknown", "unknown container"),
                                  ("duplicate", "duplicate result")):
                if self.book.counts[count] > before[count]:
                    self.metrics.BAD.labels("decision", reason).inc()
                    if count == "late_views":
                        self.metrics.FRAMES.labels("decision", "late", "after decision").inc()
        elif kind == "gate":
            key = (msg["seq"], msg["t_gate_ns"])
            known = key in self.book.open
            self.book.gate(*key, now, section=msg["section"], cavity=msg["cavity"])
            if not known and key in self.book.open:
                self.opened(key)
        elif kind == "ack":
            for seq, t_gate_ns in msg["keys"]:
                if self.journal.ack((seq, t_gate_ns)):
                    self.sent_at.pop((seq, t_gate_ns), None)
        elif kind == "sync":
            self.sync(msg["stage"], msg["pid"], now)
        elif kind == "crash":
            self.book.crash(msg["stage"], msg["at_ns"])
            log.warning("%s crashed: its in-flight views will be rejected at their deadline", msg["stage"])
            if msg["stage"] == "station":  # gate messages that died with it are in its gate log
                late = self.adopt_logged_gates(now, set())
                if late:
                    self.reject_now(late, now, "station restarted")
        elif kind == "end":
            self.ended = True
            log.info("station finished; deciding the %d containers in flight", len(self.book.open))

    def sync(self, stage: str, pid: int, now: int) -> None:
        """A restarted peer asks for what it may have lost when it died."""
        if stage == "relay":
            if self.arm:
                for key, container in self.book.open.items():
                    self.relay.send([codec.pack("arm", seq=key[0], t_gate_ns=key[1], due_ns=container.due_ns)])
            recent = self.journal.recent(now)
            for decision in recent:
                self.relay.send([codec.pack("decision", **decision)])
            self.relay.send([codec.pack("sync", stage="decision", pid=pid)])
            log.info("reject controller (pid %d) restarted: re-sent %d open arms and %d recent decisions",
                     pid, len(self.book.open) if self.arm else 0, len(recent))
        elif stage == "writer":
            unacked = self.journal.unacked()
            for decision in unacked:
                self._to_writer(decision)
            if unacked:
                log.info("storage writer (pid %d) restarted: re-sent %d unacknowledged decisions", pid, len(unacked))

    # -- outputs -------------------------------------------------------------------------
    def opened(self, key: Key) -> None:
        self.journal.opened(key)
        if self.arm:
            self.relay.send([codec.pack("arm", seq=key[0], t_gate_ns=key[1], due_ns=self.book.open[key].due_ns)])

    def publish(self, decision: dict, to_relay: bool = True) -> None:
        self.journal.decided(decision)  # first: from here on, nothing can lose it
        parts = [codec.pack("decision", **decision)]
        if to_relay:
            self.relay.send(parts)
        self.sent_at[(decision["seq"], decision["t_gate_ns"])] = time.monotonic()
        self.writer.send(parts)
        try:
            self.observers.send_multipart(parts, zmq.NOBLOCK)
        except zmq.Again:
            pass  # an observer that does not keep up misses decisions, never slows us
        self.metrics.DECISIONS.labels(decision["decision"], decision["reason"]).inc()
        if decision["reason"] == "mould":
            self.metrics.MOULD_REJECTS.labels(f"{decision['section']}-{decision['cavity']}").inc()
        self.metrics.LATENCY.observe(decision["latency_ms"] / 1e3)
        for v in decision["views"]:
            self.metrics.FRAMES.labels("decision", v["outcome"], v["reason"] or "").inc()
        self.latencies.append(decision["latency_ms"])
        if decision["decision"] == "reject":
            log.info("container %d: REJECT (%s) in %.0f ms", decision["seq"], decision["reason"],
                     decision["latency_ms"])
        else:
            log.debug("container %d: pass in %.0f ms", decision["seq"], decision["latency_ms"])

    def _to_writer(self, decision: dict) -> None:
        self.sent_at[(decision["seq"], decision["t_gate_ns"])] = time.monotonic()
        self.writer.send([codec.pack("decision", **decision)])

    def resend_unacked(self, after_s: float = RESEND_S) -> None:
        """Decisions the writer has not acknowledged in `after_s`: send them again (bounded)."""
        now = time.monotonic()
        if now - self._resend_check < 1.0 or self.writer.waiting:
            return
        self._resend_check = now
        unacked = self.journal.unacked()
        while len(unacked) > UNACKED_LIMIT:
            oldest = unacked.pop(0)
            key = (oldest["seq"], oldest["t_gate_ns"])
            self.journal.ack(key)  # given up: no record for it will be written
            self.sent_at.pop(key, None)
            log.error("ALARM: container %d: the storage writer has not committed it and %d more wait; "
                      "its record is dropped", key[0], UNACKED_LIMIT)
        due = [d for d in unacked if now - self.sent_at.get((d["seq"], d["t_gate_ns"]), 0) >= after_s]
        for decision in due[:RESEND_BATCH]:
            self._to_writer(decision)
        if due:
            log.warning("re-sent %d decisions the storage writer has not acknowledged", min(len(due), RESEND_BATCH))

    def check_moulds(self) -> None:
        """Pick up `edge mould reject|release` (a file in the data folder), about once a second."""
        now = time.monotonic()
        if now - self._moulds_check >= MOULDS_CHECK_S:
            self._moulds_check = now
            self.book.reject_moulds = self.moulds.current()

    # -- loop ----------------------------------------------------------------------------
    def _receive(self, wait_ms: int) -> None:
        if not self.results.poll(wait_ms):
            return
        for parts in codec.waiting(self.results):
            try:
                msg = codec.unpack(parts, ("view", "gate", "crash", "end", "ack", "sync"), time.monotonic_ns())
            except codec.BadMessage as exc:
                self.bad += 1
                self.metrics.BAD.labels("decision", exc.reason).inc()
                log.warning("bad message on results (%s); ignored", exc)
                continue
            try:
                self.handle(msg)
            except Exception:  # a message must never end the stage that decides for the ejector
                self.bad += 1
                self.metrics.BAD.labels("decision", "invalid").inc()
                log.exception("a %s message could not be handled; ignored", msg["kind"])

    def _beat(self, force: bool = False) -> None:
        lat = sorted(self.latencies)
        totals = self.journal.totals
        self.ctx.beat(force=force, open=len(self.book.open), decided=totals["decided"],
                      passes=totals["passes"], rejects=totals["rejects"],
                      late_views=self.book.counts["late_views"], unknown=self.book.counts["unknown"],
                      bad=self.bad, waiting=len(self.relay.waiting) + len(self.writer.waiting),
                      unacked=len(self.sent_at), journal_ok=not self.journal.degraded,
                      p50_ms=lat[len(lat) // 2] if lat else None,
                      p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None)

    def run(self) -> None:
        ctx = self.ctx
        self.recover()
        ctx.state = "ready"
        while ctx.running:
            deadline = self.book.next_deadline()
            wait_ms = 100 if deadline is None else max(0, min(100, (deadline - time.monotonic_ns()) // 1_000_000 + 1))
            self._receive(wait_ms)
            for decision in self.book.expire(time.monotonic_ns()):
                self.publish(decision)
            self.resend_unacked()
            self.check_moulds()
            self.relay.flush()
            self.writer.flush()
            if self.journal.due_for_compaction():
                self.journal.compact(time.monotonic_ns())
            self.metrics.DEPTH.labels("decision").set(len(self.book.open))
            if self.ended and not self.book.open:
                ctx.state = "drained"
            self._beat()
        self.stop()

    def stop(self) -> None:
        for decision in self.book.flush(time.monotonic_ns()):
            log.warning("container %d decided at shutdown with views outstanding", decision["seq"])
            self.publish(decision)
        stop = time.monotonic() + 5  # acks of the last decisions, and our queues drained
        while (self.relay.waiting or self.writer.waiting or self.journal.unacked()) and time.monotonic() < stop:
            self._receive(10)
            self.resend_unacked(after_s=1.0)  # a commit that failed lately (a full disk): its decisions go again now
            self.relay.flush()
            self.writer.flush()
        self._beat(force=True)
        self.journal.close()
        for sock in (self.results, self.observers):
            sock.close(linger=0)
        for out in (self.relay, self.writer):
            out.sock.close(linger=5000)


def run(ctx) -> None:
    DecisionStage(ctx).run()
