"""Building flows: the functional API (calling tasks inside ``with Flow``), the imperative API, task
keys, constants, Task subclasses and the errors people hit while building."""

from __future__ import annotations

from datetime import timedelta

import pytest

import flowdeck
from flowdeck import Flow, Parameter, Task, tags, task
from flowdeck.core.edge import Edge
from flowdeck.core.flow import slugify
from flowdeck.tasks.core.constants import Constant


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
def total(values: list[int]) -> int:
    return sum(values)


class Multiply(Task):
    """A Task subclass, Prefect 1 style: configuration in __init__, work in run()."""

    def __init__(self, factor: int, **kwargs: object) -> None:
        self.factor = factor
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def run(self, x: int) -> int:
        return x * self.factor


def test_calling_a_task_in_a_flow_binds_a_copy_with_edges_and_constants() -> None:
    with Flow("build") as flow:
        a = add(1, 2)
        b = add(a, y=10)

    assert a is not add and b is not add and a is not b
    assert flow.tasks == {a, b}
    assert flow.edges == {Edge(a, b, key="x")}
    assert flow.constants[a] == {"x": 1, "y": 2}
    assert flow.constants[b] == {"y": 10}
    state = flow.run()
    assert state.is_successful()
    assert state.result[b].result == 13


def test_task_keys_are_slugified_names_made_unique_in_order_added() -> None:
    with Flow("keys") as flow:
        first = add(1)
        second = add(first)
        third = add(second, task_args={"name": "Load Rows!"})
        fourth = add(third, task_args={"name": "Load Rows!"})
    assert [flow.key_of(t) for t in (first, second, third, fourth)] == ["add", "add-2", "load-rows", "load-rows-2"]
    assert third.slug == "load-rows"
    assert slugify("Ünïcode  Name") == "unicode-name"
    assert slugify("!!!") == "task"


def test_explicit_slugs_are_kept_and_must_be_unique() -> None:
    with Flow("slugs") as flow:
        a = add(1, task_args={"slug": "extract"})
    assert flow.key_of(a) == "extract"
    with pytest.raises(ValueError, match="slug 'extract'"), Flow("slugs") as flow:
        add(1, task_args={"slug": "extract"})
        add(2, task_args={"slug": "extract"})


def test_calling_a_task_outside_a_flow_is_a_clear_error_and_run_calls_the_function() -> None:
    with pytest.raises(ValueError, match=r"inside a `with Flow\(\.\.\.\):` block.*add\.run"):
        add(1, 2)
    assert add.run(1, 2) == 3


def test_missing_or_unknown_arguments_fail_at_bind_time() -> None:
    with pytest.raises(TypeError, match="Cannot bind task 'add'.*missing a required argument: 'x'"), Flow("f"):
        add()
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"), Flow("f"):
        add(1, z=3)


def test_task_subclass_with_run_and_init_configuration() -> None:
    with Flow("subclass") as flow:
        triple = Multiply(3, name="triple")
        result = triple(add(1, 1))
    assert result.name == "triple"
    assert flow.run().result[result].result == 6


def test_task_subclass_cannot_use_reserved_argument_names_or_varargs() -> None:
    with pytest.raises(ValueError, match="reserved argument name"):

        class Bad(Task):
            def run(self, flow: int) -> None:  # type: ignore[override]
                return None

    with pytest.raises(ValueError, match=r"\*args"):

        @task
        def spread(*values: int) -> int:
            return sum(values)


def test_set_upstream_set_downstream_and_shift_operators_order_without_data() -> None:
    order: list[str] = []

    @task
    def mark(label: str) -> None:
        order.append(label)

    with Flow("ordering") as flow:
        a = mark("a")
        b = mark("b")
        c = mark("c")
        d = mark("d")
        c.set_upstream(b)
        b.set_upstream(a)
        c.set_downstream(d)
    assert flow.upstream_tasks(c) == {b}
    assert flow.downstream_tasks(c) == {d}
    flow.run()
    assert order == ["a", "b", "c", "d"]

    order.clear()
    with Flow("shift") as flow2:
        x, y, z = mark("x"), mark("y"), mark("z")
        z >> y >> x
    flow2.run()
    assert order == ["z", "y", "x"]


def test_imperative_api_add_task_add_edge_set_dependencies_and_chain() -> None:
    flow = Flow("imperative")
    one = Constant(1, name="one")
    plus = add.copy()
    flow.add_task(one)
    flow.set_dependencies(plus, keyword_tasks={"x": one, "y": 41})
    later = add.copy(name="later")
    flow.add_edge(plus, later, key="x")
    last = Constant("done", name="last")
    flow.chain(later, last)
    state = flow.run()
    assert state.result[plus].result == 42
    assert state.result[later].result == 43
    assert flow.upstream_tasks(last) == {later}


