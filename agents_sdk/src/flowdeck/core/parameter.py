"""``Parameter``: a flow input given at run time (Prefect 1's ``prefect.core.parameter.Parameter``).

``Parameter("x", default=2)`` is optional; ``Parameter("x")`` (no default) is required unless
``required=False``. As in Prefect 1, ``default=None`` is a default like any other (optional, None).
Parameters are tasks: pass them to other tasks like any task result. ``DateTimeParameter`` reads its
value as a date and time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowdeck.context import context
from flowdeck.core.task import Task

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow

_NO_VALUE = object()


class _NoDefault:
    """The ``default`` of a parameter created without one (``None`` is a real default)."""

    def __repr__(self) -> str:
        return "no_default"


no_default: Any = _NoDefault()

PARAMETER_TYPES = ("str", "int", "float", "bool", "list", "dict", "any")


def parameter_type_of(value: Any) -> str:
    """The registration type name of a default value (``bool`` before ``int``: True is an int)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "any"


class Parameter(Task):
    """A named flow input.

    Args:
        name: the parameter's name (unique in the flow), the key of ``flow.run(parameters=...)``.
        default: the value when none is given (``None`` included).
        required: must a value be given? Default: True when no ``default`` is given.
        tags: labels, as for any task.
    """

    _is_parameter = True

    def __init__(
        self,
        name: str,
        default: Any = no_default,
        required: bool | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("A Parameter needs a name (a non-empty string).")
        given = default is not no_default
        self.default = default if given else None
        self.required: bool = (not given) if required is None else bool(required)
        super().__init__(name=name, tags=tags, checkpoint=False)

    def __repr__(self) -> str:
        return f"<Parameter: {self.name}>"

    def __call__(self, flow: Flow | None = None, **kwargs: Any) -> Parameter:  # type: ignore[override]
        """Add the parameter to the active flow (parameters are never copied)."""
        if kwargs:
            raise TypeError(f"Parameter {self.name!r} takes no inputs.")
        self.bind(flow=flow)
        return self

    def copy(self, **task_args: Any) -> Task:
        # A flow keys parameters by name: a copy with the same name would clash.
        if "name" not in task_args:
            raise ValueError("A copy of a Parameter needs a new name: param.copy(name='other').")
        return super().copy(**task_args)

    def run(self) -> Any:
        """The value given for this run, else the default (checked before the flow starts)."""
        value = context.get("parameters", {}).get(self.name, _NO_VALUE)
        if value is _NO_VALUE:
            if self.required:
                raise ValueError(f"No value was given for the required parameter {self.name!r}.")
            return self.default
        return value

    @property
    def type_name(self) -> str:
        """The registration type (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict`` or ``any``)."""
        return parameter_type_of(self.default) if self.default is not None else "any"

    def serialize(self) -> dict[str, Any]:
        """This parameter as registration metadata: ``{"name", "type", "default", "required"}``."""
        return {"name": self.name, "type": self.type_name, "default": self.default, "required": self.required}


def _as_datetime(value: Any) -> Any:
    """``value`` as a pendulum ``DateTime`` (a ``datetime`` when pendulum is not installed)."""
    try:
        import pendulum
    except ImportError:  # pragma: no cover - pendulum is a dependency; kept for minimal installs
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        raise TypeError(f"Cannot read a date and time from {type(value).__name__} {value!r}.") from None
    if isinstance(value, str):
        parsed = pendulum.parse(value)
        if not isinstance(parsed, pendulum.DateTime):
            raise ValueError(f"{value!r} is not a date and time (pendulum read it as {type(parsed).__name__}).")
        return parsed
    if isinstance(value, datetime):
        return pendulum.instance(value)
    raise TypeError(f"Cannot read a date and time from {type(value).__name__} {value!r}.")


class DateTimeParameter(Parameter):
    """A parameter whose value is a date and time (Prefect 1's ``DateTimeParameter``).

    Give an ISO 8601 string (``"2026-12-03T10:00:00+01:00"``; no offset means UTC) or a ``datetime``;
    the task's result is a pendulum ``DateTime`` (a plain ``datetime`` if pendulum is not installed).
    ``None`` stays ``None``. A value that is not a date and time fails the parameter's task, which
    fails its downstream tasks.
    """

    def run(self) -> Any:
        value = super().run()
        if value is None:
            return None
        return _as_datetime(value)

    @property
    def type_name(self) -> str:
        # Run values arrive as ISO strings (JSON has no dates): registration says so.
        return "str"

    def serialize(self) -> dict[str, Any]:
        data = super().serialize()
        if isinstance(self.default, datetime):
            data["default"] = self.default.isoformat()
        return data


__all__ = ["Parameter", "DateTimeParameter", "PARAMETER_TYPES", "no_default", "parameter_type_of"]
