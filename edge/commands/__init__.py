"""The `edge` sub-commands: each module here exposes one click command or group named `command`.

Options that several commands share are defined once, here.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge.config import DEFAULT_PATH, load_config
from engines.config import EngineConfig
from engines.errors import EngineError


def config_option(help: str = "The line's config file.") -> click.decorators.FC:
    """`--config PATH` (default ./config.yaml), passed to the command as `config_path`."""
    return click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_PATH,
                        show_default=True, help=help)


def engine_setup(config_path: Path) -> tuple[EngineConfig, Path]:
    """The engine section and data folder of config.yaml; the defaults when the default
    ./config.yaml is absent (a model at hand, no line), an error when a named file is."""
    if Path(config_path).is_file():
        config = load_config(config_path)
        return config.engine, Path(config.data_dir)
    if Path(config_path) != DEFAULT_PATH:
        raise EngineError(f"{config_path}: no such config file")
    return EngineConfig(), Path("data")
