"""Log levels for the `edge` command and its stage processes.

The application's own packages log at INFO (what a person running a line wants to read);
libraries (Alembic's nine "Running upgrade" lines on every database open, urllib3, PIL,
matplotlib, ...) only at WARNING, unless `--verbose` asks for DEBUG from everyone.
"""

from __future__ import annotations

import logging

OWN_PACKAGES = ("edge", "camera", "pipeline", "engines", "storage", "bench")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: int = logging.INFO, fmt: str = FORMAT) -> None:
    """Own packages at `level`; every other logger at WARNING, or at DEBUG when `level` is."""
    logging.basicConfig(level=logging.DEBUG if level <= logging.DEBUG else logging.WARNING, format=fmt)
    for name in OWN_PACKAGES:
        logging.getLogger(name).setLevel(level)


def own_level() -> int:
    """The level `setup` gave the application's loggers (handed to each stage process)."""
    return logging.getLogger(OWN_PACKAGES[0]).getEffectiveLevel()
