"""``switch``, ``ifelse``, ``merge`` and the ``CompareValue`` task behind ``case``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowdeck import triggers
from flowdeck.core.task import Task
from flowdeck.engine import signals

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow


class CompareValue(Task):
    """Skips itself (and so everything downstream of it) unless its input equals ``value``."""

    def __init__(self, value: Any, **kwargs: Any) -> None:
        self.value = value
        kwargs.setdefault("name", f"case({value!r})")
        super().__init__(**kwargs)

    def run(self, value: Any) -> None:
        if value != self.value:
            raise signals.SKIP(f"Provided value {value!r} did not match {self.value!r}.")


class _AsBool(Task):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "as_bool")
        super().__init__(**kwargs)

    def run(self, x: Any) -> bool:
        return bool(x)


class Merge(Task):
    """Returns the first input (``task1``, ``task2`` … in order) that is not None: the result of
    the branch that ran. Runs unless every input was skipped."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "Merge")
        kwargs.setdefault("skip_on_upstream_skip", False)
        kwargs.setdefault("trigger", triggers.not_all_skipped)
        super().__init__(**kwargs)

    def run(self, **task_results: Any) -> Any:
        ordered = sorted(task_results.items(), key=lambda kv: int(kv[0][4:]) if kv[0][4:].isdigit() else 0)
        return next((v for _, v in ordered if v is not None), None)


def switch(condition: Task, cases: Mapping[Any, Task], mapped: bool = False, flow: Flow | None = None) -> None:
    """Run only the task of ``cases`` whose key equals ``condition``'s result; the others (and their
    downstream tasks, unless ``skip_on_upstream_skip=False``) are skipped."""
    for value, branch in cases.items():
        compare = CompareValue(value, name=f"case({value!r})")
        if mapped:
            compare.map(value=condition, flow=flow)
        else:
            compare.bind(value=condition, flow=flow)
        branch.set_upstream(compare, flow=flow, mapped=mapped)


def ifelse(condition: Task, true_task: Task, false_task: Task, mapped: bool = False, flow: Flow | None = None) -> None:
    """Run ``true_task`` if ``condition``'s result is truthy, else ``false_task``; the other is skipped."""
    as_bool = _AsBool()
    if mapped:
        as_bool.map(x=condition, flow=flow)
    else:
        as_bool.bind(x=condition, flow=flow)
    switch(condition=as_bool, cases={True: true_task, False: false_task}, mapped=mapped, flow=flow)


def merge(*tasks: Task, flow: Flow | None = None, mapped: bool = False) -> Task:
    """A task returning the result of the first of ``tasks`` that was not skipped (joins branches)."""
    if not tasks:
        raise ValueError("merge() needs at least one task.")
    inputs: dict[str, Any] = {f"task{i}": t for i, t in enumerate(tasks, start=1)}
    merged = Merge()
    if mapped:
        return merged.map(flow=flow, **inputs)
    return merged.bind(flow=flow, **inputs)


__all__ = ["CompareValue", "Merge", "switch", "ifelse", "merge"]
