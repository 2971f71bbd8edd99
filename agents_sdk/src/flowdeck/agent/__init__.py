"""The Flowdeck agent: claims flow runs for its labels and runs them in your infrastructure.

``flowdeck agent start`` is the usual way to run one; from Python (Prefect 1 style)::

    from flowdeck.agent.local import LocalAgent      # or ProcessAgent
    from flowdeck.client import Client

    LocalAgent(Client(), labels=["prod"]).start()

``flowdeck.agent.docker.DockerAgent`` and ``flowdeck.agent.kubernetes.KubernetesAgent`` need the
``docker`` / ``kubernetes`` packages.
"""

from __future__ import annotations

from flowdeck.agent.base import Agent, ClaimedRun, LaunchError, RunExit, RunHandle
from flowdeck.agent.process import ProcessAgent

__all__ = ["Agent", "ClaimedRun", "LaunchError", "ProcessAgent", "RunExit", "RunHandle"]
