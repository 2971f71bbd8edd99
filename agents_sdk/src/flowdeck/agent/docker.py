"""The Docker agent: each flow run is a container from the run config's image.

The container runs ``python -m flowdeck.agent.execute`` (the image must have ``flowdeck`` installed
along with the flow's code) with the claim record in ``FLOWDECK_FLOW_RUN_JSON``, the ``FLOWDECK_*``
connection variables, and the variables the run config names, their values taken from the agent's
environment. Labels (``io.flowdeck.flow-run-id`` …) tie the container to its run. The agent pulls
the image per ``--image-pull-policy``, watches the container's status, kills it on cancellation,
and removes it once it has ended. Needs the ``docker`` package (``pip install flowdeck[docker]``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from flowdeck import __version__
from flowdeck.agent.base import Agent, ClaimedRun, LaunchError, RunExit, RunHandle
from flowdeck.agent.process import client_settings, flowdeck_env, run_config_env
from flowdeck.agent.resources import Resources

if TYPE_CHECKING:
    from flowdeck.client import Client

logger = logging.getLogger("flowdeck.agent")

PULL_POLICIES = ("always", "if-not-present", "never")
LABEL_PREFIX = "io.flowdeck"
EXECUTE_COMMAND = ["python", "-m", "flowdeck.agent.execute"]
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
# How a container reaches a server on the agent's own machine (Docker's host-gateway alias).
DOCKER_HOST_ALIAS = "host.docker.internal"


def run_image(run: ClaimedRun, default_image: str | None) -> str:
    """The run config's image, else the image of ``image`` storage, else the agent's default."""
    image = run.run_config.get("image") or (run.storage.get("image") if run.storage.get("type") == "image" else None)
    image = image or default_image
    if not image:
        raise LaunchError(
            "No image to run this flow in: set run_config.image when registering the flow, use image "
            "storage, or start the agent with --image."
        )
    return str(image)


def container_api_url(api_url: str, *, network: str | None) -> tuple[str, dict[str, str]]:
    """The API URL as seen from inside a container, and the extra hosts that make it work: a
    server on the agent's loopback is reached through the host gateway (unless the container
    shares the host's network)."""
    parts = urlsplit(api_url)
    if parts.hostname in LOCAL_HOSTS and network != "host":
        netloc = DOCKER_HOST_ALIAS + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc)), {DOCKER_HOST_ALIAS: "host-gateway"}
    return api_url, {}


def run_labels(run: ClaimedRun, *, agent_name: str, workspace: str | None) -> dict[str, str]:
    labels = {
        f"{LABEL_PREFIX}.flow-run-id": run.id,
        f"{LABEL_PREFIX}.flow-run-name": run.name,
        f"{LABEL_PREFIX}.flow-id": run.flow_id,
        f"{LABEL_PREFIX}.flow-version-id": run.flow_version_id,
        f"{LABEL_PREFIX}.attempt": str(run.attempt),
        f"{LABEL_PREFIX}.agent": agent_name,
        f"{LABEL_PREFIX}.version": __version__,
    }
    if workspace:
        labels[f"{LABEL_PREFIX}.workspace"] = workspace
    return labels


@dataclass
class ContainerSpec:
    """Everything ``containers.create`` gets for one run (kept as data so it can be checked)."""

    image: str
    name: str
    command: list[str]
    environment: dict[str, str]
    labels: dict[str, str]
    resources: Resources = field(default_factory=Resources)
    network: str | None = None
    extra_hosts: dict[str, str] = field(default_factory=dict)

    def create_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "image": self.image,
            "name": self.name,
            "command": list(self.command),
            "environment": dict(self.environment),
            "labels": dict(self.labels),
            "detach": True,
            **self.resources.docker(),
        }
        if self.network:
            kwargs["network"] = self.network
        if self.extra_hosts:
            kwargs["extra_hosts"] = dict(self.extra_hosts)
        return kwargs


def build_container_spec(
    run: ClaimedRun,
    *,
    api_url: str,
    api_key: str,
    workspace: str | None,
    agent_name: str,
    lease_seconds: int,
    environ: Mapping[str, str],
    env_vars: Mapping[str, str] | None = None,
    default_image: str | None = None,
    network: str | None = None,
    resources: Resources | None = None,
) -> ContainerSpec:
    image = run_image(run, default_image)
    url, extra_hosts = container_api_url(api_url, network=network)
    env = run_config_env(run, environ)
    env.update(env_vars or {})
    env.update(flowdeck_env(run, api_url=url, api_key=api_key, workspace=workspace))
    env["FLOWDECK_FLOW_RUN_JSON"] = json.dumps(run.launch_record(lease_seconds=lease_seconds), separators=(",", ":"))
    env["PYTHONUNBUFFERED"] = "1"
    return ContainerSpec(
        image=image,
        name=f"flowdeck-{run.id}-{run.attempt}",
        command=list(EXECUTE_COMMAND),
        environment=env,
        labels=run_labels(run, agent_name=agent_name, workspace=workspace),
        resources=Resources.for_run(run.run_config, resources),
        network=network,
        extra_hosts=extra_hosts,
    )


