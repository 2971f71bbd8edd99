"""Helpers of the agent tests that run against the real Flowdeck server (``live_server_url``): flows
written to files and registered with their real metadata, runs created through the API, agents run
in a thread of the test process (so a test can look at the processes they launched) or as a real
``flowdeck agent start`` process."""

from __future__ import annotations

import runpy
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowdeck.agent.base import Agent
from flowdeck.client import Client

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class AgentThread:
    agent: Agent
    thread: threading.Thread
    result: list[int] = field(default_factory=list)

    def stop(self, timeout: float = 30) -> int:
        self.agent.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the agent did not stop"
        return self.result[0]


@dataclass
class Live:
    """A committed workspace on the live server, seen with the developer's and the agent's keys."""

    url: str
    workspace: str
    developer_key: str
    agent_key: str
    directory: Path
    developer: Client = field(init=False)
    threads: list[AgentThread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.developer = Client(self.url, self.developer_key, self.workspace, retries=1)

    def agent_client(self, **kwargs: Any) -> Client:
        return Client(self.url, self.agent_key, self.workspace, **{"retries": 1, "timeout": 10.0, **kwargs})

    def flow_file(self, name: str, body: str) -> Path:
        """Write a flow script; ``body`` defines the flow (``flow``) and its tasks."""
        path = self.directory / f"{name.replace('-', '_')}.py"
        header = "import logging, os, time\nfrom flowdeck import Flow, Parameter, task\n"
        path.write_text(header + textwrap.dedent(body))
        return path

    def register(self, name: str, body: str, *, labels: Iterable[str] = (), run_config: dict[str, Any] | None = None,
                 storage: dict[str, Any] | None = None) -> str:
        """Register the flow a script defines, with its real metadata (``flow.serialize()``); returns
        the flow id. ``storage`` overrides the file storage (e.g. to break it)."""
        path = self.flow_file(name, body)
        flow = runpy.run_path(str(path), run_name="__flowdeck_test__")["flow"]
        metadata = flow.serialize()
        metadata["storage"] = storage or {"type": "file", "path": str(path), "flow_name": flow.name}
        metadata["labels"] = sorted(labels)
        metadata["run_config"] = run_config or {}
        version, _ = self.developer.register_flow(project="agent-tests", name=flow.name, metadata=metadata)
        return str(version["flow"])

    def create_run(self, flow_id: str, **kwargs: Any) -> str:
        return str(self.developer.create_flow_run(flow_id, **kwargs)["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        return self.developer.get_flow_run(run_id)

    def wait_state(self, run_id: str, *types: str, timeout: float = 30) -> dict[str, Any]:
        wanted = types or TERMINAL
        try:
            return wait_for(lambda: (r := self.run(run_id))["state_type"] in wanted and r, timeout=timeout,
                            what=f"run {run_id} to be {'/'.join(wanted)}")
        except AssertionError as exc:
            now = self.run(run_id)
            raise AssertionError(f"{exc} (it is {now['state_type']} {now['state_name']}: {now['state_message']})")

    def logs(self, run_id: str) -> list[str]:
        return [line["message"] for line in self.developer.list_logs(run_id, limit=200)["results"]]

    def start_agent(self, agent_class: type[Agent], **kwargs: Any) -> AgentThread:
        options: dict[str, Any] = {"poll_interval": 0.2, "grace_period": 10.0, "kill_grace": 1.0,
                                   "name": f"test-{agent_class.agent_type}-{len(self.threads)}"}
        options.update(kwargs)
        client = options.pop("client", None) or self.agent_client()
        agent = agent_class(client, **options)
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(agent.start()), name=agent.name, daemon=True)
        handle = AgentThread(agent, thread, result)
        self.threads.append(handle)
        thread.start()
        return handle

    def close(self) -> None:
        for handle in self.threads:
            if handle.thread.is_alive():
                handle.agent.request_stop()
                handle.agent.request_stop()  # at once: kill what is left
                handle.thread.join(30)
        self.developer.close()
