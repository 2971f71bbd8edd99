"""The run observer hears every state change in order; restarts do not re-run finished tasks;
``cancel_requested`` stops submitting and ends the flow ``Cancelled``. Also on the thread and
process executors, where states are streamed live or forwarded from the workers."""

from __future__ import annotations

from typing import Any

import pytest

from flowdeck import Flow, Parameter, task
from flowdeck.engine.observer import RunObserver
from flowdeck.engine.state import Cancelled, Failed, Success
from flowdeck.executors import LocalDaskExecutor, LocalExecutor

from .conftest import RecordingObserver

CALLS: list[str] = []


@task
def extract(n: int) -> list[int]:
    CALLS.append("extract")
    return list(range(n))


@task
def transform(x: int) -> int:
    CALLS.append(f"transform {x}")
    return x * 10


@task
def load(values: list[int]) -> int:
    CALLS.append("load")
    return sum(values)


def etl_flow() -> tuple[Flow, dict[str, Any]]:
    with Flow("etl") as flow:
        n = Parameter("n", default=2)
        e = extract(n)
        t = transform.map(e)
        loaded = load(t)
    return flow, {"n": n, "extract": e, "transform": t, "load": loaded}


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


def test_recording_observer_is_a_run_observer(observer: RecordingObserver) -> None:
    assert isinstance(observer, RunObserver)


def test_observer_receives_every_state_in_order(observer: RecordingObserver) -> None:
    flow, _ = etl_flow()
    state = flow.run(observer=observer)
    assert state.is_successful()
    summary = [
        ("flow", e[1].name) if e[0] == "flow" else (e[1], e[2], e[3].name) for e in observer.events
    ]
    assert summary == [
        ("flow", "Running"),
        ("n", -1, "Running"), ("n", -1, "Success"),
        ("extract", -1, "Running"), ("extract", -1, "Success"),
        ("transform", -1, "Running"),
        ("transform", 0, "Running"), ("transform", 0, "Success"),
        ("transform", 1, "Running"), ("transform", 1, "Success"),
        ("transform", -1, "Mapped"),
        ("load", -1, "Running"), ("load", -1, "Success"),
        ("flow", "Success"),
    ]
    assert observer.cancel_checks >= 4  # asked between submissions
    # The final flow state is the one returned, carrying every task's state.
    assert observer.events[-1][1] is state


def test_a_run_already_running_is_not_reported_running_twice(observer: RecordingObserver) -> None:
    from flowdeck.engine.flow_runner import FlowRunner
    from flowdeck.engine.state import Running

    flow, _ = etl_flow()
    state = FlowRunner(flow).run(state=Running("started by the agent"), observer=observer)
    assert state.is_successful()
    assert observer.flow_names() == ["Success"]


def test_task_keys_in_reports_match_serialize(observer: RecordingObserver) -> None:
    flow, _ = etl_flow()
    flow.run(observer=observer)
    registered = {t["key"] for t in flow.serialize()["tasks"]}
    reported = {e[1] for e in observer.task_events()}
    assert reported == registered


def test_initial_task_states_are_not_run_again(observer: RecordingObserver) -> None:
    flow, tasks = etl_flow()
    state = flow.run(
        initial_task_states={"extract": Success(result=[7, 8, 9])},
        observer=observer,
    )
    assert "extract" not in CALLS
    assert state.result[tasks["extract"]].result == [7, 8, 9]
    assert state.result[tasks["load"]].result == 240
    assert observer.names("extract") == []  # nothing happened to it in this run
    # Tasks can be given by object too (Prefect 1's task_states).
    CALLS.clear()
    again = flow.run(task_states={tasks["load"]: Success(result=-1), tasks["extract"]: Success(result=[])})
    assert again.result[tasks["load"]].result == -1
    assert CALLS == []


