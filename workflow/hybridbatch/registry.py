"""Named registries instead of if-chains: corpus formats and model sources register
themselves by name; a config names one, and a lookup of an unknown name says which
config key is wrong and what exists (as big_vision's `pp/registry.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator (or call) adding `name`; a second entry under one name is refused."""

        def add(entry: T) -> T:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self.entries[name] = entry
            return entry

        return add

    def lookup(self, name: str, key: str) -> T:
        """The entry called `name`; `key` is the config key that named it."""
        if name not in self.entries:
            raise ValueError(f"config key {key}: unknown {self.kind} {name!r} (known: {sorted(self.entries)})")
        return self.entries[name]

    def names(self) -> list[str]:
        return sorted(self.entries)
