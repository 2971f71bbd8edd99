"""Annotations for task arguments (Prefect 1's ``prefect.utilities.edges``).

``add.map(x=numbers, y=unmapped(10))``: map over ``numbers``, pass ``10`` whole to every child.
``add.map(flatten(list_of_lists))``: map over the concatenation of the inner lists.
``add(x=mapped(numbers), y=1)``: same as ``add.map(x=numbers, y=unmapped(1))``.
"""

from __future__ import annotations

from typing import Any


class EdgeAnnotation:
    """Base class of the argument annotations; ``.value`` is the wrapped task or constant."""

    __slots__ = ("value",)
    annotations: dict[str, bool] = {}

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(EdgeAnnotation):  # noqa: N801 — Prefect 1 spelling
    """Pass this argument whole to every mapped child."""

    __slots__ = ()
    annotations = {"mapped": False}


class mapped(EdgeAnnotation):  # noqa: N801 — Prefect 1 spelling
    """Map over this argument (in a plain call, making the task mapped)."""

    __slots__ = ()
    annotations = {"mapped": True}


class flatten(EdgeAnnotation):  # noqa: N801 — Prefect 1 spelling
    """Flatten this argument (a list of lists) by one level before mapping over it."""

    __slots__ = ()
    annotations = {"mapped": True, "flattened": True}


def unwrap(value: Any, default_mapped: bool) -> tuple[Any, bool, bool]:
    """``(value, mapped, flattened)`` with every annotation layer removed (``unmapped(flatten(x))`` …)."""
    is_mapped = default_mapped
    flattened = False
    seen: dict[str, bool] = {}
    while isinstance(value, EdgeAnnotation):
        for key, flag in value.annotations.items():
            seen.setdefault(key, flag)  # the outermost annotation wins
        value = value.value
    if "mapped" in seen:
        is_mapped = seen["mapped"]
    if seen.get("flattened"):
        flattened = True
    return value, is_mapped, flattened


__all__ = ["EdgeAnnotation", "unmapped", "mapped", "flatten", "unwrap"]
