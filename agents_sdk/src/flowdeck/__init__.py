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

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# ``flowdeck.context`` is the thread-local Context object (as ``prefect.context``), not the module.
from flowdeck.context import context  # noqa: E402, I001
# Likewise ``flowdeck.config`` is the Config object (as ``prefect.config``); the module's helpers
# stay importable with ``from flowdeck.config import ...``.
from flowdeck.config import config  # noqa: E402
from flowdeck.core.edge import Edge  # noqa: E402
from flowdeck.core.flow import Flow  # noqa: E402
from flowdeck.core.parameter import Parameter  # noqa: E402
from flowdeck.core.task import Task  # noqa: E402
from flowdeck.tasks.control_flow.case import case  # noqa: E402
from flowdeck.tasks.core.resource_manager import resource_manager  # noqa: E402
from flowdeck.utilities.edges import flatten, mapped, unmapped  # noqa: E402
from flowdeck.utilities.tasks import apply_map, tags, task  # noqa: E402

if TYPE_CHECKING:
    from flowdeck.client.client import Client

__all__ = [
    "__version__",
    "Client",
    "Edge",
    "Flow",
    "Parameter",
    "Task",
    "apply_map",
    "case",
    "config",
    "context",
    "flatten",
    "mapped",
    "resource_manager",
    "tags",
    "task",
    "unmapped",
]


def __getattr__(name: str) -> Any:
    # ``flowdeck.Client`` (as ``prefect.Client``), imported on first use: it loads httpx.
    if name == "Client":
        from flowdeck.client import Client

        return Client
    raise AttributeError(f"module 'flowdeck' has no attribute {name!r}")
