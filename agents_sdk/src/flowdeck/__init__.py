"""Flowdeck: define flows in Python, run them in your own infrastructure, observe them in Flowdeck.

This package is the SDK and the agent. It talks to the Flowdeck server over HTTP and websockets
only; it never imports the server or Django.

Authoring mirrors Prefect 1 Core (replace ``prefect`` with ``flowdeck`` in the imports)::

    from flowdeck import Flow, Parameter, task

    @task
    def add(x, y=1):
        return x + y

    with Flow("example") as flow:
        x = Parameter("x", default=2)
        total = add(x, 10)

    state = flow.run(x=5)
    assert state.result[total].result == 15
"""

from __future__ import annotations

__version__ = "0.1.0"

# ``flowdeck.context`` is the thread-local Context object (as ``prefect.context``), not the module.
from flowdeck.context import context  # noqa: E402, I001
from flowdeck.core.edge import Edge  # noqa: E402
from flowdeck.core.flow import Flow  # noqa: E402
from flowdeck.core.parameter import Parameter  # noqa: E402
from flowdeck.core.task import Task  # noqa: E402
from flowdeck.tasks.control_flow.case import case  # noqa: E402
from flowdeck.utilities.edges import flatten, mapped, unmapped  # noqa: E402
from flowdeck.utilities.tasks import tags, task  # noqa: E402

__all__ = [
    "__version__",
    "Edge",
    "Flow",
    "Parameter",
    "Task",
    "case",
    "context",
    "flatten",
    "mapped",
    "tags",
    "task",
    "unmapped",
]
