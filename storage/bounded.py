"""BoundedSet: the containers a stage has already handled, remembered up to a limit.

Every stage recognises a re-sent or late message by the container's key (announced,
decided, pulsed, charted). A line runs for months, so what it remembers is bounded:
past `max_size` keys the oldest one added is forgotten. A key may carry a value (the
decision stage keeps each container's decision to name it when a late view arrives).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedSet(Generic[K, V]):
    """The newest `max_size` keys added, oldest forgotten first (insertion order, not use)."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size {max_size}: must be at least 1")
        self.max_size = max_size
        self._items: OrderedDict[K, V | None] = OrderedDict()

    def add(self, key: K, value: V | None = None) -> bool:
        """Remember `key` (with `value`); False when it was remembered already.
        Adding a known key again replaces its value but not its age."""
        new = key not in self._items
        self._items[key] = value
        if len(self._items) > self.max_size:
            self._items.popitem(last=False)
        return new

    def get(self, key: K, default: V | None = None) -> V | None:
        return self._items.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)
