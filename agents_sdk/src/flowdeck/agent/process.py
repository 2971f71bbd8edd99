"""The process agent: each flow run is a local subprocess, ``python -m flowdeck.agent.execute``.

The subprocess gets a fresh environment, not the agent's: only ``PATH``, ``HOME`` and ``LANG``, the
variables the flow's ``run_config.env`` names (values copied from the agent's environment: they
never travel through Flowdeck), the agent's ``--env`` values, and the ``FLOWDECK_*`` variables the
run needs (the API, the run's id and attempt, and a file holding the claim record). It runs in its
own process group, so a cancellation or a kill reaches everything the flow started, and it exits
when the agent dies (``FLOWDECK_AGENT_PID``), so a killed agent's runs are crashed and retried by
the server instead of running on unseen. Its output goes to the agent's log.

With ``warm_processes`` (``--warm-processes``, default 1) the agent keeps that many flow-run
processes started ahead of the claims, their imports done (:mod:`flowdeck.agent.warm`): a claimed
run is handed to one, which takes on the run's environment and goes on exactly as a fresh process
would, so a quick run's code starts without waiting for Python to start. A run a warm process cannot
take (another interpreter, an environment variable Python reads at start-up) is launched cold.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from flowdeck.agent.base import Agent, ClaimedRun, LaunchError, RunExit, RunHandle, signal_name
from flowdeck.agent.warm import WarmPool

if TYPE_CHECKING:
    from flowdeck.client import Client

logger = logging.getLogger("flowdeck.agent")
run_logger = logging.getLogger("flowdeck.agent.run")

# Copied from the agent's environment to every run: enough to find programs and decode text.
BASE_ENV_NAMES = ("PATH", "HOME", "LANG")
# Storage types a local process can load (an image is for the Docker and Kubernetes agents).
PROCESS_STORAGE_TYPES = ("module", "file", "git")
OUTPUT_TAIL_LINES = 30


def flowdeck_env(
    run: ClaimedRun, *, api_url: str, api_key: str, workspace: str | None
) -> dict[str, str]:
    """The ``FLOWDECK_*`` variables every flow-run process gets, whatever launches it."""
    env = {
        "FLOWDECK_API_URL": api_url,
        "FLOWDECK_API_KEY": api_key,
        "FLOWDECK_FLOW_RUN_ID": run.id,
        "FLOWDECK_ATTEMPT": str(run.attempt),
    }
    if workspace:
        env["FLOWDECK_WORKSPACE"] = workspace
    return env


def run_config_env(
    run: ClaimedRun, environ: Mapping[str, str], *, warn: bool = True
) -> dict[str, str]:
    """The values, from ``environ``, of the variables the run config names. A name the agent does
    not have is left out (and logged): the flow sees it unset, as it would on the agent."""
    values: dict[str, str] = {}
    for name in run.env_names:
        if name in environ:
            values[name] = environ[name]
        elif warn:
            logger.warning("Flow run %s needs %s (run_config.env), which is not set in the agent's environment",
                           run.id, name)
    return values


def client_settings(client: Client) -> tuple[str, str, str | None]:
    """The API URL, key and workspace the agent's client uses: the runs report with the same key."""
    api_key = getattr(client, "api_key", None)
    if not api_key:  # the client keeps its resolved settings on its connection
        settings = getattr(getattr(client, "_conn", None), "settings", None)
        api_key = getattr(settings, "api_key", None) or os.environ.get("FLOWDECK_API_KEY", "")
    workspace = client.workspace
    return str(client.api_url).rstrip("/"), str(api_key), str(workspace) if workspace else None


