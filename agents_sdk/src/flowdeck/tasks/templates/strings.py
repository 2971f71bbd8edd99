"""``StringFormatter``: ``str.format`` a template with the context and the task's inputs."""

from __future__ import annotations

from typing import Any

from flowdeck.context import context
from flowdeck.core.task import Task


class StringFormatter(Task):
    """Formats ``template`` with ``str.format``: names come from ``flowdeck.context`` and from the
    keyword arguments the task is called with (upstream results included).

    Args:
        template: the default template; ``template=`` given when the task is called wins.
        **kwargs: ``Task`` arguments.
    """

    def __init__(self, template: str | None = None, **kwargs: Any) -> None:
        self.template = template
        super().__init__(**kwargs)

    def run(self, template: str | None = None, **format_kwargs: Any) -> str:
        template = template if template is not None else self.template
        if template is None:
            raise ValueError("StringFormatter needs a template (give template= to the task or when calling it).")
        with context(**format_kwargs) as data:
            return template.format(**data.to_dict())


__all__ = ["StringFormatter"]
