"""Flow of flows (Prefect 1's ``prefect.tasks.prefect``) against the real server: ``flowdeck.tasks.
flowdeck``'s ``create_flow_run``, ``wait_for_flow_run``, ``get_task_run_result`` and ``StartFlowRun``.

End to end, a real ``flowdeck agent start`` process runs a parent flow whose tasks start a child
run, wait for it and read its task results (written by the child's ``LocalResult``); the child is
linked to its parent on the server. A retried task finds the child its first attempt created; a
child that fails fails the waiting task. Without an agent, the tasks run in this process against
the same server: the parent link and the default idempotency key only exist inside an agent's run,
and an agent key that may not start runs gets an answer saying which key to give."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowdeck
from flowdeck.client.errors import NotFoundError, PermissionDeniedError
from flowdeck.engine import signals
from flowdeck.tasks.flowdeck import (
    ENV_CHILD_RUNS_API_KEY,
    FlowRunView,
    StartFlowRun,
    create_flow_run,
    get_task_run_result,
    wait_for_flow_run,
)
from tests.sdk.e2e.harness import TERMINAL, all_logs, developer, register, start_agent, wait_for_state, write_flow

pytestmark = pytest.mark.postgres

CHILDREN = '''
from flowdeck import Flow, Parameter, task
from flowdeck.engine.results import LocalResult

shared = LocalResult(dir={results!r})


@task(result=shared)
def numbers(n):
    return list(range(n))


@task(result=shared)
def square(x):
    return x * x


@task(result=shared)
def total(squares):
    return sum(squares)


with Flow("child") as child:
    total(square.map(numbers(Parameter("n", default=3))))


@task
def broken():
    raise ValueError("the child broke")


with Flow("broken-child") as broken_child:
    broken()
'''

PARENTS = '''
import logging

import flowdeck
from flowdeck import Flow, task
from flowdeck.run_configs import LocalRun
from flowdeck.tasks.flowdeck import StartFlowRun, create_flow_run, get_task_run_result, wait_for_flow_run

log = logging.getLogger("parents")
key = LocalRun(env=["FLOWDECK_CHILD_RUNS_API_KEY"])


@task
def report(child, total, squares, one_square):
    log.info("child %s ended %s with total %s, squares %s, square[2] %s", child.flow_run_id, child.state_type,
             total, squares, one_square)


@task(retries=1)
def start_child_then_lose_the_answer():
    child_id = create_flow_run.run(flow_name="child", project_name="e2e", parameters={{"n": 2}})
    if flowdeck.context.get("task_run_count", 1) == 1:
        raise RuntimeError("the answer was lost")
    log.info("retried start made %s", child_id)
    return child_id


with Flow("parent", run_config=key) as parent:
    child_id = create_flow_run(flow_name="child", project_name="e2e", parameters={{"n": 4}})
    child = wait_for_flow_run(child_id, raise_final_state=True, stream_logs=True)
    report(child, get_task_run_result(child_id, "total", upstream_tasks=[child]),
           get_task_run_result(child_id, "square", upstream_tasks=[child]),
           get_task_run_result(child_id, "square", map_index=2, upstream_tasks=[child]))
    start_child_then_lose_the_answer()


with Flow("parent-of-broken", run_config=key) as parent_of_broken:
    wait_for_flow_run(create_flow_run(flow_name="broken-child", project_name="e2e"), raise_final_state=True)


with Flow("legacy-parent", run_config=key) as legacy_parent:
    StartFlowRun(flow_name="child", project_name="e2e", parameters={{"n": 3}}, wait=True)()
'''


@pytest.fixture
def flows(sdk_env, live_world, tmp_path) -> dict[str, str]:
    results = tmp_path / "shared-results"
    results.mkdir()
    ids = register(sdk_env, live_world, write_flow(tmp_path, "children", CHILDREN.format(results=str(results))))
    ids.update(register(sdk_env, live_world, write_flow(tmp_path, "parents", PARENTS.format())))
    return ids


@pytest.fixture
def in_process_env(monkeypatch, live_server_url, live_world, tmp_path) -> None:
    """This process's SDK configuration: the live server with a developer's key."""
    for name, value in {"FLOWDECK_API_URL": live_server_url, "FLOWDECK_API_KEY": live_world.keys["developer"],
                        "FLOWDECK_WORKSPACE": live_world.workspace.slug,
                        "FLOWDECK_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(ENV_CHILD_RUNS_API_KEY, raising=False)


def _children(client, parent_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return client.list_flow_runs(parent_flow_run=parent_id, limit=None)


def test_a_parent_run_starts_a_child_waits_for_it_and_reads_its_results(
    live_server_url, live_world, sdk_env, tmp_path, flows
):
    # given: an agent whose runs may start runs with a developer's key (their own key may not)
    agent = start_agent({**sdk_env, ENV_CHILD_RUNS_API_KEY: live_world.keys["developer"]}, tmp_path,
                        name="flow-of-flows")
    client = developer(live_server_url, live_world)
    try:
        # when
        parent = client.create_flow_run(flows["parent"])
        done = wait_for_state(client, parent["id"], TERMINAL, timeout=120)

        # then: the parent completed and started two children, each linked to it
        assert done["state_type"] == "COMPLETED", ([(t["task_key"], t["state_type"], t["state_message"][-600:])
                                                    for t in done["task_runs"]], agent.log()[-3000:])
        children = _children(client, parent["id"])
        assert len(children) == 2, children  # the retried task found the child it created first
        assert {c["parent_flow_run"] for c in children} == {parent["id"]}
        for child in children:
            assert wait_for_state(client, child["id"], TERMINAL, timeout=60)["state_type"] == "COMPLETED"
        lines = [line["message"] for line in all_logs(client, parent["id"])]
        # the first child's results came through its LocalResult: squares of 0..3
        reported = [m for m in lines if m.startswith("child ")]
        assert len(reported) == 1, lines
        first_child = reported[0].split()[1]
        assert reported[0] == (f"child {first_child} ended COMPLETED with total 14, squares [0, 1, 4, 9], "
                               "square[2] 4")
        retried = [m for m in lines if m.startswith("retried start made ")]
        assert retried == [f"retried start made {c['id']}" for c in children if c["id"] != first_child]
        assert {c["id"] for c in children} == {first_child, retried[0].split()[-1]}
        # and the wait streamed the child's states into the parent's log
        assert any("entered state <Success>" in m or "entered state <Completed>" in m for m in lines), lines
    finally:
        agent.stop()


def test_a_child_that_fails_fails_the_task_waiting_for_it_and_start_flow_run_waits(
    live_server_url, live_world, sdk_env, tmp_path, flows
):
    agent = start_agent({**sdk_env, ENV_CHILD_RUNS_API_KEY: live_world.keys["developer"]}, tmp_path,
                        name="flow-of-flows")
    client = developer(live_server_url, live_world)
    try:
        broken_parent = client.create_flow_run(flows["parent-of-broken"])
        legacy = client.create_flow_run(flows["legacy-parent"])

        broken_done = wait_for_state(client, broken_parent["id"], TERMINAL, timeout=120)
        legacy_done = wait_for_state(client, legacy["id"], TERMINAL, timeout=120)

        # a failed child fails the waiting task, and so the parent
        assert broken_done["state_type"] == "FAILED", (broken_done, agent.log())
        (broken_child,) = _children(client, broken_parent["id"])
        assert broken_child["state_type"] == "FAILED"
        waiting = next(t for t in broken_done["task_runs"] if t["task_key"] == "wait_for_flow_run")
        assert waiting["state_type"] == "FAILED"
        assert broken_child["id"] in waiting["state_message"] and "ended FAILED" in waiting["state_message"]
        # StartFlowRun(wait=True) waited for a child that completed
        assert legacy_done["state_type"] == "COMPLETED", (legacy_done, agent.log())
        (legacy_child,) = _children(client, legacy["id"])
        assert legacy_child["state_type"] == "COMPLETED"
        start = next(t for t in legacy_done["task_runs"] if t["task_key"] == "startflowrun")
        assert start["state_type"] == "COMPLETED"
    finally:
        agent.stop()


def test_outside_an_agents_run_a_created_run_has_no_parent_and_a_fresh_key(in_process_env, live_server_url,
                                                                           live_world, flows):
    client = developer(live_server_url, live_world)

    first = create_flow_run.run(flow_name="child", project_name="e2e", parameters={"n": 1})
    second = create_flow_run.run(flow_id=flows["child"], run_name="by id")

    assert first != second
    runs = {r["id"]: r for r in client.list_flow_runs(flow=flows["child"], limit=None)}
    assert runs[first]["parent_flow_run"] is None and runs[second]["name"] == "by id"
    assert runs[first]["parameters"] == {"n": 1}


def test_inside_an_agents_run_the_child_is_linked_and_a_second_attempt_finds_it(in_process_env, live_server_url,
                                                                               live_world, flows):
    client = developer(live_server_url, live_world)
    parent = client.create_flow_run(flows["parent"])

    def create(map_index: int) -> str:
        with flowdeck.context(running_with_backend=True, flow_run_id=parent["id"], task_key="start",
                              map_index=map_index):
            return str(create_flow_run.run(flow_name="child", project_name="e2e"))

    first, again, other_index = create(-1), create(-1), create(0)

    assert first == again and other_index != first
    assert sorted(c["id"] for c in _children(client, parent["id"])) == sorted({first, other_index})


def test_wait_and_result_of_a_run_that_never_stored_a_result_say_why(in_process_env, live_server_url,
                                                                     live_world, flows):
    client = developer(live_server_url, live_world)
    run = client.create_flow_run(flows["child"])
    client.cancel_flow_run(run["id"])  # nobody holds it: CANCELLED at once

    view = wait_for_flow_run.run(run["id"], stream_states=True)
    assert isinstance(view, FlowRunView) and view.state_type == "CANCELLED" and view.is_finished
    with pytest.raises(signals.FAIL, match="ended CANCELLED"):
        wait_for_flow_run.run(run["id"], raise_final_state=True)
    with pytest.raises(ValueError, match="without a finished task run 'total'"):
        get_task_run_result.run(run["id"], "total", poll_time=0.1)


def test_an_unknown_flow_and_an_agent_key_are_refused_with_the_way_out(in_process_env, monkeypatch, live_world,
                                                                       flows):
    with pytest.raises(NotFoundError, match="No flow named 'nope'"):
        create_flow_run.run(flow_name="nope", project_name="e2e")
    with pytest.raises(ValueError, match="either flow_id or flow_name"):
        create_flow_run.run()

    monkeypatch.setenv("FLOWDECK_API_KEY", live_world.keys["agent"])
    with pytest.raises(PermissionDeniedError, match=ENV_CHILD_RUNS_API_KEY):
        create_flow_run.run(flow_id=flows["child"])
    monkeypatch.setenv(ENV_CHILD_RUNS_API_KEY, live_world.keys["developer"])
    assert create_flow_run.run(flow_id=flows["child"])  # the override key may


def test_start_flow_run_needs_a_flow_name():
    with pytest.raises(ValueError, match="flow_name"):
        StartFlowRun().run()


def test_results_dir_is_shared_storage(tmp_path: Path):
    # The e2e flows' results directory is an absolute path: get_task_run_result reads it with a
    # LocalResult made for that directory.
    from flowdeck.engine.results import LocalResult
    from flowdeck.tasks.flowdeck.flow_run import _read

    written = LocalResult(dir=str(tmp_path)).write({"rows": 3}, task_key="total")
    assert written.location is not None and Path(written.location).is_absolute()
    assert _read(written.location, None) == {"rows": 3}


def test_get_task_run_result_waits_for_the_task_and_a_mapped_task_for_its_run(in_process_env, live_server_url,
                                                                              live_world, flows, tmp_path):
    # given: a child run held by an agent speaking the protocol, and results written where the
    # child's LocalResult would write them
    from concurrent.futures import ThreadPoolExecutor

    from flowdeck.client import Client
    from flowdeck.engine.results import LocalResult

    agent = Client(api_url=live_server_url, api_key=live_world.keys["agent"], workspace=live_world.workspace.slug)
    run_id = developer(live_server_url, live_world).create_flow_run(flows["child"], parameters={"n": 2})["id"]
    agent_id = agent.register_agent("protocol-agent", "process", [], "test", 1)["id"]
    (claimed,) = agent.claim(agent_id, limit=1, lease_seconds=60)
    assert claimed["id"] == run_id
    agent.set_flow_run_state(run_id, {"type": "RUNNING", "name": "Running"}, attempt=1)
    shared = LocalResult(dir=str(tmp_path))

    def report(key: str, index: int, state_type: str, name: str, value: object = None) -> None:
        state = {"type": state_type, "name": name}
        if value is not None:
            state["result_ref"] = str(shared.write(value, task_key=key, map_index=index).location)
        agent.report_task_runs(run_id, attempt=1, reports=[{"task_key": key, "map_index": index, "state": state}])

    report("total", -1, "RUNNING", "Running")
    report("square", -1, "COMPLETED", "Mapped")  # mapped, its children not yet run
    with ThreadPoolExecutor(2) as pool:
        total = pool.submit(get_task_run_result.run, run_id, "total", poll_time=0.1)
        squares = pool.submit(get_task_run_result.run, run_id, "square", poll_time=0.1)
        report("square", 0, "COMPLETED", "Success", 0)

        # when / then: neither answers before its task (or, mapped, its run) is over
        assert not total.done() and not squares.done()
        report("total", -1, "COMPLETED", "Success", 1)
        assert total.result(timeout=60) == 1
        assert not squares.done()  # a mapped task's results are all there once its run is over
        report("square", 1, "COMPLETED", "Success", 1)
        agent.set_flow_run_state(run_id, {"type": "COMPLETED", "name": "Success"}, attempt=1)
        assert squares.result(timeout=60) == [0, 1]
    agent.close()


def test_get_task_run_result_reads_a_prefect_result_from_its_location(in_process_env, live_server_url, live_world,
                                                                      flows):
    # given: a completed task run whose PrefectResult put the value itself in the location
    from flowdeck.client import Client
    from flowdeck.engine.results import PrefectResult

    agent = Client(api_url=live_server_url, api_key=live_world.keys["agent"], workspace=live_world.workspace.slug)
    run_id = developer(live_server_url, live_world).create_flow_run(flows["child"])["id"]
    agent_id = agent.register_agent("protocol-agent", "process", [], "test", 1)["id"]
    agent.claim(agent_id, limit=1, lease_seconds=60)
    location = PrefectResult().write({"rows": 3}).location
    agent.report_task_runs(run_id, attempt=1, reports=[{"task_key": "total", "map_index": -1, "state": {
        "type": "COMPLETED", "name": "Success", "result_ref": location}}])
    agent.close()

    # when / then: read with the Result the child used
    assert get_task_run_result.run(run_id, "total", result=PrefectResult()) == {"rows": 3}
