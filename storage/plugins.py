"""One registry for every pluggable part: camera drivers, gate drivers, runtimes, reject outputs.

A registry maps the name config.yaml gives (`driver: pylon`, `runtime: tensorrt`) to
"module:Class", imported on first use, so a line without pypylon or TensorRT never
imports them. A name that is not listed is a user error naming the known ones; a listed
module whose own import fails for a missing package says which package to install, never
"unknown". The config unions are checked against `names` by tests/test_plugins.py.

It lives in the bottom layer (docs/architecture.md) because every layer has such parts.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Plugins(Generic[T]):
    def __init__(self, what: str, entries: dict[str, str], error: type[Exception], install: str = "") -> None:
        """`what` names the kind in messages ("camera driver"); `error` is the owning package's
        user error; `install` is the hint for a missing package, e.g. "pip install glass-edge[camera]"."""
        self.what, self._entries, self._error, self._install = what, dict(entries), error, install

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def load(self, name: str) -> type[T]:
        """The class registered as `name`, its module imported now."""
        if name not in self._entries:
            raise self._error(f"unknown {self.what} {name!r}; known: {', '.join(self._entries)}")
        module, cls = self._entries[name].split(":")
        try:
            return getattr(importlib.import_module(module), cls)
        except ModuleNotFoundError as exc:
            if exc.name == module or module.startswith(f"{exc.name}."):
                raise  # the registry names a module that is not there: a bug, not the user's
            hint = f"; {self._install}" if self._install else ""
            raise self._error(f"{self.what} {name!r} needs the Python package {exc.name!r}, "
                              f"which is not installed{hint}") from None
