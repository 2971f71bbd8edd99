"""``flowdeck run --watch`` against the real server: it prints every state the run passes through,
in order, from the run's state history (a crash and its AwaitingRetry are shown even when they
come and go between two polls), and it rides out a server restart instead of giving up while the
run goes on."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from flowdeck.client import Client
from tests.conftest import WorkspaceWorld
from tests.sdk.client.live import client_for, metadata
from tests.sdk.conftest import LiveServer

FLOWDECK = Path(sys.executable).parent / "flowdeck"
FLOW_RUN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d flow run (.+)$")
CLAIMED = "→ PENDING (Pending): Claimed by agent watch-test-agent"


class Watch:
    """A `flowdeck run … --watch` subprocess whose output is collected line by line as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([str(FLOWDECK), "run", "etl", "--watch", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None or condition(), (
                f"the watch exited ({self.proc.returncode}) before {what}:\n" + self.output())
            assert time.monotonic() < deadline, f"no {what} within {timeout}s:\n" + self.output()
            time.sleep(0.05)

    def flow_run_lines(self) -> list[str]:
        """What the watch printed about the run's states, without the timestamps."""
        return [match.group(1) for line in self.stdout if (match := FLOW_RUN_LINE.match(line))]

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.stdout)

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def output(self) -> str:
        return "\n".join(["--- stdout", *self.stdout, "--- stderr", *self.stderr])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def dev_env(sdk_env: dict[str, str], live_world: WorkspaceWorld) -> dict[str, str]:
    return {**sdk_env, "FLOWDECK_API_KEY": live_world.keys["developer"]}


@pytest.fixture
def flow_id(live_server_url: str, live_world: WorkspaceWorld) -> str:
    version, _ = client_for(live_server_url, live_world, "developer").register_flow(
        project="data", name="etl", metadata=metadata())
    return str(version["flow"])


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for watch in started:
        watch.kill()


class Agent:
    """The agent's side of the protocol, spoken directly: claim the CLI's run and report states."""

    def __init__(self, url: str, world: WorkspaceWorld) -> None:
        self.client = Client(url, world.keys["agent"], world.workspace.slug, retries=8, backoff_max=2)
        self.id = self.client.register_agent("watch-test-agent", "process", [], "0.1.0", 5)["id"]

    def claim(self, attempt: int) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            claimed = self.client.claim(self.id, limit=1, lease_seconds=60)
            if claimed:
                assert claimed[0]["attempt"] == attempt
                return str(claimed[0]["id"])
            time.sleep(0.1)
        raise AssertionError("the CLI's run was never claimable")

    def propose(self, run_id: str, attempt: int, state_type: str, message: str = "") -> dict[str, Any]:
        return self.client.set_flow_run_state(run_id, {"type": state_type, "message": message}, attempt=attempt)


def test_a_crash_and_its_retry_are_shown_even_between_two_polls(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, flow_id: str,
    watches: list[Watch],
) -> None:
    # Given a watch that polls every 2 s, when the run crashes, is retried and starts again
    # quicker than that (the old watch showed RUNNING, then RUNNING again, and missed the crash) …
    watch = Watch(dev_env, "--poll-interval", "2")
    watches.append(watch)
    agent = Agent(live_server_url, live_world)
    run_id = agent.claim(attempt=1)
    agent.propose(run_id, 1, "RUNNING")
    watch.wait_for(lambda: watch.printed("flow run → RUNNING"), "RUNNING line")
    answer = agent.propose(run_id, 1, "CRASHED", "the flow-run process was killed (signal 9)")
    assert answer["state"]["name"] == "AwaitingRetry"
    assert agent.claim(attempt=2) == run_id
    agent.propose(run_id, 2, "RUNNING")
    agent.propose(run_id, 2, "COMPLETED")

    # … then it prints every state, in order, and exits 0 with the run COMPLETED.
    assert watch.finish() == 0, watch.output()
    assert watch.flow_run_lines() == [
        "→ SCHEDULED (Scheduled)",
        CLAIMED,
        "→ RUNNING (Running)",
        "✗ CRASHED on attempt 1: the flow-run process was killed (signal 9)",
        "→ SCHEDULED (AwaitingRetry): Crashed on attempt 1: the flow-run process was killed (signal 9)",
        CLAIMED,
        "→ RUNNING (Running)",
        "→ COMPLETED (Completed)",
    ], watch.output()
    assert watch.printed("finished: COMPLETED")


def test_the_watch_rides_out_a_server_restart_and_exits_with_the_outcome(
    dev_env: dict[str, str], flowdeck_server: LiveServer, live_server_url: str, live_world: WorkspaceWorld,
    flow_id: str, watches: list[Watch],
) -> None:
    watch = Watch(dev_env, "--poll-interval", "0.2")
    watches.append(watch)
    agent = Agent(live_server_url, live_world)
    run_id = agent.claim(attempt=1)
    agent.propose(run_id, 1, "RUNNING")
    watch.wait_for(lambda: watch.printed("flow run → RUNNING"), "RUNNING line")

    # The server goes away for longer than the old watch's four connection attempts lasted.
    flowdeck_server.stop()
    try:
        watch.wait_for(lambda: any("Server unreachable, retrying" in line for line in watch.stderr),
                       "'server unreachable' line")
        outage_ends = time.monotonic() + 6
        while time.monotonic() < outage_ends:
            assert watch.proc.poll() is None, "the watch gave up while the run goes on:\n" + watch.output()
            time.sleep(0.2)
    finally:
        flowdeck_server.start()

    agent.propose(run_id, 1, "COMPLETED")
    assert watch.finish() == 0, watch.output()
    assert any("Server reachable again" in line for line in watch.stderr), watch.output()
    assert watch.printed("flow run → COMPLETED (Completed)")
    assert watch.printed("finished: COMPLETED")
    # Every state once, in order, across the outage.
    assert watch.flow_run_lines() == ["→ SCHEDULED (Scheduled)", CLAIMED, "→ RUNNING (Running)",
                                      "→ COMPLETED (Completed)"], watch.output()


def test_a_cancelled_run_exits_6_not_the_usage_code(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, flow_id: str,
    watches: list[Watch],
) -> None:
    watch = Watch(dev_env, "--poll-interval", "0.2")
    watches.append(watch)
    agent = Agent(live_server_url, live_world)
    run_id = agent.claim(attempt=1)
    client_for(live_server_url, live_world, "developer").cancel_flow_run(run_id)
    agent.propose(run_id, 1, "CANCELLED", "stopped by the agent")
    assert watch.finish() == 6, watch.output()
    assert watch.printed("flow run → CANCELLED")
