"""``flowdeck agent …`` commands.

``flowdeck agent start`` runs an agent in the foreground until SIGTERM/SIGINT (a second signal stops
it at once); once its runs are finished or handed back it tells the server, which shows it stopped.
It keeps a websocket to the server for pushed work and cancellations (``--no-live``: polling only).
Exit status: 0 after a requested shutdown, 1 when the server refused the agent's key
while it ran, 2 when it could not start (no API key, unreachable Docker engine, bad option…).
"""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

agent_app = typer.Typer(help="Run a Flowdeck agent that claims flow runs and runs them.", no_args_is_help=True)


class AgentType(StrEnum):
    process = "process"
    docker = "docker"
    kubernetes = "kubernetes"


class PullPolicy(StrEnum):
    always = "always"
    if_not_present = "if-not-present"
    never = "never"


class LogFormat(StrEnum):
    logfmt = "logfmt"
    json = "json"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise _fail(f"--env takes NAME=VALUE, not {pair!r}.")
        env[name] = value
    return env


def _parse_secret(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    name, _, key = text.partition(":")
    return name, key or "api-key"


@agent_app.command("start")
def start(
    agent_type: Annotated[AgentType, typer.Option("--type", "-t", help="Where flow runs are launched.")] = (
        AgentType.process
    ),
    label: Annotated[list[str] | None, typer.Option(
        "--label", "-l", metavar="LABEL", help="A label of this agent (repeatable): it runs flow runs whose "
        "labels are all among its labels.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="The agent's name (default: <hostname>-<type>).")] = None,
    max_runs: Annotated[int, typer.Option("--max-runs", min=1, help="Most flow runs in flight at once.")] = 10,
    poll_interval: Annotated[float, typer.Option(
        "--poll-interval", min=0.1, help="Seconds between claim-loop cycles.")] = 10.0,
    lease: Annotated[int, typer.Option(
        "--lease", min=10, max=3600, help="Seconds a claimed run may take to start before the server takes it "
        "back.")] = 60,
    grace_period: Annotated[float, typer.Option(
        "--grace-period", min=0, help="On SIGTERM, seconds in-flight runs get to finish before they are "
        "killed.")] = 30.0,
    kill_grace: Annotated[float, typer.Option(
        "--kill-grace", min=0, help="On cancellation, seconds a run gets to stop before it is killed.")] = 10.0,
    env: Annotated[list[str] | None, typer.Option(
        "--env", "-e", metavar="NAME=VALUE", help="NAME=VALUE set on every flow run (repeatable).")] = None,
    results_dir: Annotated[str | None, typer.Option(
        "--results-dir", envvar="FLOWDECK_RESULTS_DIR", metavar="DIR", help="Where runs checkpoint task results "
        "(default: ~/.flowdeck/results of the run's user). Point agents at shared storage so a retry on another "
        "agent restores finished tasks instead of running them again.")] = None,
    max_polls: Annotated[int | None, typer.Option("--max-polls", min=1, help="Stop after this many cycles.")] = None,
    api_url: Annotated[str | None, typer.Option(
        "--api-url", help="Flowdeck server URL (default: FLOWDECK_API_URL or `flowdeck login`). The key comes "
        "from FLOWDECK_API_KEY or the login.")] = None,
    workspace: Annotated[str | None, typer.Option("--workspace", help="Workspace slug (default: the key's).")] = None,
    import_path: Annotated[list[str] | None, typer.Option(
        "--import-path", "-p", metavar="DIR",
        help="process: a directory added to the runs' PYTHONPATH (repeatable).")] = None,
    working_dir: Annotated[str | None, typer.Option(
        "--working-dir", help="process: the runs' working directory.")] = None,
    warm_processes: Annotated[int, typer.Option(
        "--warm-processes", envvar="FLOWDECK_AGENT_WARM_PROCESSES", min=0, help="process: flow-run processes kept "
        "started, imports done, waiting for a run, so a run's code starts without Python's start-up (0: start "
        "a new process per run). Each serves one run.")] = 1,
    image: Annotated[str | None, typer.Option(
        "--image", help="docker/kubernetes: image for runs whose run config names none.")] = None,
    image_pull_policy: Annotated[PullPolicy | None, typer.Option(
        "--image-pull-policy", help="docker/kubernetes: when to pull the run's image (docker default: "
        "if-not-present).")] = None,
    docker_url: Annotated[str | None, typer.Option(
        "--docker-url", help="docker: Docker Engine API URL (default: DOCKER_HOST or the local socket).")] = None,
    network: Annotated[str | None, typer.Option("--network", help="docker: network for the containers.")] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="kubernetes: namespace of the Jobs.")] = "default",
    service_account: Annotated[str | None, typer.Option(
        "--service-account", help="kubernetes: the pods' service account.")] = None,
    kube_host: Annotated[str | None, typer.Option(
        "--kube-host", help="kubernetes: API server URL (default: in-cluster config, then kubeconfig).")] = None,
    api_key_secret: Annotated[str | None, typer.Option(
        "--api-key-secret", help="kubernetes: SECRET[:KEY] holding the API key for the runs (default key: "
        "api-key).")] = None,
    job_ttl: Annotated[int, typer.Option(
        "--job-ttl", min=0, help="kubernetes: seconds finished Jobs are kept.")] = 600,
    cpu_request: Annotated[str | None, typer.Option(
        "--cpu-request", help="docker/kubernetes: default CPU request (e.g. 500m).")] = None,
    cpu_limit: Annotated[str | None, typer.Option(
        "--cpu-limit", help="docker/kubernetes: default CPU limit (e.g. 2).")] = None,
    memory_request: Annotated[str | None, typer.Option(
        "--memory-request", help="docker/kubernetes: default memory request (e.g. 512Mi).")] = None,
    memory_limit: Annotated[str | None, typer.Option(
        "--memory-limit", help="docker/kubernetes: default memory limit (e.g. 1Gi).")] = None,
    live: Annotated[bool, typer.Option(
        "--live/--no-live", help="Keep a websocket to the server so work and cancellations are pushed at once "
        "(--no-live: polling only, every --poll-interval).")] = True,
    panel: Annotated[bool | None, typer.Option(
        "--panel/--no-panel", help="A live status panel (default: when stdout is a terminal) or structured log "
        "lines.")] = None,
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", help="Log lines as key=value (logfmt) or JSON.")] = LogFormat.logfmt,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Start an agent: register, then claim and run flow runs until stopped (SIGTERM/Ctrl-C)."""
    from flowdeck.agent.base import Agent
    from flowdeck.agent.resources import Resources
    from flowdeck.agent.status import configure_logging, make_status
    from flowdeck.client import Client
    from flowdeck.client.errors import FlowdeckError

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise _fail(f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}.")
    env_vars = _parse_env(env or [])
    if results_dir:
        # An explicit --env FLOWDECK_RESULTS_DIR=… wins. For a process agent a relative path means the
        # agent's directory; for containers the path is inside the container (mount shared storage there).
        local = agent_type is AgentType.process
        env_vars.setdefault("FLOWDECK_RESULTS_DIR",
                            str(Path(results_dir).expanduser().resolve()) if local else results_dir)
    resources = Resources(cpu_request=cpu_request, cpu_limit=cpu_limit, memory_request=memory_request,
                          memory_limit=memory_limit)
    try:
        resources.validate()
    except ValueError as exc:
        raise _fail(f"Invalid resources: {exc}") from None

    show_live = sys.stdout.isatty() if panel is None else panel
    status = make_status(live=show_live)
    configure_logging(live=show_live, log_format=log_format.value, level=level,
                      console=getattr(status, "console", None))

    try:
        # Few retries per call: the agent loop backs off by itself and must keep watching its runs.
        client = Client(api_url, None, workspace, retries=2, timeout=15.0)
    except FlowdeckError as exc:
        status.close()
        raise _fail(f"{exc} Set FLOWDECK_API_KEY (a service-account key with the Agent role) or run "
                    "`flowdeck login`.") from None

    common: dict[str, Any] = dict(
        name=name, labels=label or [], max_concurrent_runs=max_runs, poll_interval=poll_interval, lease_seconds=lease,
        grace_period=grace_period, kill_grace=kill_grace, env_vars=env_vars, max_polls=max_polls, status=status,
        live=live,
    )
    pull = image_pull_policy.value if image_pull_policy else None
    agent: Agent
    try:
        if agent_type is AgentType.process:
            from flowdeck.agent.process import ProcessAgent

            agent = ProcessAgent(client, import_paths=import_path or [], working_dir=working_dir,
                                 warm_processes=warm_processes, **common)
        elif agent_type is AgentType.docker:
            from flowdeck.agent.docker import DockerAgent

            agent = DockerAgent(client, docker_url=docker_url, image_pull_policy=pull or "if-not-present",
                                default_image=image, network=network, resources=resources, **common)
        else:
            from flowdeck.agent.kubernetes import KubernetesAgent

            agent = KubernetesAgent(client, namespace=namespace, service_account=service_account,
                                    image_pull_policy=pull, default_image=image,
                                    api_key_secret=_parse_secret(api_key_secret), resources=resources,
                                    ttl_seconds_after_finished=job_ttl, kube_host=kube_host, **common)
    except (ValueError, RuntimeError) as exc:
        status.close()
        client.close()
        raise _fail(str(exc)) from None

    restore = agent.install_signal_handlers()
    try:
        code = agent.start()
    finally:
        restore()
        client.close()
    raise typer.Exit(code)
