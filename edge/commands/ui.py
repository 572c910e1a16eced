"""`edge ui`: the operator station, a web application run beside `edge run` (docs/operator.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from edge.commands import config_option
from edge.config import ConfigError, load_config

log = logging.getLogger(__name__)


def _beside(config_path: Path, path: Path | None) -> str | None:
    """TLS files are named relative to config.yaml, like every other path in it."""
    if path is None:
        return None
    path = path if path.is_absolute() else config_path.resolve().parent / path
    if not path.is_file():
        raise ConfigError(f"{config_path}: ui: {path} does not exist; fix ui.tls_cert / ui.tls_key")
    return str(path)


@click.command("ui")
@config_option("The line's config file (ui: section, data folder, database, decision stream).")
@click.option("--port", type=int, default=None, help="Override ui.port.")
def command(config_path: Path, port: int | None) -> None:
    """Serve the operator station: live decisions, containers, review and labelling, statistics, models."""
    import uvicorn

    from edge.ui.app import create_app

    config = load_config(config_path)
    ui = config.ui
    cert, key = _beside(config_path, ui.tls_cert), _beside(config_path, ui.tls_key)
    app = create_app(config)
    scheme = "https" if cert else "http"
    log.info("operator station on %s://%s:%d/", scheme, ui.address, port or ui.port)
    uvicorn.run(app, host=ui.address, port=port or ui.port, ssl_certfile=cert, ssl_keyfile=key,
                log_level="warning", access_log=False, timeout_graceful_shutdown=2)
