"""The `edge` sub-commands: each module here exposes one click command or group named `command`.

Options that several commands share are defined once, here.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge.config import DEFAULT_PATH


def config_option(help: str = "The line's config file.") -> click.decorators.FC:
    """`--config PATH` (default ./config.yaml), passed to the command as `config_path`."""
    return click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_PATH,
                        show_default=True, help=help)
