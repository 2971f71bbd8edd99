"""Operators on tasks, as in Prefect 1: ``x + y``, ``3 * x``, ``x > y``, ``x[0]``, ``x & y`` … each bind
an operator task (``flowdeck.tasks.core.operators``) into the active flow; ``==`` stays identity and
``|`` sets a dependency; operator tasks map like any task."""

from __future__ import annotations

from typing import Any

import pytest

from flowdeck import Flow, Parameter, Task, task, unmapped
from flowdeck.engine.state import Failed, Mapped, Success, TriggerFailed
from flowdeck.tasks.core import operators


@task
def double(x: int) -> int:
    return 2 * x


@task
def pair(a: Any, b: Any) -> dict[str, Any]:
    return {"first": a, "second": b, "both": [a, b]}


@task
def numbers() -> list[int]:
    return [1, 2, 3]


def test_arithmetic_between_parameters_task_results_and_constants() -> None:
    with Flow("arithmetic") as flow:
        x = Parameter("x", default=7)
        y = Parameter("y", default=2)
        d = double(x)  # 14
        results = {
            "add": x + y,
            "sub": x - y,
            "mul_add": x * 3 + 1,
            "div": x / y,
            "floordiv": x // y,
            "mod": x % y,
            "pow": y**x,
            "with_result": d - x,
            "radd": 3 + x,
            "rsub": 10 - y,
            "rmul": 2 * d,
            "rtruediv": 1 / y,
            "rfloordiv": 15 // y,
            "rmod": 15 % x,
            "rpow": 2**y,
        }

    state = flow.run()
    assert state.is_successful()
    values = {name: state.result[t].result for name, t in results.items()}
    assert values == {
        "add": 9,
        "sub": 5,
        "mul_add": 22,
        "div": 3.5,
        "floordiv": 3,
        "mod": 1,
        "pow": 128,
        "with_result": 7,
        "radd": 10,
        "rsub": 8,
        "rmul": 28,
        "rtruediv": 0.5,
        "rfloordiv": 7,
        "rmod": 1,
        "rpow": 4,
    }
    for t in results.values():
        assert isinstance(state.result[t], Success)
    # Each operator is a task of the documented class, wired to its operands.
    assert isinstance(results["add"], operators.Add)
    assert isinstance(results["radd"], operators.Add)
    assert isinstance(results["div"], operators.Div)
    assert isinstance(results["floordiv"], operators.FloorDiv)
    assert isinstance(results["mod"], operators.Mod)
    assert isinstance(results["pow"], operators.Pow)
    assert flow.upstream_tasks(results["add"]) == {x, y}
    # New parameter values flow through the same graph.
    again = flow.run(x=10, y=5)
    assert again.result[results["add"]].result == 15
    assert again.result[results["mul_add"]].result == 31


def test_comparisons_and_logic_return_bools() -> None:
    with Flow("logic") as flow:
        x = Parameter("x", default=3)
        y = Parameter("y", default=5)
        checks = {
            "lt": x < y,
            "le": x <= 3,
            "gt": x > y,
            "ge": y >= 5,
            "reflected_lt": 1 < x,  # noqa: SIM300 (int.__lt__ gives way to Task.__gt__)
            "eq": x.is_equal(3),
            "ne": x.is_not_equal(y),
            "and": (x < y) & (y > 4),
            "rand": True & (x > 10),
            "and_": (x < y).and_(0),
            "or_": (x > y).or_(y),
            "not_": (x > y).not_(),
            "xor": (x < y) ^ (y > 4),
        }

    state = flow.run()
    values = {name: state.result[t].result for name, t in checks.items()}
    assert values == {
        "lt": True,
        "le": True,
        "gt": False,
        "ge": True,
        "reflected_lt": True,
        "eq": True,
        "ne": True,
        "and": True,
        "rand": False,
        "and_": False,
        "or_": True,
        "not_": True,
        "xor": False,
    }
    assert all(type(v) is bool for v in values.values())
    assert isinstance(checks["lt"], operators.LessThan)
    assert isinstance(checks["reflected_lt"], operators.GreaterThan)
    assert isinstance(checks["eq"], operators.Equal)
    assert isinstance(checks["and"], operators.And)
    assert isinstance(checks["or_"], operators.Or)
    assert isinstance(checks["not_"], operators.Not)


def test_indexing_results_with_constants_and_tasks() -> None:
    with Flow("indexing") as flow:
        key = Parameter("key", default="second")
        p = pair(1, "b")
        first = p["first"]
        second = p[key]
        inner = p["both"][0]

    state = flow.run()
    assert state.result[first].result == 1
    assert state.result[second].result == "b"
    assert state.result[inner].result == 1
    assert isinstance(first, operators.GetItem)
    assert first.name == "pair['first']"
    assert second.name == "pair[key]"
    # A missing key fails the GetItem task, like the Python expression would.
    bad = flow.run(key="third")
    assert isinstance(bad.result[second], Failed)
    assert isinstance(bad.result[second].result, KeyError)


def test_equality_stays_identity_so_tasks_work_as_keys() -> None:
    with Flow("identity") as flow:
        x = Parameter("x", default=1)
        a = double(x)
        b = double(x)
    assert a == a
    assert a != b
    assert (a == b) is False
    assert len({a, b, a}) == 2
    assert {a: 1, b: 2}[b] == 2
    # Comparing with == built no task.
    assert len(flow.tasks) == 3


def test_pipe_sets_a_dependency_as_in_prefect_1() -> None:
    order: list[str] = []

    @task
    def step(name: str) -> None:
        order.append(name)

    with Flow("pipe") as flow:
        first = step("first")
        second = step("second")
        returned = first | second

    assert returned is second
    assert flow.upstream_tasks(second) == {first}
    assert not any(isinstance(t, operators.Or) for t in flow.tasks)
    flow.run()
    assert order == ["first", "second"]


def test_operator_tasks_map_the_prefect_1_way() -> None:
    with Flow("mapped operators") as flow:
        values = numbers()
        plus_ten = operators.Add().map(values, unmapped(10))
        squared = operators.Pow().map(plus_ten, unmapped(2))
        big = operators.GreaterThan().map(squared, unmapped(150))
        firsts = operators.GetItem().map([[1, 2], [3, 4]], unmapped(0))

    state = flow.run()
    assert isinstance(state.result[plus_ten], Mapped)
    assert state.result[plus_ten].result == [11, 12, 13]
    assert state.result[squared].result == [121, 144, 169]
    assert state.result[big].result == [False, False, True]
    assert state.result[firsts].result == [1, 3]
    assert all(isinstance(child, Success) for child in state.result[squared].map_states)


def test_an_operator_on_a_failed_upstream_is_trigger_failed() -> None:
    @task
    def broken() -> int:
        raise RuntimeError("no number today")

    with Flow("failed operand") as flow:
        total = broken() + 1

    state = flow.run()
    assert state.is_failed()
    assert isinstance(state.result[total], TriggerFailed)


def test_operators_need_an_active_flow() -> None:
    x = Parameter("x", default=1)
    with pytest.raises(ValueError, match="active Flow"):
        x + 1  # noqa: B018
    with pytest.raises(ValueError, match="active Flow"):
        x.is_equal(1)


def test_task_subclasses_keep_working_as_dict_keys_after_operators() -> None:
    class Source(Task):
        def run(self) -> int:
            return 4

    with Flow("subclass") as flow:
        s = Source()()
        half = s / 2
    state = flow.run()
    assert state.result[half].result == 2.0
    assert state.result[s].result == 4
