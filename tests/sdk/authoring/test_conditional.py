"""Conditional branches in Prefect 1's documented style: ``case`` + ``merge``, ``ifelse``, ``switch``."""

from __future__ import annotations

from typing import Any

import pytest

from flowdeck import Flow, Parameter, case, task
from flowdeck.tasks.control_flow import ifelse, merge, switch


@task
def check_condition(flag: bool) -> bool:
    return flag


@task
def action_if_true() -> str:
    return "I am true!"


@task
def action_if_false() -> str:
    return "I am false!"


@task
def another_action(val: str) -> str:
    return f"got {val}"


def build_branching_flow() -> tuple[Flow, dict[str, Any]]:
    # The "Conditional Tasks" example of the Prefect 1 docs, with the condition as a parameter.
    with Flow("Example: Conditional Tasks") as flow:
        cond = check_condition(Parameter("flag", default=True))
        with case(cond, True):
            val_if_true = action_if_true()
        with case(cond, False):
            val_if_false = action_if_false()
        val = merge(val_if_true, val_if_false)
        result = another_action(val)
    return flow, {"true": val_if_true, "false": val_if_false, "merged": val, "result": result}


@pytest.mark.parametrize(
    ("flag", "ran", "skipped", "expected"),
    [(True, "true", "false", "got I am true!"), (False, "false", "true", "got I am false!")],
)
def test_case_blocks_run_one_branch_and_merge_joins_them(flag: bool, ran: str, skipped: str, expected: str) -> None:
    flow, tasks = build_branching_flow()
    state = flow.run(flag=flag)
    assert state.is_successful()
    assert state.result[tasks[ran]].is_successful()
    assert state.result[tasks[skipped]].is_skipped()
    assert state.result[tasks["merged"]].result == expected.removeprefix("got ")
    assert state.result[tasks["result"]].result == expected


def test_skip_propagates_through_a_whole_case_block_and_downstream() -> None:
    @task
    def step(x: int) -> int:
        return x + 1

    with Flow("block") as flow:
        cond = check_condition(False)
        with case(cond, True):
            a = step(1)
            b = step(a)
        after = step(b)
    state = flow.run()
    assert all(state.result[t].is_skipped() for t in (a, b, after))
    # Only the root of the block hangs off the comparison; b is skipped through a.
    compare = next(t for t in flow.tasks if t.name == "case(True)")
    assert flow.downstream_tasks(compare) == {a}
    assert state.is_successful()  # skipped terminal tasks count as success


def test_tasks_with_skip_on_upstream_skip_false_still_run() -> None:
    @task(skip_on_upstream_skip=False)
    def always(x: Any) -> str:
        return f"ran with {x!r}"

    with Flow("no-skip") as flow:
        cond = check_condition(False)
        with case(cond, True):
            a = action_if_true()
        b = always(a)
    state = flow.run()
    assert state.result[a].is_skipped()
    assert state.result[b].result == "ran with None"


def test_nested_case_blocks() -> None:
    @task
    def pick(v: str) -> str:
        return v

    with Flow("nested") as flow:
        outer = check_condition(Parameter("outer", default=True))
        inner = check_condition(Parameter("inner", default=False))
        with case(outer, True):
            with case(inner, True):
                both = pick("both")
            with case(inner, False):
                only_outer = pick("only outer")
        with case(outer, False):
            neither = pick("neither")
        chosen = merge(both, only_outer, neither)
    assert flow.run().result[chosen].result == "only outer"
    assert flow.run(inner=True).result[chosen].result == "both"
    assert flow.run(outer=False, inner=True).result[chosen].result == "neither"


def test_merge_is_skipped_when_every_branch_was_skipped() -> None:
    with Flow("all-skipped") as flow:
        cond = check_condition(True)
        with case(cond, "never"):
            a = action_if_true()
        m = merge(a)
    state = flow.run()
    assert state.result[m].is_skipped()


def test_ifelse_runs_the_matching_task() -> None:
    with Flow("ifelse") as flow:
        cond = check_condition(Parameter("flag", default=True))
        yes, no = action_if_true(), action_if_false()
        ifelse(cond, yes, no)
        out = merge(yes, no)
    state = flow.run()
    assert state.result[yes].is_successful() and state.result[no].is_skipped()
    assert state.result[out].result == "I am true!"
    state = flow.run(flag=False)
    assert state.result[out].result == "I am false!"


def test_switch_runs_only_the_case_matching_the_value() -> None:
    @task
    def color() -> str:
        return "green"

    @task
    def say(word: str) -> str:
        return word

    with Flow("switch") as flow:
        c = color()
        red, green, blue = say("stop"), say("go"), say("slow")
        switch(c, {"red": red, "green": green, "blue": blue})
    state = flow.run()
    assert [state.result[t].is_skipped() for t in (red, green, blue)] == [True, False, True]
    assert state.result[green].result == "go"


def test_case_value_cannot_be_a_task() -> None:
    with Flow("bad"), pytest.raises(TypeError, match="value must be a constant"):
        case(check_condition(True), action_if_true())
