"""Retries (``Retrying`` with a start time, waiting the delay), timeouts (``TimedOut``), ``RETRY``,
``PAUSE``/``Resume`` and looping with ``LOOP``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import flowdeck
from flowdeck import Flow, task
from flowdeck.engine import signals
from flowdeck.engine.state import Failed, Looped, Paused, Resume, Retrying, Success, TimedOut

from .conftest import RecordingObserver


def test_retries_wait_the_delay_and_succeed(observer: RecordingObserver) -> None:
    calls: list[float] = []

    @task(max_retries=2, retry_delay=timedelta(milliseconds=150))
    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    with Flow("retries") as flow:
        t = flaky()
    state = flow.run(observer=observer)
    assert state.result[t] == Success("Task run succeeded.", result="ok")
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.14 and calls[2] - calls[1] >= 0.14
    assert observer.names("flaky") == ["Running", "Retrying", "Running", "Retrying", "Running", "Success"]
    retrying = [e[3] for e in observer.task_events() if isinstance(e[3], Retrying)]
    assert [r.run_count for r in retrying] == [1, 2]
    assert all(r.start_time > datetime.now(UTC) - timedelta(seconds=5) for r in retrying)
    assert all(r.server_type == "SCHEDULED" for r in retrying)
    assert "attempt 1 of 3" in (retrying[0].message or "")


def test_retries_exhausted_end_failed_and_context_counts_runs() -> None:
    seen: list[int] = []

    @task(retries=1, retry_delay=0)
    def always_fails() -> None:
        seen.append(flowdeck.context.task_run_count)
        raise ValueError("nope")

    with Flow("exhausted") as flow:
        t = always_fails()
    state = flow.run()
    assert isinstance(state.result[t], Failed)
    assert seen == [1, 2]


def test_retry_signal_retries_even_without_max_retries() -> None:
    runs: list[int] = []

    @task
    def asks_for_retry() -> int:
        runs.append(1)
        if len(runs) == 1:
            raise signals.RETRY("once more")
        return len(runs)

    with Flow("retry-signal") as flow:
        t = asks_for_retry()
    assert flow.run().result[t].result == 2


def test_timeout_ends_timed_out_and_can_be_retried(observer: RecordingObserver) -> None:
    @task(timeout=0.2)
    def slow() -> None:
        time.sleep(2)

    attempts: list[int] = []

    @task(timeout=0.2, max_retries=1, retry_delay=timedelta(0))
    def slow_then_fast() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            time.sleep(2)
        return "fast"

    with Flow("timeouts") as flow:
        s = slow()
        f = slow_then_fast()
    started = time.monotonic()
    state = flow.run(observer=observer)
    assert time.monotonic() - started < 1.5
    assert isinstance(state.result[s], TimedOut)
    assert state.result[s].message == "Task timed out after 0.2 seconds."
    assert state.result[s].server_type == "FAILED"
    assert state.result[f].result == "fast"
    assert observer.names("slow_then_fast") == ["Running", "Retrying", "Running", "Success"]


def test_task_with_timeout_still_sees_the_context() -> None:
    @task(timeout=5)
    def reads_context() -> Any:
        return flowdeck.context.task_name

    with Flow("ctx-timeout") as flow:
        t = reads_context()
    assert flow.run().result[t].result == "reads_context"


def test_loop_signal_reruns_the_task_with_the_loop_result(observer: RecordingObserver) -> None:
    # The Prefect 1 looping idiom: carry state in the LOOP result, read it back from context.
    @task
    def fibonacci(limit: int) -> list[int]:
        payload = flowdeck.context.get("task_loop_result", {"seq": [1, 1]})
        seq = payload["seq"]
        if seq[-1] + seq[-2] > limit:
            return seq
        raise signals.LOOP(
            message=f"Loop {flowdeck.context.get('task_loop_count', 1)}", result={"seq": [*seq, seq[-1] + seq[-2]]}
        )

    with Flow("loop") as flow:
        fib = fibonacci(20)
    state = flow.run(observer=observer)
    assert state.result[fib].result == [1, 1, 2, 3, 5, 8, 13]
    names = observer.names("fibonacci")
    assert names == ["Running", "Looped"] * 5 + ["Running", "Success"]
    looped = [e[3] for e in observer.task_events() if isinstance(e[3], Looped)]
    assert [s.loop_count for s in looped] == [1, 2, 3, 4, 5]
    assert looped[0].message == "Loop 1"
    assert looped[0].server_type == "RUNNING"


def test_loop_with_retries_keeps_the_loop_count() -> None:
    failures: list[int] = []

    @task(max_retries=1, retry_delay=0)
    def counter() -> int:
        count = flowdeck.context.get("task_loop_count", 1)  # absent before the first LOOP (Prefect 1)
        if count == 2 and not failures:
            failures.append(count)
            raise RuntimeError("transient")
        if count < 3:
            raise signals.LOOP(result=count)
        return count

    with Flow("loop-retry") as flow:
        t = counter()
    assert flow.run().result[t].result == 3
    assert failures == [2]


def test_pause_signal_and_manual_only_pause_and_resume_runs_the_task() -> None:
    from flowdeck import triggers

    @task
    def extract() -> int:
        return 1

    @task(trigger=triggers.manual_only)
    def approve(x: int) -> int:
        return x + 1

    @task
    def load(x: int) -> int:
        return x * 10

    with Flow("approval") as flow:
        e = extract()
        a = approve(e)
        loaded = load(a)
    first = flow.run()
    assert isinstance(first, Paused)
    assert first.server_type == "PAUSED"
    assert isinstance(first.result[a], Paused)
    assert first.result[loaded].is_pending()
    resumed = flow.run(task_states={e: first.result[e], a: Resume()})
    assert resumed.is_successful()
    assert resumed.result[loaded].result == 20

    @task
    def pauses() -> None:
        raise signals.PAUSE("waiting for a person")

    with Flow("pause") as flow2:
        p = pauses()
    assert isinstance(flow2.run().result[p], Paused)
