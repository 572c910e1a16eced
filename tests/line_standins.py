"""Stand-in engines for tests that make a killed worker's two paths happen on purpose (no
tests here). They are passed to the supervisor as `engine_factory`, so stage processes
import this module: run the line with tests/ on PYTHONPATH."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.soak import MarkEngine, serve, write_config


class HoldingEngine(MarkEngine):
    """Hangs on a marked view while <data_dir>/hold exists, after saying so in <data_dir>/holding:
    the test kills the worker with that view in its hands."""

    def __init__(self, config=None) -> None:
        self.data = Path(config.data_dir)

    def infer(self, images):
        if (self.data / "hold").exists() and any(image[0, 0, 0] == 255 for image in images):
            (self.data / "holding").touch()
            while True:
                time.sleep(1)
        return super().infer(images)


class SlowStartEngine(MarkEngine):
    """Loads until <data_dir>/hold_start is removed: the worker is not connected meanwhile."""

    def __init__(self, config=None) -> None:
        data = Path(config.data_dir)
        while (data / "hold_start").exists():
            (data / "starting").touch()
            time.sleep(0.01)


if __name__ == "__main__":  # python tests/line_standins.py DATA CONTAINERS ENGINE
    data, containers, engine = Path(sys.argv[1]), int(sys.argv[2]), globals()[sys.argv[3]]
    serve(write_config(data, rate=4, workers=1), containers, rate=4, engine=engine)
