"""Benchmark scripts; run each from the repository root as a module: python -m bench.<name>.

`free_port` is here, not in a script, so that the scripts and the tests share it (tests may
import bench; bench never imports tests) without importing any script's dependencies.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a line's endpoints in a benchmark or test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
