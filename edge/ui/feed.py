"""The decision stream: one SUB socket on the decision stage's PUB, fanned out to browsers.

PUB never waits for a subscriber: when this process is slow or stopped, the decision
stage drops its copies for us (at the socket's high-water mark), so the line cannot
be slowed from here. Each browser gets its own small queue; a browser that falls
behind loses the oldest decisions, never anyone else's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import datetime, timezone

import zmq
import zmq.asyncio

from pipeline import codec
from pipeline.sockets import Endpoints

log = logging.getLogger(__name__)
CLIENT_QUEUE = 200  # decisions buffered per browser (20 s at 10 containers/s)


class DecisionFeed:
    def __init__(self, endpoints_config, data_dir, tally, recent: int) -> None:
        self.endpoints = Endpoints(endpoints_config, data_dir, ctx=zmq.asyncio.Context())
        self.tally = tally
        self.recent: deque[dict] = deque(maxlen=recent)  # the last rejects, newest last
        self.model_version: str | None = None
        self.last_decision: datetime | None = None
        self.clients: set[asyncio.Queue] = set()

    async def run(self) -> None:
        """Receive until cancelled (the app's shutdown)."""
        sock = self.endpoints.connect("decisions", zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        log.info("listening to decisions on %s", self.endpoints.url("decisions"))
        try:
            while True:
                parts = await sock.recv_multipart()
                try:
                    decision = codec.unpack(parts, kinds={"decision"})  # schema-checked, or refused
                except ValueError as exc:
                    log.warning("bad message on the decision stream (%s); ignored", exc)
                    continue
                self.accept(decision)
        finally:
            sock.close(linger=0)
            self.endpoints.close()

    def accept(self, decision: dict) -> None:
        decision["received_utc"] = datetime.now(timezone.utc).isoformat()
        self.tally.add(decision)
        self.last_decision = datetime.now(timezone.utc)
        if decision.get("model_version"):
            self.model_version = decision["model_version"]
        if decision["decision"] == "reject":
            self.recent.append(decision)
        for queue in self.clients:
            if queue.full():
                queue.get_nowait()  # this browser is behind: it loses its oldest decision
            queue.put_nowait(decision)

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=CLIENT_QUEUE)
        self.clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.clients.discard(queue)
