"""Prefect 1 context values and log lines inside real flow runs.

From Prefect 1's "Context" documentation: ``date`` and ``scheduled_start_time`` are pendulum
``DateTime``s (UTC), ``today``/``yesterday``/``tomorrow`` are ``YYYY-MM-DD`` strings (``_nodash``:
``YYYYMMDD``); ``map_index`` is None outside a map; ``task_loop_count`` appears with the first
``LOOP``; ``task_run_id`` exists when running with a backend. A flow run starts ``Scheduled`` →
``Running``. The task runner logs "Task 'x': Starting task run..." and "Task 'x': Finished task run
for task with final state: 'Success'"; the flow runner "Beginning Flow run for 'name'" and "Flow run
SUCCESS: all reference tasks succeeded" / "Flow run FAILED: some reference tasks failed.".
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from datetime import timedelta
from typing import Any

import pendulum
import pytest

import flowdeck
from flowdeck import Flow, Parameter, task
from flowdeck.engine.state import State


def test_dates_and_the_scheduled_start_time_are_pendulum_in_utc() -> None:
    seen: dict[str, Any] = {}

    @task
    def read_dates() -> None:
        for key in ("date", "scheduled_start_time", "today", "yesterday", "tomorrow", "today_nodash",
                    "yesterday_nodash", "tomorrow_nodash"):
            seen[key] = flowdeck.context.get(key)

    with Flow("dates") as flow:
        read_dates()
    assert flow.run().is_successful()
    date = seen["date"]
    assert isinstance(date, pendulum.DateTime) and date.timezone_name == "UTC"
    assert isinstance(seen["scheduled_start_time"], pendulum.DateTime)
    assert seen["scheduled_start_time"].timezone_name == "UTC"
    assert seen["today"] == date.strftime("%Y-%m-%d")
    assert seen["yesterday"] == date.subtract(days=1).strftime("%Y-%m-%d")
    assert seen["tomorrow"] == date.add(days=1).strftime("%Y-%m-%d")
    assert seen["today_nodash"] == date.strftime("%Y%m%d")
    assert seen["yesterday_nodash"] == date.subtract(days=1).strftime("%Y%m%d")
    assert seen["tomorrow_nodash"] == date.add(days=1).strftime("%Y%m%d")


def test_a_given_scheduled_start_time_becomes_pendulum_utc() -> None:
    seen: list[Any] = []

    @task
    def read() -> None:
        seen.append(flowdeck.context.scheduled_start_time)

    with Flow("scheduled") as flow:
        read()
    flow.run(context={"scheduled_start_time": "2026-05-01T10:30:00+02:00"})
    assert seen[0] == pendulum.datetime(2026, 5, 1, 8, 30, tz="UTC")
    assert seen[0].timezone_name == "UTC"


def test_map_index_loop_count_run_count_and_tags_in_tasks() -> None:
    seen: dict[str, Any] = {}

    @task(tags=["etl"])
    def single(x: int) -> int:
        seen["single_map_index"] = flowdeck.context.map_index
        seen["single_tags"] = flowdeck.context.task_tags
        seen["single_run_count"] = flowdeck.context.task_run_count
        seen["single_has_run_id"] = "task_run_id" in flowdeck.context
        return x

    @task
    def child(x: int) -> int:
        seen.setdefault("child_indexes", []).append(flowdeck.context.map_index)
        seen.setdefault("child_names", []).append(flowdeck.context.task_full_name)
        return x * 10

    @task
    def looping() -> int:
        seen.setdefault("loop_counts", []).append(flowdeck.context.get("task_loop_count"))
        count = flowdeck.context.get("task_loop_count", 1)
        if count < 3:
            raise flowdeck.engine.signals.LOOP(result=count * 2)
        return int(flowdeck.context.task_loop_result)

    with Flow("context") as flow:
        n = Parameter("n", default=2)
        s = single(n)
        c = child.map([1, 2, 3])
        lp = looping()
    state = flow.run()
    assert state.is_successful()
    assert seen["single_map_index"] is None
    assert seen["single_tags"] == {"etl"}
    assert seen["single_run_count"] == 1
    assert seen["single_has_run_id"] is False  # no backend in a local run
    assert sorted(seen["child_indexes"]) == [0, 1, 2]
    assert sorted(seen["child_names"]) == ["child[0]", "child[1]", "child[2]"]
    assert seen["loop_counts"] == [None, 2, 3]
    assert state.result[s].result == 2
    assert state.result[c].result == [10, 20, 30]
    assert state.result[lp].result == 4


def test_task_run_id_under_a_backend_is_the_reporters_id_of_the_task_run() -> None:
    ids: list[str] = []

    @task
    def who(x: int) -> None:
        ids.append(flowdeck.context.task_run_id)

    with Flow("backend") as flow:
        who.map([1, 2])
    flow.run(context={"flow_run_id": "run-7", "running_with_backend": True})
    assert sorted(ids) == ["run-7/who[0]", "run-7/who[1]"]


def test_the_first_flow_transition_is_scheduled_to_running() -> None:
    changes: list[tuple[str, str]] = []

    def record(flow: Any, old: State, new: State) -> None:
        changes.append((old.name, new.name))

    @task
    def nothing() -> None:
        return None

    with Flow("transitions", state_handlers=[record]) as flow:
        nothing()
    flow.run()
    assert changes == [("Scheduled", "Running"), ("Running", "Success")]


def test_prefect_log_lines_for_tasks_and_flows(caplog: pytest.LogCaptureFixture) -> None:
    @task
    def ok() -> int:
        return 1

    @task(max_retries=1, retry_delay=timedelta(0))
    def flaky() -> int:
        if flowdeck.context.task_run_count == 1:
            raise ValueError("once")
        return 2

    @task
    def broken() -> None:
        raise RuntimeError("no")

    with Flow("logged") as flow:
        ok()
        flaky()
    with Flow("logged-fail") as failing:
        broken()
    caplog.set_level(logging.INFO, logger="flowdeck")
    flow.run()
    failing.run()
    lines = [r.getMessage() for r in caplog.records if r.name in ("flowdeck.TaskRunner", "flowdeck.FlowRunner")]
    assert lines[0] == "Beginning Flow run for 'logged'"
    assert "Task 'ok': Starting task run..." in lines
    assert "Task 'ok': Finished task run for task with final state: 'Success'" in lines
    assert "Task 'flaky': Finished task run for task with final state: 'Retrying'" in lines
    assert lines.index("Task 'flaky': Finished task run for task with final state: 'Retrying'") < lines.index(
        "Task 'flaky': Finished task run for task with final state: 'Success'")
    assert "Flow run SUCCESS: all reference tasks succeeded" in lines
    assert "Beginning Flow run for 'logged-fail'" in lines
    assert lines[-1] == "Flow run FAILED: some reference tasks failed."


@pytest.mark.parametrize(("level", "shown"), [("WARNING", False), ("INFO", True), ("debug", True)])
def test_the_level_comes_from_flowdeck__logging__level(level: str, shown: bool) -> None:
    script = textwrap.dedent(
        """
        from flowdeck import Flow, task

        @task
        def hello():
            return 1

        with Flow("levels") as flow:
            hello()
        flow.run()
        """
    )
    env = {"FLOWDECK__LOGGING__LEVEL": level, "PATH": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          check=True)
    assert ("Task 'hello': Starting task run..." in done.stderr) is shown
    assert ("Beginning Flow run for 'levels'" in done.stderr) is shown