def build_process_env(
    run: ClaimedRun,
    *,
    environ: Mapping[str, str],
    api_url: str,
    api_key: str,
    workspace: str | None,
    run_file: Path,
    spool_dir: Path | None = None,
    env_vars: Mapping[str, str] | None = None,
    import_paths: Iterable[str] = (),
    agent_pid: int | None = None,
) -> dict[str, str]:
    """The complete environment of a flow-run subprocess (see the module docstring)."""
    env = _agent_env(environ, run_config_env(run, environ), env_vars, import_paths)
    # Set last: a run config cannot redirect a run to another server or key.
    env.update(flowdeck_env(run, api_url=api_url, api_key=api_key, workspace=workspace))
    env["FLOWDECK_FLOW_RUN_FILE"] = str(run_file)
    if spool_dir is not None:
        env["FLOWDECK_SPOOL_DIR"] = str(spool_dir)
    if agent_pid is not None:
        env["FLOWDECK_AGENT_PID"] = str(agent_pid)
    return env


def warm_process_env(
    *,
    environ: Mapping[str, str],
    env_vars: Mapping[str, str] | None = None,
    import_paths: Iterable[str] = (),
    agent_pid: int | None = None,
) -> dict[str, str]:
    """The environment a warm process starts with: what every run of the agent gets, without what
    a run's config or identity adds (it receives its run's complete environment at hand-over)."""
    env = _agent_env(environ, {}, env_vars, import_paths)
    if agent_pid is not None:
        env["FLOWDECK_AGENT_PID"] = str(agent_pid)
    return env