def test_unknown_task_key_in_initial_states_fails_the_run_clearly() -> None:
    flow, _ = etl_flow()
    state = flow.run(initial_task_states={"nope": Success()})
    assert isinstance(state, Failed)
    assert "no task with key 'nope'" in (state.message or "")


def test_cancel_requested_stops_submitting_and_ends_cancelled() -> None:
    flow, tasks = etl_flow()
    observer = RecordingObserver(cancel_after=4)  # after n and extract finished
    state = flow.run(observer=observer)
    assert isinstance(state, Cancelled)
    assert state.server_type == "CANCELLED"
    assert CALLS == ["extract"]
    assert isinstance(state.result[tasks["load"]], Cancelled)
    assert observer.flow_names() == ["Running", "Cancelled"]
    assert observer.names("load") == []  # never started: nothing reported


def test_cancel_while_mapping_cancels_the_parent() -> None:
    flow, tasks = etl_flow()
    observer = RecordingObserver(cancel_after=7)  # in the middle of the mapped children
    state = flow.run(n=5, observer=observer)
    assert isinstance(state, Cancelled)
    assert isinstance(state.result[tasks["transform"]], Cancelled)
    assert observer.names("transform") == ["Running", "Cancelled"]
    assert len([c for c in CALLS if c.startswith("transform")]) < 5


def test_cancel_before_start() -> None:
    flow, _ = etl_flow()
    state = flow.run(observer=RecordingObserver(cancel_after=0))
    assert isinstance(state, Cancelled)
    assert CALLS == []


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_observer_gets_every_state_from_pool_executors(scheduler: str, observer: RecordingObserver) -> None:
    flow, tasks = etl_flow()
    state = flow.run(n=3, executor=LocalDaskExecutor(scheduler=scheduler, num_workers=2), observer=observer)
    assert state.is_successful()
    assert state.result[tasks["load"]].result == 30
    assert state.result[tasks["transform"]].result == [0, 10, 20]
    for key, index in [("n", -1), ("extract", -1), ("load", -1), ("transform", 0), ("transform", 1), ("transform", 2)]:
        assert observer.names(key, index) == ["Running", "Success"], (key, index)
    assert observer.names("transform", -1) == ["Running", "Mapped"]
    # Upstream before downstream, each task's own states in order, the flow's final state last.
    order = [(e[1], e[2]) for e in observer.task_events() if e[3].name in ("Success", "Mapped")]
    assert order.index(("n", -1)) < order.index(("extract", -1)) < order.index(("transform", 0))
    assert order.index(("transform", 0)) < order.index(("transform", -1))
    assert order.index(("transform", -1)) < order.index(("load", -1))
    assert observer.flow_names() == ["Running", "Success"]


def test_same_results_on_every_local_executor() -> None:
    flow, tasks = etl_flow()
    results = []
    for executor in (LocalExecutor(), LocalDaskExecutor("threads"), LocalDaskExecutor("synchronous")):
        results.append(flow.run(n=4, executor=executor).result[tasks["load"]].result)
    assert results == [60, 60, 60]


def test_dask_cluster_runs_mapped_children_on_several_workers_and_reports_them_all(
    observer: RecordingObserver,
) -> None:
    import os

    from flowdeck.executors import DaskExecutor

    @task
    def pid_of(x: int) -> int:
        import time

        time.sleep(0.05)  # long enough for both workers to take children
        return os.getpid()

    with Flow("spread") as flow:
        pids = pid_of.map(extract(Parameter("n", default=12)))
    executor = DaskExecutor(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True})
    state = flow.run(executor=executor, observer=observer)
    assert state.is_successful()
    worker_pids = set(state.result[pids].result)
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    for i in range(12):
        assert observer.names("pid_of", i) == ["Running", "Success"]
    assert observer.names("pid_of") == ["Running", "Mapped"]
    keys = [e[1] for e in observer.task_events()]
    assert keys.index("n") < keys.index("extract") < keys.index("pid_of")
