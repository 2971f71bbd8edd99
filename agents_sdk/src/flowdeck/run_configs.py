"""How an agent runs a flow (Prefect 1's ``prefect.run_configs``).

``env`` lists environment variable *names*: the agent copies those variables from its own
environment into the flow run. Values never leave your infrastructure, so they are never sent to
Flowdeck — giving values (``{"TOKEN": "…"}`` or ``"TOKEN=…"``) is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_names(env: Iterable[str] | Mapping[str, Any] | None, owner: str) -> list[str]:
    if env is None:
        return []
    if isinstance(env, Mapping):
        raise ValueError(
            f"{owner}(env=...) takes variable NAMES, e.g. env={sorted(env)!r}: the agent reads their values "
            "from its own environment. Values are never sent to Flowdeck."
        )
    if isinstance(env, str):
        raise TypeError(f"{owner}(env=...) takes a list of names, e.g. env=[{env!r}].")
    names = list(env)
    for name in names:
        if not isinstance(name, str) or "=" in name:
            raise ValueError(
                f"{owner}(env=...): {str(name).split('=')[0]!r} looks like NAME=value; give names only "
                "(values are read by the agent where it runs and never sent to Flowdeck)."
            )
        if not _ENV_NAME.match(name):
            raise ValueError(f"{owner}(env=...): {name!r} is not a valid environment variable name.")
    return names


class RunConfig:
    """Base class: ``serialize()`` is the ``run_config`` field of the registration metadata."""

    agent_type: str | None = None

    def __init__(self, env: Iterable[str] | None = None, labels: Iterable[str] | None = None) -> None:
        self.env = _env_names(env, type(self).__name__)
        self.labels = sorted(set(labels or ()))

    def serialize(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.agent_type:
            data["agent_type"] = self.agent_type
        if self.env:
            data["env"] = list(self.env)
        if self.labels:
            data["labels"] = list(self.labels)
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.serialize()!r})"


class UniversalRun(RunConfig):
    """Any agent may run it."""


class LocalRun(RunConfig):
    """A process agent runs the flow in a subprocess. ``working_dir`` is used by the agent only when it
    is local to it (it is not registered)."""

    agent_type = "process"

    def __init__(
        self,
        env: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        working_dir: str | None = None,
    ) -> None:
        super().__init__(env=env, labels=labels)
        self.working_dir = working_dir


class DockerRun(RunConfig):
    """A Docker agent runs the flow in a container of ``image``."""

    agent_type = "docker"

    def __init__(
        self, image: str | None = None, env: Iterable[str] | None = None, labels: Iterable[str] | None = None
    ) -> None:
        super().__init__(env=env, labels=labels)
        self.image = image

    def serialize(self) -> dict[str, Any]:
        data = super().serialize()
        if self.image:
            data["image"] = self.image
        return data


class KubernetesRun(DockerRun):
    """A Kubernetes agent runs the flow as a Job with ``image``.

    ``cpu_request``/``memory_request``/``cpu_limit``/``memory_limit`` (Kubernetes quantities: ``"500m"``,
    ``"512Mi"``) and ``image_pull_policy`` describe the Job's container; they are registered with the
    flow and the Kubernetes agent applies them.
    """

    agent_type = "kubernetes"

    def __init__(
        self,
        image: str | None = None,
        env: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        cpu_request: str | float | None = None,
        memory_request: str | None = None,
        cpu_limit: str | float | None = None,
        memory_limit: str | None = None,
        image_pull_policy: str | None = None,
    ) -> None:
        super().__init__(image=image, env=env, labels=labels)
        self.cpu_request = cpu_request
        self.memory_request = memory_request
        self.cpu_limit = cpu_limit
        self.memory_limit = memory_limit
        if image_pull_policy not in (None, "Always", "IfNotPresent", "Never"):
            raise ValueError("image_pull_policy must be 'Always', 'IfNotPresent' or 'Never'.")
        self.image_pull_policy = image_pull_policy

    def serialize(self) -> dict[str, Any]:
        data = super().serialize()
        for field in ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "image_pull_policy"):
            value = getattr(self, field)
            if value is not None:
                data[field] = str(value)
        return data


__all__ = ["RunConfig", "UniversalRun", "LocalRun", "DockerRun", "KubernetesRun"]
