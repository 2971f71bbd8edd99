"""Prefect 1 signals and states: signals are ``BaseException``s that ``except Exception`` in a task
does not swallow; ``SKIP`` is not a ``SUCCESS``; a skipped state carries its signal; a freshly
computed task with ``cache_for`` ends ``Cached``; states take extra attributes, print their message
in double quotes, load their result and call a mapped task's children ``children``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import flowdeck
from flowdeck import Flow, task
from flowdeck.engine import signals
from flowdeck.engine.results import LocalResult
from flowdeck.engine.state import Cached, Failed, Mapped, Skipped, State, Success, TimedOut
from flowdeck.engine.task_runner import clear_cache
from flowdeck.executors import LocalDaskExecutor


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    clear_cache()
    yield
    clear_cache()


def test_signals_are_base_exceptions_and_skip_is_not_success() -> None:
    for signal in (signals.FAIL, signals.SKIP, signals.LOOP, signals.SUCCESS, signals.RETRY, signals.PAUSE):
        assert issubclass(signal, BaseException) and not issubclass(signal, Exception)
    assert not issubclass(signals.SKIP, signals.SUCCESS)
    assert issubclass(signals.TRIGGERFAIL, signals.FAIL)


@pytest.mark.parametrize("executor", [None, LocalDaskExecutor(scheduler="threads")], ids=["local", "dask"])
def test_except_exception_in_a_task_does_not_swallow_signals(executor: Any) -> None:
    swallowed: list[str] = []

    @task
    def skipper() -> None:
        try:
            raise signals.SKIP("nothing to do today")
        except Exception:
            swallowed.append("skip")

    @task
    def failer() -> None:
        try:
            raise signals.FAIL("bad input")
        except Exception:
            swallowed.append("fail")

    @task
    def looper() -> int:
        count = flowdeck.context.get("task_loop_count", 1)
        try:
            if count < 3:
                raise signals.LOOP(result=count)
        except Exception:
            swallowed.append("loop")
        return count

    @task
    def downstream(x: Any) -> str:
        return "ran"

    with Flow("signals") as flow:
        s = skipper()
        f = failer()
        lp = looper()
        d = downstream(s)
    state = flow.run(executor=executor)

    assert swallowed == []
    assert isinstance(state.result[s], Skipped)
    assert isinstance(state.result[s].result, signals.SKIP)  # the state carries its signal
    assert state.result[s].message == "nothing to do today"
    assert isinstance(state.result[d], Skipped)  # skip_on_upstream_skip
    assert isinstance(state.result[f], Failed) and isinstance(state.result[f].result, signals.FAIL)
    assert state.result[lp].result == 3


def test_signals_in_a_timed_task_and_from_state_handlers_stay_in_the_engine() -> None:
    @task(timeout=5)
    def timed_skip() -> None:
        raise signals.SKIP("skipped inside the timeout's thread")

    def handler(t: Any, old: State, new: State) -> State | None:
        if new.is_running():
            raise signals.FAIL("the handler says no")
        return None

    @task(state_handlers=[handler])
    def refused() -> str:
        return "never"

    def end_run(t: Any, old: State, new: State) -> State | None:
        if new.is_successful():
            raise signals.ENDRUN(Skipped("ended by the handler"))
        return None

    @task(state_handlers=[end_run])
    def ended() -> str:
        return "value"

    with Flow("signals-elsewhere") as flow:
        ts = timed_skip()
        r = refused()
        e = ended()
    state = flow.run()
    assert isinstance(state.result[ts], Skipped)
    assert isinstance(state.result[r], Failed)
    assert isinstance(state.result[r].result, signals.FAIL)
    assert state.result[e] == Skipped("ended by the handler")


def test_a_timeout_keeps_the_number_given_and_still_times_out() -> None:
    @task(timeout=1)
    def sleepy() -> None:
        import time

        time.sleep(5)

    assert sleepy.timeout == 1 and isinstance(sleepy.timeout, int)
    assert sleepy.copy(timeout=3).timeout == 3 and isinstance(sleepy.copy(timeout=3).timeout, int)
    with Flow("timeout") as flow:
        t = sleepy()
    final = flow.run().result[t]
    assert isinstance(final, TimedOut)
    assert final.message == "Task timed out after 1 seconds."


def test_a_fresh_result_with_cache_for_ends_cached_and_is_reused() -> None:
    calls: list[int] = []

    @task(cache_for=timedelta(minutes=5))
    def expensive(x: int) -> int:
        calls.append(x)
        return x * 100

    @task
    def plain(x: int) -> int:
        return x

    with Flow("cache") as flow:
        e = expensive(2)
        p = plain(1)
    first = flow.run()
    assert isinstance(first.result[e], Cached)
    assert first.result[e].result == 200
    assert first.result[e].message == "Task run succeeded."
    assert first.result[e].cached_inputs == {"x": 2}
    assert first.result[e].cached_result_expiration is not None
    assert type(first.result[p]) is Success
    second = flow.run()
    assert isinstance(second.result[e], Cached) and second.result[e].result == 200
    assert second.result[e].message == "Task retrieved from cache."
    assert calls == [2]


def test_states_take_attributes_print_in_double_quotes_and_have_no_timestamp() -> None:
    def tag_state(t: Any, old: State, new: State) -> State:
        new.reviewed_by = "handler"  # type: ignore[attr-defined]
        return new

    @task(state_handlers=[tag_state])
    def work() -> str:
        return "done"

    with Flow("attrs") as flow:
        w = work()
    final = flow.run().result[w]
    assert final.reviewed_by == "handler"
    assert repr(Success("done")) == '<Success: "done">'
    assert repr(Failed()) == "<Failed>"
    assert not hasattr(Success("done"), "timestamp")


def test_load_result_reads_the_checkpoint_through_the_result(tmp_path: Path) -> None:
    @task(result=LocalResult(dir=str(tmp_path)), checkpoint=True)
    def produce() -> dict[str, int]:
        return {"rows": 42}

    with Flow("load") as flow:
        p = produce()
    done = flow.run().result[p]
    assert done.result_ref
    restored = Success("from the server", result_ref=done.result_ref)
    assert restored.result is None
    assert restored.load_result(LocalResult(dir=str(tmp_path))) is restored
    assert restored.result == {"rows": 42}
    assert Success("nothing stored").load_result().result is None


def test_mapped_children_is_map_states() -> None:
    @task
    def inc(x: int) -> int:
        return x + 1

    with Flow("children") as flow:
        m = inc.map([1, 2])
    parent = flow.run().result[m]
    assert isinstance(parent, Mapped)
    assert parent.children is parent.map_states
    assert [c.result for c in parent.children] == [2, 3]
