"""``flowdeck.apply_map``, as Prefect 1's ``prefect.apply_map``: map a function that builds a sub-graph
(tasks, operators, ``case``/``merge``) over lists or task results, element by element."""

from __future__ import annotations

from typing import Any

import pytest

from flowdeck import Flow, Parameter, apply_map, case, task, unmapped
from flowdeck.engine.state import Mapped, Skipped, Success
from flowdeck.tasks.control_flow import merge


@task
def inc(x: int) -> int:
    return x + 1


@task
def dec(x: int) -> int:
    return x - 1


@task
def is_even(x: int) -> bool:
    return x % 2 == 0


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def total(values: list[int]) -> int:
    return sum(values)


def inc_or_dec(x: Any) -> Any:
    even = is_even(x)
    with case(even, True):
        up = inc(x)
    with case(even, False):
        down = dec(x)
    return merge(up, down)


def test_apply_map_with_case_and_merge_inside() -> None:
    with Flow("branches per element") as flow:
        result = apply_map(inc_or_dec, [1, 2, 3, 4])
        summed = total(result)

    state = flow.run()
    assert state.is_successful()
    merged = state.result[result]
    assert isinstance(merged, Mapped)
    assert merged.result == [0, 3, 2, 5]
    assert state.result[summed].result == 10

    # Each element took exactly one branch: the other branch's child was skipped.
    up = next(t for t in flow.tasks if t.name == "inc")
    down = next(t for t in flow.tasks if t.name == "dec")
    up_children = state.result[up].map_states
    down_children = state.result[down].map_states
    assert [type(s) for s in up_children] == [Skipped, Success, Skipped, Success]
    assert [type(s) for s in down_children] == [Success, Skipped, Success, Skipped]
    assert [s.result for s in up_children if not s.is_skipped()] == [3, 5]
    # Every task the function built is mapped in the real flow.
    for t in flow.tasks:
        if t.name in ("inc", "dec", "is_even", "Merge") or t.name.startswith("case("):
            assert flow.is_mapped(t), t


def test_apply_map_over_a_task_result_with_unmapped_and_keyword_arguments() -> None:
    def shift_then_double(x: Any, offset: Any) -> Any:
        shifted = add(x, offset)
        return shifted * 2

    with Flow("task inputs") as flow:
        n = Parameter("n", default=4)
        offset = Parameter("offset", default=10)
        doubled = apply_map(shift_then_double, numbers(n), offset=unmapped(offset))

    state = flow.run()
    assert state.is_successful()
    assert state.result[doubled].result == [20, 22, 24, 26]
    again = flow.run(n=2, offset=1)
    assert again.result[doubled].result == [2, 4]
    # The unmapped parameter feeds every child whole; the parameter itself is not mapped.
    assert not flow.is_mapped(offset)


def test_apply_map_with_an_unmapped_constant_and_several_mapped_lists() -> None:
    def combine(a: Any, b: Any, c: Any) -> Any:
        return add(add(a, b), c)

    with Flow("constants") as flow:
        out = apply_map(combine, [1, 2, 3], [10, 20, 30], c=unmapped(100))

    state = flow.run()
    assert state.result[out].result == [111, 122, 133]


def test_apply_map_inside_an_outer_case_is_skipped_with_it() -> None:
    def inc_twice(x: Any) -> Any:
        return inc(inc(x))

    with Flow("outer case") as flow:
        go = Parameter("go", default=False)
        with case(go, True):
            out = apply_map(inc_twice, [1, 2])

    skipped = flow.run()
    assert skipped.is_successful()
    assert isinstance(skipped.result[out], Skipped)
    ran = flow.run(go=True)
    assert isinstance(ran.result[out], Mapped)
    assert ran.result[out].result == [3, 4]


def test_apply_map_with_explicit_flow_passes_the_flow_to_func() -> None:
    seen: list[Any] = []

    def build(x: Any, flow: Flow) -> Any:
        seen.append(flow)
        return inc(x, flow=flow)

    flow = Flow("imperative")
    out = apply_map(build, [5, 6], flow=flow)
    assert seen and isinstance(seen[0], Flow)
    state = flow.run()
    assert state.result[out].result == [6, 7]


def test_apply_map_rejects_values_it_cannot_map_over_and_needs_a_flow() -> None:
    with Flow("bad"), pytest.raises(TypeError, match="cannot map over a int"):
        apply_map(inc_or_dec, 3)
    with pytest.raises(ValueError, match="active Flow"):
        apply_map(inc_or_dec, [1, 2])


def test_tasks_without_inputs_in_func_still_run_once_per_element() -> None:
    @task
    def hello() -> str:
        return "hello"

    def greet_each(name: Any) -> Any:
        return hello()

    with Flow("no inputs") as flow:
        greetings = apply_map(greet_each, ["a", "b", "c"])

    state = flow.run()
    assert flow.is_mapped(greetings)
    assert state.result[greetings].result == ["hello", "hello", "hello"]
