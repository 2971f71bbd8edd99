"""Triggers decide, from the states of a task's upstream tasks, whether the task runs
(Prefect 1's ``prefect.triggers``).

A trigger is ``trigger(upstream_states: dict[Edge, State]) -> bool``; it returns True to run the task,
or raises ``TRIGGERFAIL`` (the task ends ``TriggerFailed``) or ``PAUSE`` (``manual_only``). Returning
False is the same as ``TRIGGERFAIL``. A mapped upstream task counts as each of its children.
Triggers only run once every upstream task is finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flowdeck.context import context
from flowdeck.engine import signals

if TYPE_CHECKING:
    from flowdeck.engine.state import State

Trigger = Callable[[Mapping[Any, "State"]], bool]


def _states(upstream_states: Mapping[Any, State]) -> Iterator[State]:
    # A mapped parent stands for its children: "all successful" means every child succeeded.
    for state in upstream_states.values():
        if state.is_mapped():
            map_states = getattr(state, "map_states", [])
            if map_states:
                yield from map_states
                continue
        yield state


def all_finished(upstream_states: Mapping[Any, State]) -> bool:
    """Run once every upstream task has finished, whatever its state."""
    if not all(s.is_finished() for s in _states(upstream_states)):
        raise signals.TRIGGERFAIL('Trigger was "all_finished" but some of the upstream tasks were not finished.')
    return True


#: Alias of ``all_finished``: run whatever happened upstream.
always_run = all_finished


def manual_only(upstream_states: Mapping[Any, State]) -> bool:
    """Never run on its own: the task pauses until it is resumed (initial state ``Resume``)."""
    # Unlike Prefect 1, whose paused task waits (a local run waits for its far-off start time), the
    # run ends at once, non-interactively: the flow run's state is ``Paused`` and a later run given
    # ``Resume`` for the task carries on.
    if context.get("resume", False):
        return True
    raise signals.PAUSE('Trigger function is "manual_only"')


def all_successful(upstream_states: Mapping[Any, State]) -> bool:
    """Run only if every upstream task succeeded (``Skipped`` counts as success). The default."""
    if not all(s.is_successful() for s in _states(upstream_states)):
        raise signals.TRIGGERFAIL('Trigger was "all_successful" but some of the upstream tasks failed.')
    return True


def all_failed(upstream_states: Mapping[Any, State]) -> bool:
    """Run only if every upstream task failed."""
    if not all(s.is_failed() for s in _states(upstream_states)):
        raise signals.TRIGGERFAIL('Trigger was "all_failed" but some of the upstream tasks succeeded.')
    return True


def any_successful(upstream_states: Mapping[Any, State]) -> bool:
    """Run if at least one upstream task succeeded (or there are none)."""
    if upstream_states and not any(s.is_successful() for s in _states(upstream_states)):
        raise signals.TRIGGERFAIL('Trigger was "any_successful" but none of the upstream tasks succeeded.')
    return True


def any_failed(upstream_states: Mapping[Any, State]) -> bool:
    """Run if at least one upstream task failed (or there are none)."""
    if upstream_states and not any(s.is_failed() for s in _states(upstream_states)):
        raise signals.TRIGGERFAIL('Trigger was "any_failed" but none of the upstream tasks failed.')
    return True


def not_all_skipped(upstream_states: Mapping[Any, State]) -> bool:
    """Run if every upstream task succeeded and at least one was not skipped (used by ``merge``)."""
    states = list(_states(upstream_states))
    if not all(s.is_successful() for s in states):
        raise signals.TRIGGERFAIL('Trigger was "not_all_skipped" but some of the upstream tasks failed.')
    if states and all(s.is_skipped() for s in states):
        raise signals.SKIP("All upstream tasks were skipped.")
    return True


def _bounded(kind: str, at_least: int | float | None, at_most: int | float | None) -> Trigger:
    def trigger(upstream_states: Mapping[Any, State]) -> bool:
        states = list(_states(upstream_states))
        count = sum(1 for s in states if (s.is_failed() if kind == "failed" else s.is_successful()))
        total = len(states) or 1
        low = at_least * total if isinstance(at_least, float) else at_least
        high = at_most * total if isinstance(at_most, float) else at_most
        if (low is not None and count < low) or (high is not None and count > high):
            raise signals.TRIGGERFAIL(
                f'Trigger was "some_{kind}" but {count} of {len(states)} upstream tasks {kind} '
                f"(wanted at least {at_least}, at most {at_most})."
            )
        return True

    trigger.__name__ = f"some_{kind}"
    return trigger


def some_failed(at_least: int | float | None = None, at_most: int | float | None = None) -> Trigger:
    """A trigger that runs when the number (int) or fraction (float) of failed upstream tasks is in bounds."""
    return _bounded("failed", at_least, at_most)


def some_successful(at_least: int | float | None = None, at_most: int | float | None = None) -> Trigger:
    """A trigger that runs when the number (int) or fraction (float) of successful upstream tasks is in bounds."""
    return _bounded("successful", at_least, at_most)


__all__ = [
    "Trigger",
    "all_finished",
    "always_run",
    "manual_only",
    "all_successful",
    "all_failed",
    "any_successful",
    "any_failed",
    "not_all_skipped",
    "some_failed",
    "some_successful",
]
