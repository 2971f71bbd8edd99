"""Operator tasks created by the functional API (``pair[0]`` inside a flow)."""

from __future__ import annotations

from typing import Any

from flowdeck.core.task import Task


class GetItem(Task):
    """Returns ``task_result[key]``."""

    def run(self, task_result: Any, key: Any) -> Any:
        return task_result[key]


__all__ = ["GetItem"]
