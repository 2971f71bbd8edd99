"""``flow.run()``: the final state and every task's state and result, parameters, reference tasks."""

from __future__ import annotations

from typing import Any

import pytest

import flowdeck
from flowdeck import Flow, Parameter, task
from flowdeck.engine import signals
from flowdeck.engine.flow_runner import FlowRunner
from flowdeck.engine.state import Failed, Success, TriggerFailed
from flowdeck.executors import LocalExecutor


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def explode(x: Any) -> None:
    raise RuntimeError("boom")


def test_run_returns_final_state_with_every_task_state_and_result() -> None:
    with Flow("arith") as flow:
        x = Parameter("x", default=2)
        y = Parameter("y", default=3)
        s = add(x, y)
        s2 = add(s, 100)
    state = flow.run()
    assert isinstance(state, Success)
    assert state.message == "All reference tasks succeeded."
    assert set(state.result) == {x, y, s, s2}
    assert state.result[x].result == 2
    assert state.result[s].result == 5
    assert state.result[s2].result == 105
    assert all(isinstance(st, Success) for st in state.result.values())


def test_parameters_by_dict_or_keyword_with_defaults() -> None:
    with Flow("params") as flow:
        x = Parameter("x")
        y = Parameter("y", default=10)
        s = add(x, y)
    assert flow.run(parameters={"x": 1}).result[s].result == 11
    assert flow.run(x=1, y=2).result[s].result == 3
    assert x.required and not y.required


def test_missing_required_parameter_is_a_clear_error() -> None:
    with Flow("params") as flow:
        add(Parameter("x"), Parameter("y", default=1))
    with pytest.raises(ValueError, match=r"needs a value for the required parameter\(s\) 'x'"):
        flow.run()


def test_unknown_parameter_name_is_a_clear_error_listing_the_known_ones() -> None:
    with Flow("params") as flow:
        add(Parameter("x", default=1), Parameter("y", default=1))
    with pytest.raises(ValueError, match=r"unexpected parameter\(s\) 'z'; its parameters are: 'x', 'y'"):
        flow.run(z=3)


def test_parameter_required_false_without_default_gives_none() -> None:
    @task
    def echo(v: Any) -> Any:
        return v

    with Flow("optional") as flow:
        e = echo(Parameter("v", required=False))
    assert flow.run().result[e].result is None


def test_flow_runner_reports_bad_parameters_as_a_failed_state_instead_of_raising(observer: Any) -> None:
    with Flow("params") as flow:
        add(Parameter("x"), 1)
    state = FlowRunner(flow).run(parameters={"nope": 1}, observer=observer)
    assert isinstance(state, Failed)
    assert "unexpected parameter(s) 'nope'" in (state.message or "")
    assert observer.flow_names() == ["Failed"]


def test_a_failed_terminal_task_fails_the_flow_and_downstream_tasks_trigger_fail() -> None:
    with Flow("failing") as flow:
        a = add(1, 2)
        b = explode(a)
        c = add(b, 1)
    state = flow.run()
    assert isinstance(state, Failed)
    assert state.message == "Some reference tasks failed."
    assert state.result[a].is_successful()
    assert isinstance(state.result[b], Failed)
    assert isinstance(state.result[b].result, RuntimeError)
    assert isinstance(state.result[c], TriggerFailed)


def test_reference_tasks_decide_the_flow_state() -> None:
    with Flow("refs") as flow:
        ok = add(1, 2)
        explode(ok)
    flow.set_reference_tasks([ok])
    assert flow.run().is_successful()


def test_run_on_schedule_is_refused_with_guidance_and_a_schedule_does_not_loop() -> None:
    class EverySecond:
        def serialize(self) -> dict[str, Any]:
            return {"clocks": [{"kind": "interval", "interval_seconds": 1}]}

    with Flow("scheduled", schedule=EverySecond()) as flow:
        s = add(1, 1)
    assert flow.run().result[s].result == 2  # ran once and returned
    with pytest.raises(ValueError, match="register it"):
        flow.run(run_on_schedule=True)


