"""SDK overhead per task on the local executor: a 1,000-task flow of tasks that do nothing.

The target is ≤ 0.5 ms per task; the assertion is looser (2 ms) so a busy CI machine does not make
it flaky, and the measured number is printed (``pytest -s``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from flowdeck import Flow, task
from flowdeck.executors import LocalExecutor

from .conftest import RecordingObserver

N = 1_000


@task
def noop(upstream: object = None) -> None:
    return None


def linear() -> Flow:
    with Flow("linear-1000") as flow:
        previous = noop()
        for _ in range(N - 1):
            previous = noop(previous)
    return flow


def wide() -> Flow:
    with Flow("wide-1000") as flow:
        root = noop()
        for _ in range(N - 1):
            noop(root)
    return flow


def mapped() -> Flow:
    with Flow("mapped-1000") as flow:
        noop.map(list(range(N)))
    return flow


def best_ms_per_task(flow: Flow, tasks: int, observer: RecordingObserver | None = None, repeat: int = 3) -> float:
    flow.run(executor=LocalExecutor())  # warm up (imports, caches)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        state = flow.run(executor=LocalExecutor(), observer=observer)
        best = min(best, time.perf_counter() - started)
        assert state.is_successful()
    return best * 1000 / tasks


@pytest.mark.alone  # measures CPU per call: another worker's tests would skew it
@pytest.mark.parametrize("build", [linear, wide], ids=["linear", "wide"])
def test_local_overhead_per_task_is_well_under_the_target(build: Callable[[], Flow]) -> None:
    per_task = best_ms_per_task(build(), N)
    print(f"\n{build.__name__}: {per_task:.4f} ms per task")
    assert per_task < 2.0


@pytest.mark.alone  # measures CPU per call: another worker's tests would skew it
def test_mapped_children_overhead_and_observer_overhead() -> None:
    per_child = best_ms_per_task(mapped(), N)
    observer = RecordingObserver()
    with_observer = best_ms_per_task(linear(), N, observer=observer, repeat=1)
    print(f"\nmapped: {per_child:.4f} ms per child; linear with observer: {with_observer:.4f} ms per task")
    assert per_child < 2.0
    assert with_observer < 2.0
    assert len(observer.task_events()) == 2 * N  # Running + Success for every task
