"""``PrefectResult``: the value itself, as JSON, is the result's location.

Nothing is written anywhere: the state's ``result_ref`` *is* the value, so the server keeps it and
a restarted run reads it back from there. For small JSON values only (parameters, ids, counts): the
server keeps references of at most 1,000 characters, so a larger value is logged and not kept (a
restart then runs the task again).
"""

from __future__ import annotations

import logging
from typing import Any

from flowdeck.engine.results.base import Result
from flowdeck.engine.serializers import JSONSerializer, Serializer

logger = logging.getLogger("flowdeck.results")

# What the server keeps of a result reference (longer ones are not reported).
MAX_LOCATION_LENGTH = 1_000


class PrefectResult(Result):
    """Stores a JSON-serializable value in the task's state: ``location`` is the JSON text.

    Args:
        value: the value held.
        location: the JSON text of a value (``read`` decodes it).
        serializer: a ``JSONSerializer`` (the default; anything else is refused: the location must
            be text the server can keep).
    """

    def __init__(self, value: Any = None, location: str | None = None, serializer: Serializer | None = None) -> None:
        serializer = serializer if serializer is not None else JSONSerializer()
        if not isinstance(serializer, JSONSerializer):
            raise TypeError("PrefectResult only supports a JSONSerializer (its location is the value as JSON text).")
        super().__init__(value=value, location=location, serializer=serializer)

    def read(self, location: str) -> Result:
        """A copy holding the value the JSON ``location`` spells."""
        new = self.copy()
        new.location = location
        new.value = self.serializer.deserialize(location.encode())
        return new

    def write(self, value: Any, **kwargs: Any) -> Result:
        """A copy holding ``value`` whose location is its JSON (a value that is not JSON raises
        ``TypeError``, which fails the task, as in Prefect 1)."""
        new = self.copy()
        new.value = value
        new.location = self.serializer.serialize(value).decode()
        if len(new.location) > MAX_LOCATION_LENGTH:
            logger.warning(
                "The result of task %r is %d characters of JSON; Flowdeck keeps result references of at most %d, "
                "so this one stays in this process only (a restart runs the task again). Use a LocalResult or "
                "S3Result for large values.", kwargs.get("task_full_name") or kwargs.get("task_name"),
                len(new.location), MAX_LOCATION_LENGTH,
            )
        return new

    def exists(self, location: str, **kwargs: Any) -> bool:
        """Whether ``location`` is JSON: the value is always "there" when it is (it is not a
        template: JSON's braces are not placeholders)."""
        try:
            self.serializer.deserialize(location.encode())
        except ValueError:
            return False
        return True


__all__ = ["PrefectResult", "MAX_LOCATION_LENGTH"]
