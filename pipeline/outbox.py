"""A non-blocking sender with a bounded retry queue, for messages that must not be lost.

The decision stage must never block on a slow consumer (its deadlines keep running),
but a decision must not vanish either: when a consumer's ZeroMQ queue is at its HWM,
the message waits here and is retried on the next loop turn; only past `limit` waiting
messages is the oldest dropped, counted and logged as an alarm.
"""

from __future__ import annotations

import logging
from collections import deque

import zmq

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, sock: zmq.Socket, name: str, limit: int = 10_000) -> None:
        self.sock, self.name, self.limit = sock, name, limit
        self.waiting: deque[list] = deque()
        self.dropped = 0

    def send(self, parts: list) -> None:
        self.waiting.append(parts)
        self.flush()

    def flush(self) -> None:
        while self.waiting:
            try:
                self.sock.send_multipart(self.waiting[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self.waiting.popleft()
        while len(self.waiting) > self.limit:
            self.waiting.popleft()
            self.dropped += 1
            log.error("ALARM: %s is not taking messages; dropped one (%d so far)", self.name, self.dropped)
