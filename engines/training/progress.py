"""How far a running retrain is, in a small JSON file others can read.

`edge retrain` has the trainer rewrite `<data>/retrain/progress.json` atomically after every
step batch it reports; the operator station's Models page reads it. A reader never
sees half a file, and a file whose `pid` is no longer alive belongs to a run that died.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from storage.files import atomic_write

PROGRESS = Path("retrain") / "progress.json"  # under the data folder


@dataclass
class Progress:
    """One snapshot of a run: `state` is running, done, failed or stopped (time budget)."""

    state: str
    phase: str  # "train", "evaluate", "compare"
    step: int
    steps: int
    started: float  # time.time() at start
    updated: float
    eta_s: float | None = None
    message: str = ""
    version: str | None = None  # the package being made
    pid: int = 0

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.steps) if self.steps else 0.0


def write_progress(data_dir: Path, progress: Progress) -> None:
    """Replace the progress file (no fsync: it is rewritten often and only informs)."""
    path = Path(data_dir) / PROGRESS
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, fsync=False) as fh:
        json.dump(asdict(progress), fh)


def read_progress(data_dir: Path) -> Progress | None:
    """The last snapshot, None when no run has written one; a dead run's reads as failed."""
    try:
        progress = Progress(**json.loads((Path(data_dir) / PROGRESS).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if progress.state == "running" and not _alive(progress.pid):
        progress.state, progress.message = "failed", f"process {progress.pid} is gone"
    return progress


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


class ProgressFile:
    """The running side: one run's snapshots, rewritten at most every `every_s` seconds.

    A phase after training (evaluate, compare) keeps the last step count it was given,
    so the final snapshot still says how far training got.
    """

    def __init__(self, data_dir: Path, version: str | None, every_s: float = 1.0) -> None:
        self.data_dir, self.every_s = Path(data_dir), every_s
        self.started = self._last = time.time()
        self.version, self.pid = version, os.getpid()
        self.step = self.steps = 0

    def update(self, phase: str, step: int | None = None, steps: int | None = None, eta_s: float | None = None,
               state: str = "running", message: str = "", force: bool = False) -> None:
        now = time.time()
        self.step = self.step if step is None else step
        self.steps = self.steps if steps is None else steps
        if not force and state == "running" and now - self._last < self.every_s:
            return
        self._last = now
        step, steps = self.step, self.steps
        write_progress(self.data_dir, Progress(state=state, phase=phase, step=step, steps=steps,
                                               started=self.started, updated=now, eta_s=eta_s,
                                               message=message, version=self.version, pid=self.pid))
