"""``flowdeck.resource_manager``, as Prefect 1's ``prefect.resource_manager``: a class with ``setup`` and
``cleanup`` used as ``with MyResource(...) as resource:`` inside a flow. Setup runs before the block's
tasks, cleanup after them even when they fail, and only the block's work decides the flow's state."""

from __future__ import annotations

from typing import Any

import pytest

from flowdeck import Flow, Parameter, resource_manager, task
from flowdeck.engine.state import Failed, Skipped, Success, TriggerFailed
from flowdeck.tasks.core.resource_manager import (
    ResourceCleanupTask,
    ResourceInitTask,
    ResourceManager,
    ResourceSetupTask,
)

EVENTS: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    EVENTS.clear()


@resource_manager
class Scratch:
    """Records its lifecycle in EVENTS; ``fail`` names the step that raises."""

    def __init__(self, label: str, fail: str | None = None) -> None:
        EVENTS.append(("init", label))
        if fail == "init":
            raise RuntimeError("init broke")
        self.label = label
        self.fail = fail

    def setup(self) -> str:
        EVENTS.append(("setup", self.label))
        if self.fail == "setup":
            raise RuntimeError("setup broke")
        return f"resource:{self.label}"

    def cleanup(self, resource: str) -> None:
        EVENTS.append(("cleanup", resource))
        if self.fail == "cleanup":
            raise RuntimeError("cleanup broke")


@task
def use(resource: str, item: int) -> str:
    EVENTS.append(("use", item))
    return f"{resource}/{item}"


@task
def explode(value: Any) -> None:
    EVENTS.append(("explode", value))
    raise ValueError("the work failed")


@task
def after(value: Any) -> Any:
    EVENTS.append(("after", value))
    return value


def test_setup_runs_before_the_block_and_cleanup_after_it() -> None:
    with Flow("resource") as flow:
        label = Parameter("label", default="tmp")
        with Scratch(label) as resource:
            first = use(resource, 1)
            second = use(resource, 2)
            both = after([first, second])
        outside = after(both)

    state = flow.run()
    assert state.is_successful()
    for t in flow.tasks:
        assert isinstance(state.result[t], Success), t
    assert state.result[both].result == ["resource:tmp/1", "resource:tmp/2"]
    assert state.result[outside].result == ["resource:tmp/1", "resource:tmp/2"]

    names = [e[0] for e in EVENTS]
    assert names[:2] == ["init", "setup"]
    assert sorted(EVENTS[2:4]) == [("use", 1), ("use", 2)]
    assert names.index("cleanup") > names.index("after")
    assert ("cleanup", "resource:tmp") in EVENTS

    # The graph Prefect 1 builds: three resource tasks around the block.
    init = next(t for t in flow.tasks if isinstance(t, ResourceInitTask))
    setup = next(t for t in flow.tasks if isinstance(t, ResourceSetupTask))
    cleanup = next(t for t in flow.tasks if isinstance(t, ResourceCleanupTask))
    assert (init.name, setup.name, cleanup.name) == ("Scratch", "Scratch.setup", "Scratch.cleanup")
    assert flow.upstream_tasks(init) == {label}
    assert flow.upstream_tasks(first) == {setup}
    assert both in flow.upstream_tasks(cleanup)
    assert first not in flow.upstream_tasks(cleanup)  # it has a downstream task inside the block
    assert outside not in flow.upstream_tasks(cleanup)  # it is outside the block
    assert cleanup not in flow.reference_tasks()


def test_cleanup_runs_when_the_work_fails_and_the_flow_fails() -> None:
    with Flow("failing work") as flow:
        with Scratch("w") as resource:
            item = use(resource, 1)
            broken = explode(item)
        downstream = after(broken)

    state = flow.run()
    assert state.is_failed()
    assert isinstance(state.result[broken], Failed)
    assert isinstance(state.result[downstream], TriggerFailed)
    cleanup = next(t for t in flow.tasks if isinstance(t, ResourceCleanupTask))
    assert isinstance(state.result[cleanup], Success)
    assert EVENTS[-1] == ("cleanup", "resource:w")
    assert [e[0] for e in EVENTS] == ["init", "setup", "use", "explode", "cleanup"]


