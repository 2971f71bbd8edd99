"""What the end-to-end tests drive: the real `flowdeck` CLI and `flowdeck agent start` processes
against the real server (``tests/sdk/conftest.py``), watched through the REST API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowdeck.client import Client
from tests.conftest import WorkspaceWorld

FLOWDECK = str(Path(sys.executable).parent / "flowdeck")
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def developer(url: str, world: WorkspaceWorld) -> Client:
    return Client(api_url=url, api_key=world.keys["developer"], workspace=world.workspace.slug, retries=2)


def write_flow(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWDECK, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def register(env: dict[str, str], world: WorkspaceWorld, path: Path, project: str = "e2e") -> dict[str, str]:
    """`flowdeck register` with a developer's key; returns {flow name: flow id}."""
    dev_env = {**env, "FLOWDECK_API_KEY": world.keys["developer"]}
    result = cli(dev_env, "register", str(path), "--project", project, "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    return {item["flow"]: item["flow_id"] for item in json.loads(result.stdout)}


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    labels: tuple[str, ...] = field(default_factory=tuple)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_agent(env: dict[str, str], tmp: Path, *labels: str, name: str, lease: int = 10,
                extra: Iterable[str] = ()) -> AgentProcess:
    args = [FLOWDECK, "agent", "start", "--name", name, "--poll-interval", "0.5", "--lease", str(lease),
            "--grace-period", "5", *extra]
    for label in labels:
        args += ["--label", label]
    log_path = tmp / f"agent-{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, env={**env, "FLOWDECK_SPOOL_DIR": str(tmp / f"spool-{name}")},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return AgentProcess(proc=proc, log_path=log_path, labels=labels)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_for_state(client: Client, run_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = client.get_flow_run(run_id)
        return run if run["state_type"] in states else None

    return wait_for(reached, timeout, f"run {run_id} to reach {sorted(states)}")  # type: ignore[no-any-return]


def all_logs(client: Client, run_id: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        page = client.list_logs(run_id, after_sequence=after, limit=1000)
        lines += page["results"]
        if not page["results"] or page.get("next_after_sequence") is None:
            return lines
        after = page["next_after_sequence"]


def env_without_proxy() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
