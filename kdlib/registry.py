"""A tiny name -> builder registry, so datasets, models, losses and setups are looked up by name."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator


class Registry:
    """Maps names to builders plus metadata; unknown names fail with the list of allowed ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable[..., Any]] = {}
        self._meta: Dict[str, dict] = {}

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = fn
            self._meta[name] = dict(meta)
            return fn

        return deco

    def check(self, name: str) -> str:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(sorted(self._items))}")
        return name

    def get(self, name: str) -> Callable[..., Any]:
        return self._items[self.check(name)]

    def meta(self, name: str) -> dict:
        return dict(self._meta[self.check(name)])

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
