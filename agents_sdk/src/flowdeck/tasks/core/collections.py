"""Collection tasks: gather task results into a list, tuple, set or dict. The functional API uses them
when a task argument is a collection holding tasks (``total([a, b, c])``)."""

from __future__ import annotations

from typing import Any

from flowdeck.core.task import Task


def _ordered(kwargs: dict[str, Any], prefix: str) -> list[Any]:
    items = [(int(k[len(prefix):]), v) for k, v in kwargs.items() if k.startswith(prefix)]
    return [v for _, v in sorted(items, key=lambda kv: kv[0])]


class List(Task):
    """Collects its inputs ``item_0``, ``item_1`` … into a list."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "List")
        super().__init__(**kwargs)

    def run(self, **items: Any) -> list[Any]:
        return _ordered(items, "item_")


class Tuple(List):
    """Collects its inputs into a tuple."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "Tuple")
        super().__init__(**kwargs)

    def run(self, **items: Any) -> tuple[Any, ...]:  # type: ignore[override]
        return tuple(_ordered(items, "item_"))


class Set(List):
    """Collects its inputs into a set."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "Set")
        super().__init__(**kwargs)

    def run(self, **items: Any) -> set[Any]:  # type: ignore[override]
        return set(_ordered(items, "item_"))


class Dict(Task):
    """Builds a dict from inputs ``key_0``/``value_0``, ``key_1``/``value_1`` …"""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "Dict")
        super().__init__(**kwargs)

    def run(self, **items: Any) -> dict[Any, Any]:
        return dict(zip(_ordered(items, "key_"), _ordered(items, "value_"), strict=True))


__all__ = ["List", "Tuple", "Set", "Dict"]
