"""What the ``flowdeck`` CLI prints, run as a subprocess against the real live server (and, for a
watched run, a real ``flowdeck agent start``): every state of a fast run, a run's state history and
task runs in ``runs show``, whole ids when piped, plain ``--help`` and progress only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import WorkspaceWorld
from tests.sdk.client.live import claimed_run, client_for, metadata
from tests.sdk.e2e.harness import FLOWDECK, register, start_agent, write_flow

FLOW_RUN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d flow run → (\w+)")

FAST_FLOW = """
from flowdeck import Flow, task


@task
def one():
    return 1


with Flow("fast") as fast:
    one()
"""


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWDECK, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def on_a_terminal(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with its stdout and stderr on a pseudo-terminal; return the exit code and all it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([FLOWDECK, *args], env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    code = proc.wait(10)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.fixture
def dev_env(sdk_env: dict[str, str], live_world: WorkspaceWorld) -> dict[str, str]:
    return {**sdk_env, "FLOWDECK_API_KEY": live_world.keys["developer"]}


def test_run_watch_prints_every_state_of_a_fast_run(
    sdk_env: dict[str, str], dev_env: dict[str, str], live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    # A run that an agent finishes well within one poll interval of the watch.
    register(sdk_env, live_world, write_flow(tmp_path, "fast_flow", FAST_FLOW))
    agent = start_agent(sdk_env, tmp_path, name="fast-agent")
    try:
        result = cli("run", "fast", "--watch", "--poll-interval", "3", env=dev_env, timeout=90)
    finally:
        agent.stop()
    assert result.returncode == 0, result.stdout + result.stderr + agent.log()
    states = [m.group(1) for line in result.stdout.splitlines() if (m := FLOW_RUN_LINE.match(line))]
    assert states == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"], result.stdout


def _finished_run(url: str, world: WorkspaceWorld) -> str:
    """A run an agent took through RUNNING to COMPLETED, with an unmapped task and a mapped child."""
    run = claimed_run(url, world, ["extract", "load"])
    run.agent.set_flow_run_state(run.run_id, {"type": "RUNNING"}, attempt=run.attempt)
    run.agent.report_task_runs(run.run_id, attempt=run.attempt, reports=[
        {"task_key": "extract", "map_index": -1, "state": {"type": "COMPLETED"}},
        {"task_key": "load", "map_index": 0, "state": {"type": "COMPLETED"}},
    ])
    run.agent.set_flow_run_state(run.run_id, {"type": "COMPLETED", "message": "all done"}, attempt=run.attempt)
    return run.run_id


def test_runs_show_prints_the_state_history_and_no_map_index_for_unmapped_tasks(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld
) -> None:
    run_id = _finished_run(live_server_url, live_world)
    result = cli("runs", "show", run_id, env=dev_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    history = [m.group(1) for line in lines if (m := FLOW_RUN_LINE.match(line))]
    assert history == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"], result.stdout
    assert "State history:" in result.stdout and "flow run → COMPLETED (Completed): all done" in result.stdout
    [extract] = [line for line in lines if line.startswith("extract ")]
    [load] = [line for line in lines if line.startswith("load ")]
    assert "-1" not in extract.split(), extract
    assert extract.split()[1] == "COMPLETED", extract  # straight from the name to the state: no index
    assert load.split()[1] == "0", load
    shown = json.loads(cli("runs", "show", run_id, "-o", "json", env=dev_env).stdout)
    assert [s["type"] for s in shown["states"]] == history


def test_piped_runs_list_prints_each_id_whole_on_one_line(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld
) -> None:
    developer = client_for(live_server_url, live_world, "developer")
    version, _ = developer.register_flow(project="data", name="a-flow-with-a-rather-long-name", metadata=metadata())
    runs = [developer.create_flow_run(version["flow"], name=f"nightly-backfill-of-customer-{n}",
                                      labels=["region-eu-west-1", "gpu"]) for n in range(3)]
    result = cli("runs", "list", env={**dev_env, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "FLOW", "NAME", "STATE", "ATTEMPT", "SCHEDULED", "LABELS"]
    assert len(lines) == 1 + len(runs), result.stdout  # one line per run: nothing wrapped
    for line, run in zip(lines[1:], reversed(runs), strict=True):
        assert line.split()[0] == run["id"], line
        assert f"nightly-backfill-of-customer-{runs.index(run)}" in line and "region-eu-west-1,gpu" in line


def test_help_shows_no_type_after_plain_flags() -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    for command in (["run"], ["runs", "logs"], ["version"], ["alerts", "list"], ["agent", "start"]):
        result = cli(*command, "--help", env=env)
        assert result.returncode == 0, result.stderr
        assert "<bool>" not in result.stdout, (command, result.stdout)
    help_text = cli("run", "--help", env=env).stdout
    assert re.search(r"--watch\s+-w\s+Follow states", help_text), help_text
    assert "<float range>" in help_text  # options that take a value still say what it is


BIG_FLOW = """
from flowdeck import Flow, task


