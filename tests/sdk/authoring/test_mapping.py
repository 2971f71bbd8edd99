"""Mapping in Prefect 1's documented style: map/reduce, ``unmapped``, mapping over a mapped result,
``flatten``, retries inside mapped children, failures and skips per child."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flowdeck import Flow, Parameter, flatten, mapped, task, unmapped
from flowdeck.engine import signals
from flowdeck.engine.state import Failed, Mapped, TriggerFailed
from flowdeck.tasks.control_flow import FilterTask

from .conftest import RecordingObserver


@task
def numbers(n: int) -> list[int]:
    return list(range(1, n + 1))


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


def test_map_reduce() -> None:
    with Flow("map-reduce") as flow:
        nums = numbers(Parameter("n", default=4))
        squares = square.map(nums)
        result = total(squares)
    state = flow.run()
    parent = state.result[squares]
    assert isinstance(parent, Mapped)
    assert parent.result == [1, 4, 9, 16]
    assert [s.result for s in parent.map_states] == [1, 4, 9, 16]
    assert all(s.is_successful() for s in parent.map_states)
    assert state.result[result].result == 30
    assert flow.run(n=10).result[result].result == 385


def test_unmapped_arguments_and_mapped_constants() -> None:
    with Flow("unmapped") as flow:
        shifted = add.map(x=[1, 2, 3], y=unmapped(10))
        also = add(x=mapped([5, 6]), y=100)
    state = flow.run()
    assert state.result[shifted].result == [11, 12, 13]
    assert state.result[also].result == [105, 106]
    assert flow.is_mapped(shifted) and flow.is_mapped(also)


def test_mapping_over_a_mapped_result_pairs_children_by_index() -> None:
    with Flow("map-of-map") as flow:
        nums = numbers(3)
        first = add.map(nums, unmapped(1))
        second = square.map(first)
        third = add.map(first, second)
    state = flow.run()
    assert state.result[first].result == [2, 3, 4]
    assert state.result[second].result == [4, 9, 16]
    assert state.result[third].result == [6, 12, 20]


def test_zipped_mapping_uses_the_shortest_input() -> None:
    with Flow("zip") as flow:
        pairs = add.map([1, 2, 3], [10, 20])
    assert flow.run().result[pairs].result == [11, 22]


def test_flatten_maps_over_the_concatenation_of_lists() -> None:
    @task
    def nested() -> list[list[int]]:
        return [[1, 2], [], [3]]

    @task
    def upto(n: int) -> list[int]:
        return list(range(n))

    with Flow("flatten") as flow:
        flat = square.map(flatten(nested()))
        ranges = upto.map([1, 2, 3])
        flat_mapped = square.map(flatten(ranges))
        constant = add.map(flatten([[1], [2, 3]]), unmapped(0))
    state = flow.run()
    assert state.result[flat].result == [1, 4, 9]
    assert state.result[flat_mapped].result == [0, 0, 1, 0, 1, 4]
    assert state.result[constant].result == [1, 2, 3]


def test_a_failing_child_fails_only_its_index_downstream_and_the_reduce() -> None:
    @task
    def invert(x: int) -> float:
        return 1 / x

    with Flow("child-failure") as flow:
        inverted = invert.map([1, 0, 2])
        doubled = square.map(inverted)
        summed = total(inverted)
    state = flow.run()
    children = state.result[inverted].map_states
    assert [type(s).__name__ for s in children] == ["Success", "Failed", "Success"]
    assert isinstance(children[1].result, ZeroDivisionError)
    assert [type(s).__name__ for s in state.result[doubled].map_states] == ["Success", "TriggerFailed", "Success"]
    assert isinstance(state.result[summed], TriggerFailed)
    assert state.is_failed()


def test_filter_task_cleans_up_failed_children() -> None:
    @task
    def invert(x: int) -> float:
        return 1 / x

    with Flow("filter") as flow:
        kept = FilterTask()(invert.map([1, 0, 4]))
    assert flow.run().result[kept].result == [1.0, 0.25]


def test_mapping_with_retries_retries_only_the_failing_children(observer: RecordingObserver) -> None:
    attempts: dict[int, int] = {}

    @task(max_retries=2, retry_delay=timedelta(milliseconds=10))
    def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 2 and attempts[x] < 3:
            raise ValueError(f"not yet ({attempts[x]})")
        return x * 10

    with Flow("flaky-map") as flow:
        results = flaky.map([1, 2, 3])
    state = flow.run(observer=observer)
    assert state.is_successful()
    assert state.result[results].result == [10, 20, 30]
    assert attempts == {1: 1, 2: 3, 3: 1}
    assert observer.names("flaky", 1) == ["Running", "Retrying", "Running", "Retrying", "Running", "Success"]
    assert observer.names("flaky", 0) == ["Running", "Success"]
    assert observer.names("flaky", -1) == ["Running", "Mapped"]


def test_skipped_children_skip_their_downstream_children() -> None:
    @task
    def only_even(x: int) -> int:
        if x % 2:
            raise signals.SKIP(f"{x} is odd")
        return x

    with Flow("skip-children") as flow:
        evens = only_even.map([1, 2, 3, 4])
        squared = square.map(evens)
        summed = total(FilterTask()(squared))
    state = flow.run()
    assert [s.is_skipped() for s in state.result[squared].map_states] == [True, False, True, False]
    assert state.result[summed].result == 4 + 16


def test_mapping_over_an_empty_list_gives_an_empty_mapped_state() -> None:
    with Flow("empty") as flow:
        nothing = square.map(numbers(0))
        after = square.map(nothing)
        summed = total(after)
    state = flow.run()
    assert state.result[nothing].result == [] and state.result[nothing].map_states == []
    assert state.result[after].result == []
    assert state.result[summed].result == 0


def test_mapping_over_a_failed_or_non_list_upstream() -> None:
    @task
    def broken() -> list[int]:
        raise RuntimeError("no data")

    @task
    def scalar() -> int:
        return 3

    with Flow("bad-map") as flow:
        after_failure = square.map(broken())
        over_scalar = square.map(scalar())
    state = flow.run()
    assert isinstance(state.result[after_failure], TriggerFailed)
    assert "nothing to map over" in (state.result[after_failure].message or "")
    assert isinstance(state.result[over_scalar], Failed)
    assert "int is not a list" in (state.result[over_scalar].message or "")


def test_map_needs_something_to_map_over() -> None:
    with pytest.raises(ValueError, match="needs at least one input to map over"), Flow("f"):
        add.map(unmapped(1), unmapped(2))


def test_mapped_children_see_their_map_index_in_context() -> None:
    import flowdeck

    @task
    def where(x: Any) -> tuple[Any, Any]:
        return flowdeck.context.map_index, flowdeck.context.task_full_name

    with Flow("index") as flow:
        w = where.map(["a", "b"])
    assert flow.run().result[w].result == [(0, "where[0]"), (1, "where[1]")]