def test_cycles_are_refused_when_the_edge_is_added() -> None:
    flow = Flow("cycle")
    a, b, c = Constant(1), add.copy(), add.copy()
    flow.add_edge(a, b, key="x")
    flow.add_edge(b, c, key="x")
    with pytest.raises(ValueError, match="cycle"):
        flow.add_edge(c, a)
    with pytest.raises(ValueError, match="cannot depend on itself"):
        flow.add_edge(b, b)


def test_an_argument_cannot_be_given_twice() -> None:
    with Flow("twice") as flow:
        a = add(1)
    with pytest.raises(ValueError, match="Argument 'x' of task 'add' was already given"):
        flow.add_edge(Constant(5), a, key="x")


def test_a_required_argument_left_unset_fails_validation_with_its_name() -> None:
    flow = Flow("unset")
    flow.add_task(add.copy())
    with pytest.raises(ValueError, match=r"has no value for argument\(s\) x"):
        flow.run()


def test_collections_of_tasks_become_collection_tasks() -> None:
    with Flow("collections") as flow:
        a, b = add(1), add(2)
        summed = total([a, b, 10])
        as_dict = task(lambda d: d)(d={"first": a, "second": b})
        as_tuple = task(lambda t: t)(t=(a, b))
    state = flow.run()
    assert state.result[summed].result == 2 + 3 + 10
    assert state.result[as_dict].result == {"first": 2, "second": 3}
    assert state.result[as_tuple].result == (2, 3)


def test_nout_unpacks_and_getitem_indexes_results() -> None:
    @task(nout=2)
    def pair() -> tuple[int, str]:
        return 7, "seven"

    @task
    def mapping() -> dict[str, int]:
        return {"a": 1}

    with Flow("unpack") as flow:
        number, word = pair()
        picked = mapping()["a"]
    state = flow.run()
    assert state.result[number].result == 7
    assert state.result[word].result == "seven"
    assert state.result[picked].result == 1

    with pytest.raises(TypeError, match="nout"), Flow("f"):
        first, second = add(1)


def test_tags_context_and_task_args_override_attributes() -> None:
    with Flow("tags") as flow, tags("etl", "nightly"):
        a = add(1, task_args={"tags": ["db"], "retries": 2, "timeout": timedelta(seconds=5)})
    assert a.tags == {"db", "etl", "nightly"}
    assert a.max_retries == a.retries == 2
    assert a.timeout == 5.0
    assert flow.get_tasks(tags=["etl"]) == [a]
    with pytest.raises(AttributeError, match="not an attribute"):
        add.copy(colour="red")


def test_task_options_are_validated() -> None:
    with pytest.raises(ValueError, match="retries must be an integer"):
        task(retries=-1)(lambda: None)
    with pytest.raises(ValueError, match="not both"):
        task(retries=1, max_retries=2)(lambda: None)
    with pytest.raises(ValueError, match="timeout must be a positive"):
        task(timeout=0)(lambda: None)
    with pytest.raises(TypeError, match="cache_for"):
        task(cache_for=10)(lambda: None)  # type: ignore[arg-type]


def test_parameters_are_tasks_with_unique_names() -> None:
    with Flow("params") as flow:
        x = Parameter("x", default=2)
        y = add(x, x)
    assert flow.parameters() == {x}
    assert flow.edges == {Edge(x, y, key="x"), Edge(x, y, key="y")}
    with pytest.raises(ValueError, match="already has a parameter named 'x'"), Flow("dup"):
        add(Parameter("x"), Parameter("x"))


def test_flowdeck_exports_the_prefect_1_names() -> None:
    from flowdeck.core.flow import Flow as FlowPath
    from flowdeck.core.parameter import Parameter as ParameterPath
    from flowdeck.core.task import Task as TaskPath
    from flowdeck.engine import signals, state
    from flowdeck.engine.flow_runner import FlowRunner
    from flowdeck.engine.results import LocalResult, Result
    from flowdeck.engine.task_runner import TaskRunner
    from flowdeck.tasks.control_flow import ifelse, merge, switch
    from flowdeck.tasks.control_flow.case import case
    from flowdeck.utilities.logging import get_logger

    assert (FlowPath, ParameterPath, TaskPath) == (flowdeck.Flow, flowdeck.Parameter, flowdeck.Task)
    assert case is flowdeck.case
    for name in ("FAIL", "SUCCESS", "SKIP", "RETRY", "LOOP", "PAUSE", "ENDRUN", "TRIGGERFAIL"):
        assert hasattr(signals, name)
    for name in (
        "Pending", "Scheduled", "Paused", "Running", "Finished", "Success", "Cached", "Mapped", "Skipped",
        "Looped", "Failed", "TimedOut", "TriggerFailed", "Retrying", "Cancelled", "Submitted", "Queued",
    ):
        assert hasattr(state, name)
    assert all(callable(x) for x in (FlowRunner, TaskRunner, LocalResult, Result, ifelse, merge, switch, get_logger))
    assert {"unmapped", "flatten", "mapped", "tags", "context"} <= set(flowdeck.__all__)