def test_executor_argument_and_flow_default_executor_are_used() -> None:
    class CountingExecutor(LocalExecutor):
        def __init__(self) -> None:
            self.calls = 0

        def submit(self, fn: Any, /, *args: Any, extra_context: Any = None, **kwargs: Any) -> Any:
            self.calls += 1
            return super().submit(fn, *args, extra_context=extra_context, **kwargs)

    with Flow("exec") as flow:
        add(add(1, 2), 3)
    given = CountingExecutor()
    flow.run(executor=given)
    assert given.calls == 2
    flow.executor = default = CountingExecutor()
    flow.run()
    assert default.calls == 2


def test_signals_fail_success_skip_choose_the_state() -> None:
    @task
    def fail() -> None:
        raise signals.FAIL("bad input")

    @task
    def succeed_early() -> None:
        raise signals.SUCCESS("done early", result=42)

    @task
    def skip() -> None:
        raise signals.SKIP("nothing to do")

    with Flow("signals") as flow:
        f, s, k = fail(), succeed_early(), skip()
    state = flow.run()
    assert isinstance(state.result[f], Failed) and state.result[f].message == "bad input"
    assert state.result[s].is_successful() and state.result[s].result == 42
    assert state.result[k].is_skipped() and state.result[k].message == "nothing to do"
    assert state.is_failed()


def test_endrun_sets_exactly_the_given_state() -> None:
    from flowdeck.engine.state import Cancelled

    @task
    def stop() -> None:
        raise signals.ENDRUN(Cancelled("stopped by the task"))

    with Flow("endrun") as flow:
        t = stop()
    assert flow.run().result[t] == Cancelled("stopped by the task")


def test_context_inside_tasks_has_run_values_and_is_thread_local() -> None:
    import threading

    seen: dict[str, Any] = {}

    @task
    def inspect_context() -> None:
        ctx = flowdeck.context
        seen.update(
            flow_name=ctx.flow_name, task_name=ctx.get("task_name"), task_key=ctx["task_key"],
            map_index=ctx.map_index, parameters=ctx.parameters, run_id=ctx.get("flow_run_id"),
            today=ctx.today, custom=ctx.get("custom"), run_count=ctx.task_run_count,
        )
        ctx.logger.info("hello from a task")
        other: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: other.update(key=flowdeck.context.get("task_key")))
        thread.start()
        thread.join()
        seen["other_thread"] = other["key"]

    with Flow("ctx") as flow:
        inspect_context(upstream_tasks=[Parameter("p", default=1)])
    with flowdeck.context(custom="from outside"):
        flow.run(context={"flow_run_id": "run-1"})
    assert seen["flow_name"] == "ctx"
    assert seen["task_name"] == "inspect_context"
    assert seen["task_key"] == "inspect_context"
    assert seen["map_index"] is None  # Prefect 1: None outside a map
    assert seen["parameters"] == {"p": 1}
    assert seen["run_id"] == "run-1"
    assert len(seen["today"]) == 10
    assert seen["custom"] == "from outside"
    assert seen["run_count"] == 1
    assert seen["other_thread"] is None
    assert flowdeck.context.get("task_key") is None  # restored after the run


def test_context_call_sets_values_for_a_block_only() -> None:
    with flowdeck.context(a=1):
        assert flowdeck.context.a == 1
        with flowdeck.context({"b": 2}, a=3):
            assert (flowdeck.context.a, flowdeck.context.b) == (3, 2)
        assert "b" not in flowdeck.context
    assert flowdeck.context.get("a") is None
    with pytest.raises(AttributeError, match="no value for 'missing'"):
        _ = flowdeck.context.missing
    assert flowdeck.context.logger.name == "flowdeck"  # outside runs: the flowdeck logger
    assert flowdeck.context.get("logger").name == "flowdeck"


def test_log_stdout_sends_prints_to_the_task_logger(caplog: pytest.LogCaptureFixture) -> None:
    @task(log_stdout=True)
    def chatty() -> int:
        print("line one")
        print("line two")
        return 1

    with Flow("stdout") as flow:
        chatty()
    with caplog.at_level("INFO", logger="flowdeck"):
        flow.run()
    messages = [r.getMessage() for r in caplog.records if r.name == "flowdeck.Task: chatty"]
    assert messages == ["line one", "line two"]


def test_get_logger_is_in_the_flowdeck_hierarchy() -> None:
    from flowdeck.utilities.logging import get_logger

    assert get_logger().name == "flowdeck"
    assert get_logger("mine").name == "flowdeck.mine"
