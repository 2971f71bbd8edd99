"""``Constant``: a task that returns a fixed value."""

from __future__ import annotations

from typing import Any

from flowdeck.core.task import Task


class Constant(Task):
    """Returns ``value``. Plain values passed to tasks do not need it (they are flow constants);
    it exists for imperative flows that want a value as a node of the graph."""

    def __init__(self, value: Any, name: str | None = None, **kwargs: Any) -> None:
        self.value = value
        if name is None:
            text = repr(value)
            name = f"Constant[{type(value).__name__}]" if len(text) > 40 else text
        super().__init__(name=name, **kwargs)

    def run(self) -> Any:
        return self.value


__all__ = ["Constant"]