class DockerRunHandle(RunHandle):
    """A flow-run container."""

    def __init__(self, run: ClaimedRun, container: Any) -> None:
        super().__init__(run)
        self.container = container

    @property
    def container_id(self) -> str:
        return str(self.container.id)

    def poll(self) -> RunExit | None:
        from docker.errors import NotFound  # type: ignore[import-untyped]

        try:
            self.container.reload()
        except NotFound:
            return RunExit(code=None, reason=f"the container {self.container_id[:12]} disappeared")
        state = self.container.attrs.get("State") or {}
        if state.get("Status") not in ("exited", "dead"):
            return None
        code = int(state.get("ExitCode", -1))
        reason = f"the container exited with code {code}"
        if state.get("OOMKilled"):
            reason += " (killed for using more memory than its limit)"
        if state.get("Error"):
            reason += f": {state['Error']}"
        return RunExit(code=code, reason=reason)

    def terminate(self) -> None:
        self.container.kill(signal="SIGTERM")

    def kill(self) -> None:
        from docker.errors import APIError, NotFound

        try:
            self.container.kill()
        except NotFound:
            pass
        except APIError as exc:
            if getattr(exc, "status_code", None) != 409:  # 409: it is not running any more
                raise

    def output_tail(self) -> str:
        try:
            logs = self.container.logs(tail=30)
        except Exception:
            return ""
        return logs.decode("utf-8", "replace").rstrip() if isinstance(logs, bytes) else str(logs)

    def cleanup(self) -> None:
        from docker.errors import NotFound

        try:
            self.container.remove(force=True)
        except NotFound:
            pass


class DockerAgent(Agent):
    """Runs each flow run in a Docker container (Prefect 1's ``DockerAgent``).

    Args (besides :class:`~flowdeck.agent.base.Agent`'s):
        docker_url: the Docker Engine API (``unix:///var/run/docker.sock``, ``tcp://host:2375``);
            default: ``DOCKER_HOST`` or the local socket.
        image_pull_policy: ``always``, ``if-not-present`` (default) or ``never``.
        default_image: the image for runs whose run config names none.
        network: a Docker network for the containers.
        resources: default CPU/memory requests and limits.
        docker_client: an existing ``docker.DockerClient`` (otherwise one is made from ``docker_url``).
    """

    agent_type = "docker"
    watch_interval = 2.0

    def __init__(
        self,
        client: Client,
        *,
        docker_url: str | None = None,
        image_pull_policy: str = "if-not-present",
        default_image: str | None = None,
        network: str | None = None,
        resources: Resources | None = None,
        environ: Mapping[str, str] | None = None,
        docker_client: Any = None,
        **kwargs: Any,
    ) -> None:
        if image_pull_policy not in PULL_POLICIES:
            raise ValueError(f"image_pull_policy must be one of {', '.join(PULL_POLICIES)}, not {image_pull_policy!r}.")
        super().__init__(client, **kwargs)
        self.image_pull_policy = image_pull_policy
        self.default_image = default_image
        self.network = network
        self.resources = resources or Resources()
        self.resources.validate()
        self.environ = environ if environ is not None else os.environ
        self.docker = docker_client if docker_client is not None else connect_docker(docker_url)

    def ensure_image(self, image: str) -> None:
        """Pull ``image`` as the pull policy says; an image that cannot be had is a pre-start failure."""
        from docker.errors import APIError, ImageNotFound

        if self.image_pull_policy != "always":
            try:
                self.docker.images.get(image)
                return
            except ImageNotFound:
                if self.image_pull_policy == "never":
                    raise LaunchError(f"The image {image} is not on the Docker host and the agent's image pull "
                                      "policy is 'never'.") from None
        logger.info("Pulling image %s", image)
        try:
            self.docker.images.pull(image)
        except APIError as exc:
            raise LaunchError(f"Could not pull the image {image}: {exc.explanation or exc}") from None

    def container_spec(self, run: ClaimedRun) -> ContainerSpec:
        api_url, api_key, workspace = client_settings(self.client)
        return build_container_spec(
            run, api_url=api_url, api_key=api_key, workspace=workspace, agent_name=self.name,
            lease_seconds=self.lease_seconds, environ=self.environ, env_vars=self.env_vars,
            default_image=self.default_image, network=self.network, resources=self.resources,
        )

    def launch(self, run: ClaimedRun) -> DockerRunHandle:
        from docker.errors import APIError

        spec = self.container_spec(run)
        self.ensure_image(spec.image)
        try:
            container = self.docker.containers.create(**spec.create_kwargs())
        except APIError as exc:
            raise LaunchError(f"Docker could not create the container: {exc.explanation or exc}") from None
        try:
            container.start()
        except APIError as exc:
            try:
                container.remove(force=True)
            except APIError:
                pass
            raise LaunchError(f"Docker could not start the container: {exc.explanation or exc}") from None
        logger.info("Started container %s for flow run %s (%s)", str(container.id)[:12], run.name, run.id,
                    extra={"flow_run_id": run.id, "container_id": str(container.id)})
        return DockerRunHandle(run, container)


def connect_docker(docker_url: str | None) -> Any:
    """A ``docker.DockerClient`` for ``docker_url`` (or the environment's), with a clear error when
    the package is missing or the engine does not answer."""
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError("The Docker agent needs the docker package: pip install 'flowdeck[docker]'.") from None
    try:
        return docker.DockerClient(base_url=docker_url) if docker_url else docker.from_env()
    except docker.errors.DockerException as exc:
        where = docker_url or os.environ.get("DOCKER_HOST") or "the local Docker socket"
        raise RuntimeError(f"Cannot reach the Docker engine at {where}: {exc}") from None
