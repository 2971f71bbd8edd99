"""LocalExecutor: runs each call at once, in the caller's thread, for almost nothing."""

from __future__ import annotations

import threading
import time

import pytest

from flowdeck.executors import LocalExecutor
from flowdeck.executors.local import Failure

from . import calls


def test_runs_at_submit_in_the_calling_thread_and_returns_the_value_itself() -> None:
    executor = LocalExecutor()
    order: list[str] = []
    value = executor.submit(lambda: order.append("ran") or threading.current_thread().name)
    order.append("after submit")
    assert order == ["ran", "after submit"]
    assert value == threading.current_thread().name
    assert executor.wait(value) is value


def test_needs_no_start_and_can_be_started() -> None:
    executor = LocalExecutor()
    assert executor.submit(calls.add, 1, 1) == 2
    with executor.start():
        assert executor.submit(calls.add, 2, 2) == 4


def test_a_failed_call_returns_a_failure_that_wait_raises() -> None:
    executor = LocalExecutor()
    failed = executor.submit(calls.explode, "nope")
    assert isinstance(failed, Failure) and isinstance(failed.exception, calls.TaskExploded)
    with pytest.raises(calls.TaskExploded, match="nope"):
        executor.wait({"a": [failed]})


def test_interrupts_are_not_swallowed() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        LocalExecutor().submit(interrupted)


@pytest.mark.alone  # measures CPU per call: another worker's tests would skew it
def test_overhead_per_call_is_a_few_microseconds() -> None:
    """The runner of a 1,000-task flow calls submit 1,000 times: it must cost next to nothing."""
    executor = LocalExecutor()

    def task(state: object, upstream: dict[str, object], flow_context: object = None) -> object:
        return state

    upstream = {"a": 1, "b": 2}
    context = {"task_key": "t", "map_index": -1}
    rounds = 20_000
    best = float("inf")
    for _ in range(3):  # best of three: the machine may be busy
        started = time.perf_counter()
        for _ in range(rounds):
            executor.submit(task, "state", upstream, flow_context=None, extra_context=context)
        best = min(best, (time.perf_counter() - started) / rounds)
    assert best < 10e-6, f"{best * 1e6:.1f} µs per submit"