@task
def step(x):
    return x


with Flow("big") as big:
    value = 0
    for _ in range(300):
        value = step(value)
"""


def test_register_shows_progress_on_a_terminal_only(dev_env: dict[str, str], tmp_path: Path) -> None:
    path = write_flow(tmp_path, "big_flow", BIG_FLOW)
    code, shown = on_a_terminal("register", str(path), "--project", "big", env={**dev_env, "TERM": "xterm"})
    assert code == 0, shown
    assert "Registering flow 'big' (300 tasks)" in shown, shown
    assert "Flow 'big' in project 'big': registered as new version 1" in shown
    piped = cli("register", str(path), "--project", "big", env=dev_env)
    assert piped.returncode == 0, piped.stderr
    assert "Registering" not in piped.stdout + piped.stderr
    assert piped.stderr == ""
    [line] = piped.stdout.splitlines()  # the result alone, no progress drawn in between
    assert line.startswith("Flow 'big' in project 'big': unchanged, still version 1 (flow id "), line


def test_bulk_submit_creates_every_run_with_progress_on_a_terminal_only(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    developer = client_for(live_server_url, live_world, "developer")
    version, _ = developer.register_flow(project="data", name="etl", metadata=metadata(
        parameters=[{"name": "n", "type": "int", "default": 0, "required": False}]))
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"parameters": {"n": n}, "labels": ["bulk"]}) + "\n" for n in range(1200)))
    code, shown = on_a_terminal("runs", "submit", "etl", str(many), env={**dev_env, "TERM": "xterm"})
    assert code == 0, shown
    assert "Submitting 1200 runs of 'etl'" in shown, shown  # more than one request (500 a request)
    assert "Created 1200 runs of 'etl'." in shown
    created = developer.list_flow_runs(flow=version["flow"], limit=2000)
    assert sorted(run["parameters"]["n"] for run in created) == list(range(1200))

    few = tmp_path / "few.json"
    few.write_text(json.dumps([{"parameters": {"n": n}, "name": f"backfill-{n}", "idempotency_key": f"day-{n}"}
                               for n in range(3)]))
    piped = cli("runs", "submit", "etl", str(few), env=dev_env)
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0] == "Created 3 runs of 'etl'." and len(lines) == 4, piped.stdout
    assert "Submitting" not in piped.stdout + piped.stderr
    names = {run["id"]: run["name"] for run in developer.list_flow_runs(flow=version["flow"], limit=2000)}
    assert [names[run_id] for run_id in lines[1:]] == ["backfill-0", "backfill-1", "backfill-2"]
    # With keys in the file, submitting it again creates nothing new.
    again = json.loads(cli("runs", "submit", "etl", str(few), "-o", "json", env=dev_env).stdout)
    assert again["ids"] == lines[1:]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"parameters": {"n": 1}}\n{"flow": "elsewhere"}\n')
    refused = cli("runs", "submit", "etl", str(bad), env=dev_env)
    assert refused.returncode == 2 and "item 2" in refused.stderr, refused.stderr


def test_agent_start_up_says_what_it_is_doing_on_a_terminal(sdk_env: dict[str, str]) -> None:
    """A server that does not answer yet: the terminal shows the step the agent waits on, not nothing."""
    import signal
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**sdk_env, "FLOWDECK_API_URL": url, "FLOWDECK_API_KEY": sdk_env.get("FLOWDECK_API_KEY") or "fd_sa_x",
           "TERM": "xterm", "COLUMNS": "120"}
    leader, follower = pty.openpty()
    proc = subprocess.Popen([FLOWDECK, "agent", "start", "--workspace", "acme", "--no-live"], env=env,
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and b"registering with" not in shown:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                shown += os.read(leader, 65536)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        os.close(leader)
    text = shown.decode(errors="replace")
    assert "Starting the agent:" in text and f"registering with {url}" in text, text
