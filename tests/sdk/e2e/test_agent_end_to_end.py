"""End to end, with real processes: the Flowdeck server (uvicorn, PostgreSQL, Redis), flows registered
with the `flowdeck register` CLI, and `flowdeck agent start` processes that claim runs and execute
them in subprocesses. Everything is observed through the server's REST API, as a person would.

Covers the issue's scenarios and, from the agent's side, D2 (a stale attempt stops), D4 (reports
applied once), G1 (`kill -9` of an agent → CRASHED and retried elsewhere) and G4 (an agent cut off
from the server delivers its buffered reports exactly once)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.sdk.e2e.harness import (
    TERMINAL,
    all_logs,
    developer,
    register,
    start_agent,
    wait_for,
    wait_for_state,
    write_flow,
)

pytestmark = pytest.mark.postgres

FLOWS = '''
import logging
import os
import time
from datetime import timedelta
from pathlib import Path

from flowdeck import Flow, Parameter, task, unmapped

log = logging.getLogger("e2e")


@task
def numbers(n):
    return list(range(n))


@task
def square(x):
    return x * x


@task
def total(squares):
    log.info("total of %d squares is %d", len(squares), sum(squares))
    return sum(squares)


with Flow("map-reduce") as map_reduce:
    n = Parameter("n", default=3)
    total(square.map(numbers(n)))


@task(retries=2, retry_delay=timedelta(seconds=0))
def flaky():
    log.warning("flaky attempt")
    raise ValueError("the warehouse is closed")


@task
def after_flaky(value):
    return value


with Flow("always-fails") as always_fails:
    after_flaky(flaky())


@task
def sleeper(seconds, marker):
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return seconds


with Flow("sleepy") as sleepy:
    sleeper(Parameter("seconds", default=30), Parameter("marker", default=""))


@task
def step(i, pause):
    log.info("step %d", i)
    time.sleep(pause)
    return i


with Flow("steps") as steps:
    pause = Parameter("pause", default=0.5)
    step.map(list(range(30)), pause=unmapped(pause))
'''


@pytest.fixture
def flows(sdk_env, live_world, tmp_path) -> dict[str, str]:
    path = write_flow(tmp_path, "e2e_flows", FLOWS)
    return register(sdk_env, live_world, path)


def task_states(run: dict) -> Counter:
    return Counter((t["task_key"], t["state_type"]) for t in run["task_runs"])


def test_a_quick_run_is_picked_up_and_completes_with_task_states_and_logs(
    live_server_url, live_world, sdk_env, tmp_path, flows
):
    # given: an agent, and a quick run of a flow that maps over 100 elements
    agent = start_agent(sdk_env, tmp_path, name="e2e-agent")
    client = developer(live_server_url, live_world)
    try:
        run = client.create_flow_run(flows["map-reduce"], parameters={"n": 100})
        # when
        done = wait_for_state(client, run["id"], TERMINAL, timeout=60)
        # then: completed, the parameter went through (100 mapped children) and every task is known
        assert done["state_type"] == "COMPLETED", (done, agent.log())
        states = task_states(done)
        assert states[("square", "COMPLETED")] == 101  # the mapped parent and its 100 children
        assert states[("numbers", "COMPLETED")] == 1 and states[("total", "COMPLETED")] == 1
        assert states[("n", "COMPLETED")] == 1  # a Parameter is a task, as in Prefect 1
        assert sum(states.values()) == 104
        children = sorted(t["map_index"] for t in done["task_runs"] if t["task_key"] == "square")
        assert children == list(range(-1, 100))
        assert [s["type"] for s in done["states"]][-3:] == ["PENDING", "RUNNING", "COMPLETED"]
        # and: Python logging inside the task reached the server, linked to its task run
        lines = all_logs(client, run["id"])
        mine = [line for line in lines if line["message"] == "total of 100 squares is 328350"]
        assert len(mine) == 1
        total_run = next(t for t in done["task_runs"] if t["task_key"] == "total")
        assert mine[0]["task_run"] == total_run["id"]
    finally:
        agent.stop()


def test_a_failing_task_is_retried_then_fails_the_flow_run(live_server_url, live_world, sdk_env, tmp_path, flows):
    agent = start_agent(sdk_env, tmp_path, name="e2e-agent")
    client = developer(live_server_url, live_world)
    try:
        run = client.create_flow_run(flows["always-fails"])
        done = wait_for_state(client, run["id"], TERMINAL, timeout=60)
        assert done["state_type"] == "FAILED", (done, agent.log())
        by_key = {t["task_key"]: t for t in done["task_runs"]}
        assert by_key["flaky"]["state_type"] == "FAILED"
        # the downstream task never ran: its trigger failed
        assert by_key["after_flaky"]["state_type"] == "FAILED"
        assert by_key["after_flaky"]["state_name"] == "TriggerFailed"
        attempts = [line for line in all_logs(client, run["id"]) if line["message"] == "flaky attempt"]
        assert len(attempts) == 3  # the first try and two retries
    finally:
        agent.stop()


def test_cancelling_a_running_run_kills_its_process(live_server_url, live_world, sdk_env, tmp_path, flows):
    agent = start_agent(sdk_env, tmp_path, name="e2e-agent")
    client = developer(live_server_url, live_world)
    marker = tmp_path / "sleeper.pid"
    try:
        run = client.create_flow_run(flows["sleepy"], parameters={"seconds": 60, "marker": str(marker)})
        # The file exists a moment before its text is written: wait for the pid itself.
        pid = int(wait_for(lambda: marker.exists() and marker.read_text().strip(), 30, "the task to write its pid"))
        # when
        started = time.monotonic()
        client.cancel_flow_run(run["id"])
        done = wait_for_state(client, run["id"], TERMINAL, timeout=20)
        # then
        assert done["state_type"] == "CANCELLED", (done, agent.log())
        assert time.monotonic() - started < 15
        wait_for(lambda: not _alive(pid), 10, "the flow-run process to be gone")
    finally:
        agent.stop()


def test_g4_a_server_outage_during_a_run_loses_and_duplicates_nothing(
    flowdeck_server, live_world, sdk_env, tmp_path, flows
):
    # given: a run of 30 steps that log, spread over ~15 s, under an agent whose lease (60 s)
    # outlasts the outage
    agent = start_agent(sdk_env, tmp_path, name="e2e-agent", lease=60)
    client = developer(flowdeck_server.url, live_world)
    try:
        run = client.create_flow_run(flows["steps"], parameters={"pause": 0.5})
        wait_for_state(client, run["id"], {"RUNNING"}, timeout=30)
        # when: the server goes away for 10 s in the middle of it
        flowdeck_server.stop()
        time.sleep(10)
        flowdeck_server.start()
        # then: the run finishes and everything arrived exactly once
        done = wait_for_state(client, run["id"], TERMINAL, timeout=90)
        assert done["state_type"] == "COMPLETED", (done, agent.log())
        states = task_states(done)
        assert states[("step", "COMPLETED")] == 31
        lines = all_logs(client, run["id"])
        steps = Counter(line["message"] for line in lines if line["message"].startswith("step "))
        assert steps == Counter({f"step {i}": 1 for i in range(30)})
        sequences = [line["sequence"] for line in lines]
        assert len(sequences) == len(set(sequences))
        history = [s["type"] for s in done["states"]]
        assert history.count("RUNNING") == 1 and history[-1] == "COMPLETED"
    finally:
        if flowdeck_server.proc is None:
            flowdeck_server.start()
        agent.stop()


def test_two_agents_with_different_labels_each_get_only_their_runs(
    live_server_url, live_world, sdk_env, tmp_path, flows
):
    east = start_agent(sdk_env, tmp_path, "east", name="agent-east")
    west = start_agent(sdk_env, tmp_path, "west", name="agent-west")
    client = developer(live_server_url, live_world)
    try:
        runs = {label: [client.create_flow_run(flows["map-reduce"], labels=[label])["id"] for _ in range(3)]
                for label in ("east", "west")}
        agents = wait_for(lambda: (found := {a["name"]: a["id"] for a in client.list_agents()}).keys()
                          >= {"agent-east", "agent-west"} and found, 30, "both agents to register")
        for label, ids in runs.items():
            for run_id in ids:
                done = wait_for_state(client, run_id, TERMINAL, timeout=60)
                assert done["state_type"] == "COMPLETED", done
                assert done["agent"] == agents[f"agent-{label}"]
    finally:
        east.stop()
        west.stop()


def test_g4_an_agent_cut_off_past_its_lease_gets_409_and_stops_while_the_retry_completes(
    flowdeck_server, flowdeck_server_with_periodic, live_world, sdk_env, tmp_path, flows
):
    # given: an agent (lease 10 s) on one server, the reaper sweeping from another on the same database
    agent = start_agent(sdk_env, tmp_path, name="e2e-agent")
    client = developer(flowdeck_server_with_periodic.url, live_world)
    try:
        run = client.create_flow_run(flows["steps"], parameters={"pause": 0.5})
        wait_for_state(client, run["id"], {"RUNNING"}, timeout=30)
        # when: the agent's server is gone for longer than the lease
        flowdeck_server.stop()
        retried = wait_for(lambda: (r := client.get_flow_run(run["id"]))["attempt"] == 2 and r, 40,
                           "the reaper to retry the run")
        flowdeck_server.start()
        # then: attempt 1 learns it is over (409) and stops; attempt 2 runs to the end
        done = wait_for_state(client, run["id"], TERMINAL, timeout=90)
        assert done["state_type"] == "COMPLETED", (done, agent.log())
        assert done["attempt"] == 2 and retried["attempt"] == 2
        # (the flow-run process's 409, or the agent's heartbeat telling it the run is held elsewhere:
        # whichever lands first stops attempt 1, and each says so in the agent's log)
        log = agent.log()
        assert any(sign in log for sign in ("attempt is over", "stale_attempt", "run_not_held",
                                            "no longer held by this agent")), log
        # and: attempt 1's late reports changed nothing: every task run ended in attempt 2's states
        assert task_states(done)[("step", "COMPLETED")] == 31
        history = [s["type"] for s in done["states"]]
        assert history[-1] == "COMPLETED" and history.count("COMPLETED") == 1
    finally:
        if flowdeck_server.proc is None:
            flowdeck_server.start()
        agent.stop()


def test_g1_kill_9_of_the_agent_crashes_the_run_and_another_agent_retries_it(
    flowdeck_server_with_periodic, live_world, sdk_env, tmp_path, flows
):
    # given: the server with its reaper sweeping every second, an agent running a long task
    url = flowdeck_server_with_periodic.url
    env = {**sdk_env, "FLOWDECK_API_URL": url}
    client = developer(url, live_world)
    marker = tmp_path / "sleeper.pid"
    first = start_agent(env, tmp_path, name="doomed")
    run = client.create_flow_run(flows["sleepy"], parameters={"seconds": 6, "marker": str(marker)})
    wait_for(marker.exists, 30, "the task to start")
    assert client.get_flow_run(run["id"])["attempt"] == 1
    # when: the agent is killed without a chance to say anything
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    # then: within the lease (10 s) and a sweep, the run is crashed and scheduled again
    retried = wait_for(lambda: (r := client.get_flow_run(run["id"]))["attempt"] == 2 and r, 40,
                       "the reaper to crash and retry the run")
    # the reaper's CRASHED became the retry itself (RetryCrashedFlowRuns), with the reason
    crash = next(s for s in retried["states"] if s["name"] == "AwaitingRetry")
    assert "heartbeat" in crash["message"], crash
    # and: another agent picks attempt 2 up and finishes it
    second = start_agent(env, tmp_path, name="rescuer")
    try:
        done = wait_for_state(client, run["id"], TERMINAL, timeout=60)
        assert done["state_type"] == "COMPLETED", (done, second.log())
        assert done["attempt"] == 2
        assert {t["task_key"]: t["state_type"] for t in done["task_runs"]} == {
            "sleeper": "COMPLETED", "seconds": "COMPLETED", "marker": "COMPLETED"}
    finally:
        second.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: its parent just has not reaped it
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()
