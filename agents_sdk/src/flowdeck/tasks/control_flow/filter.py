"""``FilterTask``: drop unwanted items (by default None and exceptions) from a list, typically the
results of a mapped task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowdeck import triggers
from flowdeck.core.task import Task


def _keep(value: Any) -> bool:
    return value is not None and not isinstance(value, BaseException)


class FilterTask(Task):
    """Keeps the items for which ``filter_func(item)`` is true. Runs whatever happened upstream
    (``all_finished``), so it can clean up after failed mapped children."""

    def __init__(self, filter_func: Callable[[Any], bool] | None = None, **kwargs: Any) -> None:
        self.filter_func = filter_func if filter_func is not None else _keep
        kwargs.setdefault("name", "FilterTask")
        kwargs.setdefault("skip_on_upstream_skip", False)
        kwargs.setdefault("trigger", triggers.all_finished)
        super().__init__(**kwargs)

    def run(self, task_results: list[Any]) -> list[Any]:
        return [r for r in task_results if self.filter_func(r)]


__all__ = ["FilterTask"]
