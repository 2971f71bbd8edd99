"""Prefect 1 retry order: every task's first attempt runs, then the ``Retrying`` ones run again in a
later pass once their ``retry_delay`` has passed; tasks downstream of a retrying task wait for it.

Expectations from Prefect 1's documentation ("Retries": a failed task with retries left enters
``Retrying`` with a ``start_time``; the flow runner runs it again when that time has come).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import flowdeck
from flowdeck import Flow, task
from flowdeck.engine.state import Failed, Mapped, Retrying, State, Success
from flowdeck.executors import LocalDaskExecutor, LocalExecutor

EXECUTORS = {
    "local": lambda: LocalExecutor(),
    "local_dask_threads": lambda: LocalDaskExecutor(scheduler="threads", num_workers=2),
}


class Observer:
    def __init__(self) -> None:
        self.flow: list[State] = []
        self.tasks: list[tuple[str, int, State]] = []

    def flow_state(self, state: State) -> None:
        self.flow.append(state)

    def task_state(self, task_key: str, map_index: int, state: State) -> None:
        self.tasks.append((task_key, map_index, state))

    def cancel_requested(self) -> bool:
        return False

    def names(self, key: str, map_index: int = -1) -> list[str]:
        return [s.name for k, i, s in self.tasks if k == key and i == map_index]


@pytest.fixture(params=sorted(EXECUTORS))
def executor(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield EXECUTORS[request.param]()


def test_a_retry_runs_after_the_independent_tasks(executor: Any) -> None:
    order: list[str] = []

    @task(max_retries=1, retry_delay=timedelta(0))
    def a() -> str:
        order.append("a")
        if order.count("a") == 1:
            raise ValueError("first attempt fails")
        return "a done"

    @task
    def b() -> str:
        order.append("b")
        return "b done"

    @task
    def c() -> str:
        order.append("c")
        return "c done"

    with Flow("retry-order") as flow:
        ta, tb, tc = a(), b(), c()
    observer = Observer()
    state = flow.run(executor=executor, observer=observer)

    assert state.is_successful()
    assert order[0] == "a" and sorted(order[1:3]) == ["b", "c"] and order[3] == "a"
    if isinstance(executor, LocalExecutor):
        assert order == ["a", "b", "c", "a"]
    assert state.result[ta] == Success("Task run succeeded.", result="a done")
    assert state.result[tb].result == "b done" and state.result[tc].result == "c done"
    # What the agent reports for a: the same states as before, with the attempt number.
    assert observer.names("a") == ["Running", "Retrying", "Running", "Success"]
    retrying = [s for k, _, s in observer.tasks if k == "a" and isinstance(s, Retrying)]
    assert [r.run_count for r in retrying] == [1]
    assert observer.names("b") == ["Running", "Success"]


def test_downstream_tasks_wait_for_the_retry_and_get_its_result(executor: Any) -> None:
    order: list[str] = []

    @task(max_retries=2, retry_delay=timedelta(0))
    def extract() -> int:
        order.append(f"extract{flowdeck.context.task_run_count}")
        if flowdeck.context.task_run_count < 3:
            raise ConnectionError("flaky source")
        return 20

    @task
    def transform(x: int) -> int:
        order.append("transform")
        return x + 1

    @task
    def other() -> int:
        order.append("other")
        return 0

    with Flow("downstream-waits") as flow:
        t = transform(extract())
        o = other()
    state = flow.run(executor=executor)

    assert state.is_successful()
    assert order.index("other") < order.index("extract2")
    assert [x for x in order if x != "other"] == ["extract1", "extract2", "extract3", "transform"]
    assert state.result[t].result == 21
    assert state.result[o].result == 0


def test_a_shorter_retry_delay_runs_first() -> None:
    order: list[str] = []

    @task(max_retries=1, retry_delay=timedelta(milliseconds=400))
    def slow_retry() -> None:
        order.append(f"slow{flowdeck.context.task_run_count}")
        if flowdeck.context.task_run_count == 1:
            raise ValueError("again later")

    @task(max_retries=1, retry_delay=timedelta(0))
    def quick_retry() -> None:
        order.append(f"quick{flowdeck.context.task_run_count}")
        if flowdeck.context.task_run_count == 1:
            raise ValueError("again now")

    with Flow("two-delays") as flow:
        slow_retry()
        quick_retry()
    assert flow.run().is_successful()
    assert order == ["slow1", "quick1", "quick2", "slow2"]


def test_exhausted_retries_end_failed_and_downstream_trigger_fails(executor: Any) -> None:
    calls: list[int] = []

    @task(max_retries=2, retry_delay=timedelta(0))
    def always_fails() -> None:
        calls.append(flowdeck.context.task_run_count)
        raise RuntimeError("never works")

    @task
    def after(x: Any) -> None:
        calls.append(-1)

    with Flow("exhausted") as flow:
        f = always_fails()
        a = after(f)
    state = flow.run(executor=executor)
    assert state.is_failed()
    assert calls == [1, 2, 3]
    assert isinstance(state.result[f], Failed) and isinstance(state.result[f].result, RuntimeError)
    assert state.result[a].name == "TriggerFailed"


def test_mapped_children_retry_alone_and_the_reduce_waits(executor: Any) -> None:
    order: list[str] = []

    @task(max_retries=1, retry_delay=timedelta(0), tags=["mapped"])
    def double(x: int) -> int:
        order.append(f"double{x}")
        if x == 2 and order.count("double2") == 1:
            raise ValueError("child 1 fails once")
        assert flowdeck.context.task_tags == {"mapped"}
        return x * 2

    @task
    def total(values: list[int]) -> int:
        order.append("total")
        return sum(values)

    with Flow("mapped-retry") as flow:
        doubled = double.map([1, 2, 3])
        t = total(doubled)
    observer = Observer()
    state = flow.run(executor=executor, observer=observer)

    assert state.is_successful()
    assert sorted(order[:3]) == ["double1", "double2", "double3"]
    assert order[3:] == ["double2", "total"]
    parent = state.result[doubled]
    assert isinstance(parent, Mapped)
    assert [s.name for s in parent.children] == ["Success", "Success", "Success"]
    assert parent.result == [2, 4, 6]
    assert state.result[t].result == 12
    assert observer.names("double", 1) == ["Running", "Retrying", "Running", "Success"]
    assert observer.names("double", 0) == ["Running", "Success"]
    # The parent is reported once: it is Mapped already when its child retries.
    assert observer.names("double") == ["Running", "Mapped"]


def test_a_looping_task_retried_goes_on_with_its_loop() -> None:
    seen: list[tuple[int, int]] = []

    @task(max_retries=1, retry_delay=timedelta(0))
    def counter() -> int:
        loop = flowdeck.context.get("task_loop_count", 1)
        seen.append((flowdeck.context.task_run_count, loop))
        if loop == 2 and flowdeck.context.task_run_count == 1:
            raise RuntimeError("transient")
        if loop < 3:
            raise flowdeck.engine.signals.LOOP(result=loop)
        return int(flowdeck.context.task_loop_result) + 1

    with Flow("loop-retry") as flow:
        c = counter()
    state = flow.run()
    assert state.result[c].result == 3
    assert seen == [(1, 1), (1, 2), (2, 2), (2, 3)]


def test_a_retry_a_state_handler_keeps_from_running_does_not_hang_the_run() -> None:
    def stay_retrying(t: Any, old: State, new: State) -> State | None:
        return old if isinstance(old, Retrying) and new.is_running() else None

    @task(max_retries=3, retry_delay=timedelta(0), state_handlers=[stay_retrying])
    def stuck() -> None:
        raise ValueError("fails")

    with Flow("stuck") as flow:
        s = stuck()
    state = flow.run()
    assert isinstance(state.result[s], Retrying)
    assert state.is_failed() and state.message == "Some reference tasks did not finish."
