"""What the FlowRunner relies on, for every executor: submit/wait, futures as arguments, extra context
around the call, and errors coming out of wait() with their own type and message."""

from __future__ import annotations

import pytest

from flowdeck.context import context
from flowdeck.executors import Executor

from . import calls


def test_submit_then_wait_gives_the_value(executor: Executor) -> None:
    assert executor.wait(executor.submit(calls.add, 1, 2, 3)) == 6


def test_wait_resolves_nested_lists_tuples_and_dicts_of_futures(executor: Executor) -> None:
    one = executor.submit(calls.add, 1)
    two = executor.submit(calls.add, 2)
    structure = {"list": [one, [two, "plain"]], "tuple": (one, 5), "dict": {"inner": two}}
    assert executor.wait(structure) == {"list": [1, [2, "plain"]], "tuple": (1, 5), "dict": {"inner": 2}}
    assert executor.wait([]) == [] and executor.wait("no futures") == "no futures"


def test_futures_given_as_arguments_are_resolved_before_the_call(executor: Executor) -> None:
    first = executor.submit(calls.add, 1, 2)
    second = executor.submit(calls.add, first, 10)
    mapped = [executor.submit(calls.add, second, i) for i in range(4)]
    reduced = executor.submit(calls.total, mapped, key=1, workers=2, fn=3)
    described = executor.submit(calls.describe, {"a": first, "b": [second]}, pair=(first, second))
    assert executor.wait(reduced) == (13 * 4 + 6) + 6
    assert executor.wait(described) == {"mapping": {"a": 3, "b": [13]}, "pair": (3, 13)}


def test_extra_context_is_set_around_the_call_and_only_there(executor: Executor) -> None:
    with context(flow_name="outer"):
        result = executor.wait(executor.submit(calls.read_context, "task_key", "map_index", extra_context={
            "task_key": "load", "map_index": 3}))
        assert result == {"task_key": "load", "map_index": 3}
        assert context.get("task_key") is None and context.get("flow_name") == "outer"


def test_an_exception_comes_out_of_wait_with_its_type_and_message(executor: Executor) -> None:
    failing = executor.submit(calls.explode, "disk full on /data")
    with pytest.raises(calls.TaskExploded, match="disk full on /data"):
        executor.wait(failing)
    with pytest.raises(ValueError, match="bad input 42"):
        executor.wait([executor.submit(calls.add, 1), executor.submit(calls.fail_with_value_error, "bad input 42")])


def test_a_call_given_a_failed_future_fails_the_same_way_without_running(executor: Executor) -> None:
    failing = executor.submit(calls.explode, "upstream broke")
    downstream = executor.submit(calls.add, failing, 1)
    with pytest.raises(calls.TaskExploded, match="upstream broke"):
        executor.wait(downstream)
    # The executor carries on with other work.
    assert executor.wait(executor.submit(calls.add, 2, 2)) == 4


def test_an_executor_pickles_as_its_settings_even_while_started(executor: Executor) -> None:
    # A flow that holds its executor may be pickled (e.g. to run elsewhere): pools and clients stay.
    import cloudpickle

    copy = cloudpickle.loads(cloudpickle.dumps(executor))
    assert type(copy) is type(executor) and repr(copy) == repr(executor)
    with copy.start():
        assert copy.wait(copy.submit(calls.add, 1, 1)) == 2


def test_executors_say_whether_calls_run_in_this_process() -> None:
    from flowdeck.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor

    assert LocalExecutor().runs_in_process
    assert LocalDaskExecutor("threads").runs_in_process and LocalDaskExecutor("synchronous").runs_in_process
    assert not LocalDaskExecutor("processes").runs_in_process
    assert not DaskExecutor().runs_in_process
