"""Operator tasks (Prefect 1's ``prefect.tasks.core.operators``).

Inside a flow, Python operators on tasks build these tasks: ``x + y`` binds ``Add()`` to ``x`` and ``y``,
``3 * x`` binds ``Mul()`` to ``3`` and ``x``, ``pair[0]`` binds ``GetItem``, ``x > 1`` binds
``GreaterThan``, ``x & y`` binds ``And``. ``==`` and ``!=`` stay identity comparisons (flows keep tasks
in sets and dicts): use ``x.is_equal(y)`` / ``x.is_not_equal(y)``. ``x | y`` is not ``Or`` either: as
in Prefect 1 it makes ``y`` run after ``x``; use ``x.or_(y)``.

They are ordinary tasks, so they map like any other: ``Add().map(numbers, unmapped(10))``.
"""

from __future__ import annotations

from typing import Any

from flowdeck.core.task import Task


class GetItem(Task):
    """Returns ``task_result[key]``."""

    def run(self, task_result: Any, key: Any) -> Any:
        return task_result[key]


# --- arithmetic ------------------------------------------------------------------------------------


class Add(Task):
    """Returns ``x + y``."""

    def run(self, x: Any, y: Any) -> Any:
        return x + y


class Sub(Task):
    """Returns ``x - y``."""

    def run(self, x: Any, y: Any) -> Any:
        return x - y


class Mul(Task):
    """Returns ``x * y``."""

    def run(self, x: Any, y: Any) -> Any:
        return x * y


class Div(Task):
    """Returns ``x / y``."""

    def run(self, x: Any, y: Any) -> Any:
        return x / y


class FloorDiv(Task):
    """Returns ``x // y``."""

    def run(self, x: Any, y: Any) -> Any:
        return x // y


class Mod(Task):
    """Returns ``x % y``."""

    def run(self, x: Any, y: Any) -> Any:
        return x % y


class Pow(Task):
    """Returns ``x ** y``."""

    def run(self, x: Any, y: Any) -> Any:
        return x**y


# --- logic (results are always bools, as in Prefect 1) ---------------------------------------------


class And(Task):
    """Returns ``bool(x and y)`` (what ``x & y`` builds)."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x and y)


class Or(Task):
    """Returns ``bool(x or y)`` (``x.or_(y)``)."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x or y)


class Xor(Task):
    """Returns whether exactly one of ``x`` and ``y`` is true (what ``x ^ y`` builds; Prefect 1 has no
    ``^`` on tasks)."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x) != bool(y)


class Not(Task):
    """Returns ``not x`` (``x.not_()``)."""

    def run(self, x: Any) -> bool:
        return not x


# --- comparisons -------------------------------------------------------------------------------------


class Equal(Task):
    """Returns ``x == y`` as a bool (``x.is_equal(y)``)."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x == y)


class NotEqual(Task):
    """Returns ``x != y`` as a bool (``x.is_not_equal(y)``)."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x != y)


class GreaterThan(Task):
    """Returns ``x > y`` as a bool."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x > y)


class GreaterThanOrEqual(Task):
    """Returns ``x >= y`` as a bool."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x >= y)


class LessThan(Task):
    """Returns ``x < y`` as a bool."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x < y)


class LessThanOrEqual(Task):
    """Returns ``x <= y`` as a bool."""

    def run(self, x: Any, y: Any) -> bool:
        return bool(x <= y)


__all__ = [
    "GetItem",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "FloorDiv",
    "Mod",
    "Pow",
    "And",
    "Or",
    "Xor",
    "Not",
    "Equal",
    "NotEqual",
    "GreaterThan",
    "GreaterThanOrEqual",
    "LessThan",
    "LessThanOrEqual",
]
