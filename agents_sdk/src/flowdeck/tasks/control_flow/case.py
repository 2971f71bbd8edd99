"""``case``: a conditional block in a flow (Prefect 1's ``prefect.tasks.control_flow.case``)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from flowdeck.context import context
from flowdeck.core.task import Task

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow


class case:  # noqa: N801 — Prefect 1 spelling
    """Tasks created inside ``with case(task, value):`` run only if ``task``'s result equals ``value``.

    When the block closes, a ``CompareValue`` task comparing ``task``'s result with ``value`` becomes
    upstream of every task of the block that has no upstream task inside the block; when it does not
    match it is skipped, and so (through skip propagation) is the whole block::

        with Flow("branches") as flow:
            cond = check()
            with case(cond, True):
                a = action_if_true()
            with case(cond, False):
                b = action_if_false()
            result = merge(a, b)
    """

    def __init__(self, task: Task, value: Any) -> None:
        if isinstance(value, Task):
            raise TypeError("case(task, value): value must be a constant, not a task.")
        self.task = task
        self.value = value
        self._tasks: list[Task] = []
        self._flow: Flow | None = None
        self._previous: Any = None

    def add_task(self, task: Task, flow: Flow) -> None:
        """Called by ``Flow.add_task`` for every task added while the block is open."""
        from flowdeck.core.parameter import Parameter

        # Parameters are flow inputs, never conditional; the condition itself runs outside the block.
        if task is self.task or isinstance(task, Parameter):
            return
        if self._flow is None:
            self._flow = flow
        elif flow is not self._flow:
            raise ValueError("All tasks of a case block must belong to the same flow.")
        self._tasks.append(task)

    def __enter__(self) -> case:
        self._previous = context.get("case")
        context["case"] = self
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._previous is None:
            context.pop("case", None)
        else:
            context["case"] = self._previous
        if exc_type is not None or not self._tasks:
            return
        from flowdeck.tasks.control_flow.conditional import CompareValue

        flow = self._flow
        assert flow is not None
        members = set(self._tasks)
        compare = CompareValue(self.value, name=f"case({self.value!r})")
        compare.bind(value=self.task, flow=flow)
        for child in self._tasks:
            # A task with an upstream inside the block is skipped through that upstream already.
            if not flow.upstream_tasks(child) & members:
                child.set_upstream(compare, flow=flow)


__all__ = ["case"]
