"""``Parameter``: a flow input given at run time (Prefect 1's ``prefect.core.parameter.Parameter``).

``Parameter("x", default=2)`` is optional; ``Parameter("x")`` (no default) is required unless
``required=False``. Parameters are tasks: pass them to other tasks like any task result.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flowdeck.context import context
from flowdeck.core.task import Task

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow

_NO_VALUE = object()

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
        default: the value when none is given.
        required: must a value be given? Default: True when ``default`` is None.
        tags: labels, as for any task.
    """

    _is_parameter = True

    def __init__(
        self,
        name: str,
        default: Any = None,
        required: bool | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("A Parameter needs a name (a non-empty string).")
        self.default = default
        self.required: bool = default is None if required is None else bool(required)
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


__all__ = ["Parameter", "PARAMETER_TYPES", "parameter_type_of"]
