"""The authoring model: ``Task``, ``Flow``, ``Parameter`` and ``Edge`` (Prefect 1's ``prefect.core``)."""

from flowdeck.core.edge import Edge
from flowdeck.core.flow import Flow
from flowdeck.core.parameter import Parameter
from flowdeck.core.task import Task

__all__ = ["Edge", "Flow", "Parameter", "Task"]
