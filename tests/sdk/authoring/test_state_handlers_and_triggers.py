"""State handlers fire on every change (task and flow), may replace the state, and ``on_failure``;
triggers decide from upstream states."""

from __future__ import annotations

from typing import Any

import pytest

from flowdeck import Flow, Task, task, triggers
from flowdeck.engine.state import Failed, Skipped, State, Success, TriggerFailed
from flowdeck.engine.task_runner import TaskRunner


def test_task_state_handlers_see_every_change_in_order() -> None:
    changes: list[tuple[str, str, str]] = []

    def record(obj: Task, old: State, new: State) -> None:
        changes.append((obj.name, old.name, new.name))

    @task(state_handlers=[record], max_retries=1, retry_delay=0)
    def flaky() -> int:
        if not any(c[2] == "Retrying" for c in changes):
            raise ValueError("first try fails")
        return 1

    with Flow("handlers") as flow:
        flaky()
    flow.run()
    assert changes == [
        ("flaky", "Pending", "Running"),
        ("flaky", "Running", "Retrying"),
        ("flaky", "Retrying", "Running"),
        ("flaky", "Running", "Success"),
    ]


def test_a_handler_can_replace_the_new_state() -> None:
    def no_failures(task_: Task, old: State, new: State) -> State | None:
        if new.is_failed():
            return Success("failure forgiven", result="fallback")
        return None

    @task(state_handlers=[no_failures])
    def broken() -> None:
        raise RuntimeError("bad")

    with Flow("replace") as flow:
        b = broken()
    state = flow.run()
    assert state.result[b] == Success("failure forgiven", result="fallback")
    assert state.is_successful()


def test_a_raising_handler_fails_the_task_with_a_message() -> None:
    def broken_handler(task_: Task, old: State, new: State) -> None:
        raise KeyError("handler bug")

    @task(state_handlers=[broken_handler])
    def fine() -> int:
        return 1

    with Flow("bad-handler") as flow:
        f = fine()
    state = flow.run()
    assert isinstance(state.result[f], Failed)
    assert "Exception raised while calling state handlers" in (state.result[f].message or "")


def test_flow_state_handlers_and_on_failure_callbacks() -> None:
    flow_changes: list[tuple[str, str]] = []
    failures: list[str] = []

    @task(on_failure=lambda t, s: failures.append(f"task {t.name}: {s.message}"))
    def broken() -> None:
        raise RuntimeError("boom")

    with Flow(
        "flow-handlers",
        state_handlers=[lambda f, old, new: flow_changes.append((old.name, new.name))],
        on_failure=lambda f, s: failures.append(f"flow {f.name}: {s.message}"),
    ) as flow:
        broken()
    flow.run()
    assert flow_changes == [("Scheduled", "Running"), ("Running", "Failed")]
    assert failures == [
        "task broken: Error during execution of task: RuntimeError('boom')",
        "flow flow-handlers: Some reference tasks failed.",
    ]


def test_runner_level_handlers_receive_the_runner() -> None:
    seen: list[str] = []

    def handler(runner: Any, old: State, new: State) -> None:
        seen.append(f"{type(runner).__name__}:{new.name}")

    @task
    def one() -> int:
        return 1

    with Flow("runner-handlers") as flow:
        one()
    from flowdeck.engine.flow_runner import FlowRunner

    FlowRunner(flow, state_handlers=[handler]).run(task_runner_state_handlers=[handler])
    assert seen == ["FlowRunner:Running", "TaskRunner:Running", "TaskRunner:Success", "FlowRunner:Success"]


@task
def ok() -> str:
    return "ok"


@task
def bad() -> None:
    raise RuntimeError("bad")


@task(skip_on_upstream_skip=False)
def skipped_task() -> None:
    from flowdeck.engine import signals

    raise signals.SKIP("skip")


TRIGGER_CASES = [
    # trigger, upstream builders, expected state of the downstream task
    (triggers.all_successful, [ok, ok], Success),
    (triggers.all_successful, [ok, bad], TriggerFailed),
    (triggers.all_successful, [ok, skipped_task], Success),
    (triggers.all_failed, [bad, bad], Success),
    (triggers.all_failed, [ok, bad], TriggerFailed),
    (triggers.any_successful, [ok, bad], Success),
    (triggers.any_successful, [bad, bad], TriggerFailed),
    (triggers.any_failed, [ok, bad], Success),
    (triggers.any_failed, [ok, ok], TriggerFailed),
    (triggers.all_finished, [ok, bad], Success),
    (triggers.always_run, [bad, bad], Success),
    (triggers.some_failed(at_least=1, at_most=1), [ok, bad], Success),
    (triggers.some_successful(at_least=0.9), [ok, bad], TriggerFailed),
]


@pytest.mark.parametrize(("trigger", "upstream", "expected"), TRIGGER_CASES)
def test_triggers(trigger: Any, upstream: list[Task], expected: type[State]) -> None:
    @task(trigger=trigger, skip_on_upstream_skip=False)
    def downstream() -> str:
        return "ran"

    with Flow("triggers") as flow:
        d = downstream(upstream_tasks=[u() for u in upstream])
    state = flow.run().result[d]
    assert type(state) is expected
    if expected is Success:
        assert state.result == "ran"
    else:
        assert getattr(trigger, "__name__", "") in (state.message or "")


def test_custom_trigger_returning_false_is_a_trigger_failure() -> None:
    def never(upstream_states: dict[Any, State]) -> bool:
        return False

    @task(trigger=never)
    def guarded() -> None:
        return None

    with Flow("custom") as flow:
        g = guarded(upstream_tasks=[ok()])
    state = flow.run().result[g]
    assert isinstance(state, TriggerFailed)
    assert state.message == 'Trigger "never" returned False.'


def test_all_successful_sees_the_children_of_a_mapped_upstream() -> None:
    @task
    def maybe(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    @task(trigger=triggers.any_failed)
    def on_any_child_failure(values: list[Any]) -> str:
        return "cleanup"

    with Flow("mapped-trigger") as flow:
        m = maybe.map([1, 2, 3])
        c = on_any_child_failure(m)
    assert flow.run().result[c].result == "cleanup"


def test_skip_on_upstream_skip_is_checked_before_the_trigger() -> None:
    @task(trigger=triggers.all_failed)
    def only_on_failure() -> None:
        return None

    with Flow("skip-first") as flow:
        s = skipped_task()
        o = only_on_failure(upstream_tasks=[s])
    assert isinstance(flow.run().result[o], Skipped)


def test_task_runner_runs_a_task_directly_with_upstream_states() -> None:
    from flowdeck.core.edge import Edge

    @task
    def double(x: int) -> int:
        return 2 * x

    upstream = ok.copy()
    edge = Edge(upstream, double, key="x")
    runner = TaskRunner(double)
    state = runner.run(upstream_states={edge: Success(result=21)})
    assert state == Success("Task run succeeded.", result=42)
    assert [s.name for s in runner.history] == ["Running", "Success"]
    pending = TaskRunner(double).run(upstream_states={edge: State()})
    assert pending.is_pending()
