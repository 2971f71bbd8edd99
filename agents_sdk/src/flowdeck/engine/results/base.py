"""The ``Result`` interface: read, write and check a value at a location."""

from __future__ import annotations

import copy
from typing import Any

from flowdeck.engine.serializers import PickleSerializer, Serializer


class _SafeFormat(dict[str, Any]):
    """Leaves unknown ``{names}`` in a location template as they are, with a clear error later."""

    def __missing__(self, key: str) -> str:
        raise KeyError(
            f"The result location template uses {{{key}}}, which is not in flowdeck.context or the task's inputs."
        )


class Result:
    """A value and where it lives. Subclasses implement ``read``, ``write`` and ``exists``.

    Args:
        value: the value held (after ``read``/``write``).
        location: where it is stored; a template such as ``"{flow_name}/{task_key}.pkl"`` is filled
            from ``flowdeck.context`` and the task's inputs when written.
        serializer: how values become bytes (default pickle).
    """

    def __init__(self, value: Any = None, location: str | None = None, serializer: Serializer | None = None) -> None:
        self.value = value
        self.location = location
        self.serializer: Serializer = serializer if serializer is not None else PickleSerializer()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.location!r}>"

    def copy(self) -> Result:
        """A shallow copy (the value is shared)."""
        return copy.copy(self)

    def format(self, **kwargs: Any) -> Result:
        """A copy whose location template is filled with ``kwargs``."""
        new = self.copy()
        if isinstance(new.location, str):
            new.location = new.location.format_map(_SafeFormat(kwargs))
        return new

    def read(self, location: str) -> Result:
        """A copy holding the value stored at ``location``."""
        raise NotImplementedError

    def write(self, value: Any, **kwargs: Any) -> Result:
        """Store ``value``; returns a copy holding it, with its final ``location``."""
        raise NotImplementedError

    def exists(self, location: str, **kwargs: Any) -> bool:
        """Whether a value is stored at ``location`` (a template, filled with ``kwargs``)."""
        raise NotImplementedError


class NoResultType(Result):
    """The result of a state that has none (Prefect 1's ``NoResult``)."""

    def __repr__(self) -> str:
        return "<NoResult>"

    def read(self, location: str) -> Result:
        return self

    def write(self, value: Any, **kwargs: Any) -> Result:
        return self

    def exists(self, location: str, **kwargs: Any) -> bool:
        return False


NoResult = NoResultType()

__all__ = ["Result", "NoResult", "NoResultType"]