def _agent_env(environ: Mapping[str, str], run_values: Mapping[str, str], env_vars: Mapping[str, str] | None,
               import_paths: Iterable[str]) -> dict[str, str]:
    env = {name: environ[name] for name in BASE_ENV_NAMES if name in environ}
    env.update(run_values)
    env.update(env_vars or {})
    paths = [str(Path(p).expanduser().resolve()) for p in import_paths]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    # Output reaches the agent's log as it happens, not when a buffer fills.
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ProcessRunHandle(RunHandle):
    """A flow-run subprocess, leader of its own process group."""

    def __init__(self, run: ClaimedRun, process: subprocess.Popen[bytes], run_dir: Path, *, warm: bool = False) -> None:
        super().__init__(run)
        self.process = process
        self.run_dir = run_dir
        self.warm = warm  # a warm process took the run (its start-up was paid before the claim)
        self.tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        self.reader = threading.Thread(target=self._read_output, name=f"flowdeck-output-{run.id[:8]}", daemon=True)
        self.reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_output(self) -> None:
        stream: IO[bytes] | None = self.process.stdout
        if stream is None:
            return
        extra = {"flow_run_id": self.run.id, "attempt": self.run.attempt}
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.tail.append(line)
                run_logger.info("[%s] %s", self.run.name, line, extra=extra)
        stream.close()

    def poll(self) -> RunExit | None:
        code = self.process.poll()
        if code is None:
            return None
        self.reader.join(timeout=2)  # the last lines (e.g. a traceback) belong to the crash message
        if code < 0:
            return RunExit(code=None, signal=-code, reason=f"killed by {signal_name(-code)}")
        return RunExit(code=code, reason=f"exit code {code}")

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # already gone

    def terminate(self) -> None:
        """SIGTERM to the group: the flow-run process stops submitting tasks and ends Cancelled."""
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def output_tail(self) -> str:
        return "\n".join(self.tail)

    def cleanup(self) -> None:
        # Children the flow started and left behind go with it.
        self._signal_group(signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self.reader.join(timeout=2)
        spool = self.run_dir / "spool"
        if spool.is_dir() and any(spool.iterdir()):
            logger.warning("Flow run %s left undelivered reports in %s; keeping them", self.run.id, spool)
            return
        shutil.rmtree(self.run_dir, ignore_errors=True)


class ProcessAgent(Agent):
    """Runs each flow run as a local subprocess (Prefect 1's ``LocalAgent``).

    Args (besides :class:`~flowdeck.agent.base.Agent`'s):
        import_paths: directories put on the runs' ``PYTHONPATH`` (for ``module`` storage).
        working_dir: the runs' working directory (default: the agent's); relative ``file`` storage
            paths are resolved from it.
        python: the interpreter that runs the flows (default: the agent's).
        run_dir: where per-run files (the claim record, the report spool) go (default: the system
            temporary directory).
        environ: the environment the run config's variables are read from (default: the agent's).
        warm_processes: how many flow-run processes to keep started and waiting for a run (0: none,
            every run starts a new process); see :mod:`flowdeck.agent.warm`.
    """

    agent_type = "process"
    watch_interval = 0.2

    def __init__(
        self,
        client: Client,
        *,
        import_paths: Iterable[str] = (),
        working_dir: str | Path | None = None,
        python: str | None = None,
        run_dir: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
        warm_processes: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(client, **kwargs)
        self.import_paths = list(import_paths)
        self.working_dir = Path(working_dir).resolve() if working_dir else Path.cwd()
        self.python = python or sys.executable
        self.run_dir = Path(run_dir) if run_dir else None
        self.environ = environ if environ is not None else os.environ
        self.warm = WarmPool(warm_processes, python=self.python, cwd=self.working_dir, make_env=self._warm_env)

    def _warm_env(self) -> dict[str, str]:
        return warm_process_env(environ=self.environ, env_vars=self.env_vars, import_paths=self.import_paths,
                                agent_pid=os.getpid())

    def interpreter(self, run: ClaimedRun) -> str:
        """The Python that runs ``run`` (the agent's ``python``); a run that needs another one is
        launched cold."""
        return self.python

    # Warm processes start with the agent, are replaced on the claim loop, and end when it stops.
    def start_platform(self) -> None:
        self.warm.closed = False  # an agent started again after it stopped
        self.warm.tend()

    def tend(self) -> None:
        self.warm.tend()

    def stop_platform(self) -> None:
        self.warm.close()

    def check_storage(self, run: ClaimedRun) -> None:
        """Refuse what a local process cannot load, before starting anything."""
        kind = run.storage.get("type")
        if kind not in PROCESS_STORAGE_TYPES:
            raise LaunchError(
                f"The process agent cannot run a flow with {kind or 'no'} storage; it loads flows from "
                f"{', '.join(PROCESS_STORAGE_TYPES)} storage. Use a Docker or Kubernetes agent for image storage."
            )
        if kind == "file":
            path = Path(str(run.storage.get("path") or "")).expanduser()
            if not path.is_absolute():
                path = self.working_dir / path
            if not path.is_file():
                raise LaunchError(f"The flow file {path} does not exist on the agent's machine ({self.name}).")

    def launch(self, run: ClaimedRun) -> ProcessRunHandle:
        self.check_storage(run)
        root = self.run_dir
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix=f"flowdeck-run-{run.id[:8]}-", dir=root))
        run_file = run_dir / "flow_run.json"
        # The record holds the run's parameters: readable by this user only.
        fd = os.open(run_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(run.launch_record(lease_seconds=self.lease_seconds), f)
        api_url, api_key, workspace = client_settings(self.client)
        env = build_process_env(
            run, environ=self.environ, api_url=api_url, api_key=api_key, workspace=workspace,
            run_file=run_file, spool_dir=run_dir / "spool", env_vars=self.env_vars, import_paths=self.import_paths,
            agent_pid=os.getpid(),
        )
        python = self.interpreter(run)
        warm = self.warm.take(python=python, cwd=self.working_dir, env=env, what=f"flow run {run.id}")
        if warm is not None:
            process = warm.process
        else:
            try:
                process = subprocess.Popen(  # noqa: S603 (our own interpreter and module, no shell)
                    [python, "-m", "flowdeck.agent.execute"],
                    env=env,
                    cwd=self.working_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: killpg reaches the flow's children
                )
            except OSError as exc:
                shutil.rmtree(run_dir, ignore_errors=True)
                raise LaunchError(f"Could not start {python}: {exc}") from exc
        logger.info("Launched flow run %s (%s) as process %s%s", run.name, run.id, process.pid,
                    " (warm)" if warm else "", extra={"flow_run_id": run.id, "pid": process.pid, "warm": bool(warm)})
        return ProcessRunHandle(run, process, run_dir, warm=warm is not None)
