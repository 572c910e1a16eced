"""The `edge` command. Sub-commands live one per module in edge/commands/.

Each module there exposes `command` (a click command or group); adding a command is
adding a file. Errors a user can fix (each package's own exception type) end the
command with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

import edge.commands
from camera.errors import CameraError
from edge import __version__, logs
from edge.config import ConfigError
from engines.errors import EngineError
from pipeline.errors import PipelineError
from storage.errors import StorageError

USER_ERRORS = (ConfigError, CameraError, EngineError, PipelineError, StorageError)
log = logging.getLogger("edge")


class EdgeGroup(click.Group):
    """Loads a sub-command's module when it is used, and maps user errors to exit code 2.

    Lazily: every stage process of `edge run` imports this module again (multiprocessing's
    spawn re-imports the main module), and importing every command (torch among them) made a
    restarted reject controller take seconds to come back on a busy PC.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(info.name for info in pkgutil.iter_modules(edge.commands.__path__))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.list_commands(ctx):
            return None
        return importlib.import_module(f"edge.commands.{name}").command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=EdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge")
@click.option("-v", "--verbose", is_flag=True, help="Debug log output, libraries' (Alembic, ...) included.")
def main(verbose: bool) -> None:
    """Inspect glass containers on a production line: cameras, RTVP detector, reject relay."""
    logs.setup(logging.DEBUG if verbose else logging.INFO)


if __name__ == "__main__":
    main()