def test_a_failure_in_the_last_task_of_the_block_fails_the_flow_not_hidden_by_cleanup() -> None:
    # The cleanup task is the only terminal task here; as in Prefect 1 it is not a reference task, so
    # the flow's state is the failed work's, not the successful cleanup's.
    with Flow("failing last task") as flow:
        with Scratch("w") as resource:
            broken = explode(resource)

    assert flow.reference_tasks() == {broken}
    state = flow.run()
    cleanup = next(t for t in flow.tasks if isinstance(t, ResourceCleanupTask))
    assert isinstance(state.result[cleanup], Success)
    assert EVENTS[-1] == ("cleanup", "resource:w")
    assert state.is_failed()


def test_setup_failure_skips_cleanup_and_fails_the_block() -> None:
    with Flow("setup fails") as flow:
        with Scratch("s", fail="setup") as resource:
            item = use(resource, 1)

    state = flow.run()
    assert state.is_failed()
    setup = next(t for t in flow.tasks if isinstance(t, ResourceSetupTask))
    cleanup = next(t for t in flow.tasks if isinstance(t, ResourceCleanupTask))
    assert isinstance(state.result[setup], Failed)
    assert isinstance(state.result[item], TriggerFailed)
    assert isinstance(state.result[cleanup], Skipped)
    assert [e[0] for e in EVENTS] == ["init", "setup"]


def test_init_failure_skips_setup_work_and_cleanup() -> None:
    with Flow("init fails") as flow:
        with Scratch("i", fail="init") as resource:
            item = use(resource, 1)

    state = flow.run()
    assert state.is_failed()
    init = next(t for t in flow.tasks if isinstance(t, ResourceInitTask))
    setup = next(t for t in flow.tasks if isinstance(t, ResourceSetupTask))
    cleanup = next(t for t in flow.tasks if isinstance(t, ResourceCleanupTask))
    assert isinstance(state.result[init], Failed)
    assert isinstance(state.result[setup], TriggerFailed)
    assert isinstance(state.result[item], TriggerFailed)
    assert isinstance(state.result[cleanup], Skipped)
    assert EVENTS == [("init", "i")]


def test_a_failing_cleanup_does_not_fail_the_flow() -> None:
    with Flow("cleanup fails") as flow:
        with Scratch("c", fail="cleanup") as resource:
            item = use(resource, 1)
        done = after(item)

    state = flow.run()
    cleanup = next(t for t in flow.tasks if isinstance(t, ResourceCleanupTask))
    assert isinstance(state.result[cleanup], Failed)
    assert isinstance(state.result[done], Success)
    assert state.is_successful()


def test_a_resource_without_setup_gives_none_and_still_cleans_up() -> None:
    cleaned: list[Any] = []

    @resource_manager(name="Lock")
    class NoSetup:
        def __init__(self, name: str) -> None:
            self.name = name

        def cleanup(self, resource: Any) -> None:
            cleaned.append((self.name, resource))

    assert isinstance(NoSetup, ResourceManager)
    with Flow("no setup") as flow:
        with NoSetup("db") as resource:
            work = after(5)

    assert resource is None
    state = flow.run()
    assert state.is_successful()
    assert state.result[work].result == 5
    assert cleaned == [("db", None)]
    assert {t.name for t in flow.tasks} == {"Lock", "Lock.cleanup", "after"}


def test_a_resource_manager_needs_a_flow_and_a_cleanup_method() -> None:
    with pytest.raises(ValueError, match="active Flow"):
        Scratch("x")
    with pytest.raises(TypeError, match="cleanup"):

        @resource_manager
        class NoCleanup:
            def setup(self) -> None:
                return None
