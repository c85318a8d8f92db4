"""Registries: what exists (engines, answer kinds, parsers, metrics) is what registered itself.

Each extension is one module in its package (``xlspec/answers/``, ``xlspec/parsers/``,
``runtime/engines/``, ``runtime/metrics/defs/``) that calls ``REGISTRY.register(...)`` at import.  The
registry imports every module of its package the first time it is asked what it holds, so
the checker, the ``did you mean`` lists, the language reference in ``docs/`` and the report
all see the same set, and adding an extension touches no other file.

Extension modules are light to import (heavy libraries such as torch or numpy are imported
where they are used, see :mod:`xlspec.lazy`), so ``xlspec compile`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, filled by the modules of ``package``."""

    def __init__(self, what: str, package: str):
        self.what = what
        self.package = package
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, entry: T) -> T:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")

    def get(self, name: str) -> T | None:
        self._load()
        return self._entries.get(name)

    def __getitem__(self, name: str) -> T:
        entry = self.get(name)
        if entry is None:
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        return entry

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(sorted(self._entries.items()))

    def suggest(self, word: str) -> str | None:
        from .diagnostics import suggest

        return suggest(word, self.names())
