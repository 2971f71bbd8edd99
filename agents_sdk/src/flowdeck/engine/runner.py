"""``Runner``: what the flow and task runners share — calling state handlers on every state change."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flowdeck.engine.state import Failed, State
from flowdeck.utilities.logging import get_logger

RunnerStateHandler = Callable[[Any, State, State], "State | None"]


class Runner:
    """Base class of ``FlowRunner`` and ``TaskRunner``.

    ``state_handlers`` are ``fn(runner, old_state, new_state) -> State | None``, called after the
    handlers of the flow or task itself; a handler may return a different state, or None to keep it.
    """

    def __init__(self, state_handlers: Iterable[RunnerStateHandler] | None = None) -> None:
        self.state_handlers: list[RunnerStateHandler] = list(state_handlers or ())
        self._logger: logging.Logger | None = None

    @property
    def logger(self) -> logging.Logger:
        """``flowdeck.FlowRunner`` / ``flowdeck.TaskRunner`` (created on first use: most runs never log)."""
        if self._logger is None:
            self._logger = get_logger(type(self).__name__)
        return self._logger

    @logger.setter
    def logger(self, value: logging.Logger) -> None:
        self._logger = value

    def runner_target(self) -> Any:
        """The flow or the task being run (its ``state_handlers`` and ``on_failure`` are called)."""
        return None

    def call_runner_target_handlers(self, old_state: State, new_state: State) -> State:
        """Call the state handlers of the flow or task being run, then its ``on_failure`` if failed."""
        target = self.runner_target()
        if target is None:
            return new_state
        for handler in target.state_handlers:
            replaced = handler(target, old_state, new_state)
            if replaced is not None:
                new_state = replaced
        if target.on_failure is not None and new_state.is_failed():
            target.on_failure(target, new_state)
        return new_state

    def handle_state_change(self, old_state: State, new_state: State) -> State:
        """Run every handler for ``old_state → new_state`` and return the state to keep.

        A handler that raises turns the new state into ``Failed`` (as in Prefect 1), so a broken
        handler is visible instead of silently ignored."""
        try:
            new_state = self.call_runner_target_handlers(old_state, new_state)
            for handler in self.state_handlers:
                replaced = handler(self, old_state, new_state)
                if replaced is not None:
                    new_state = replaced
        except Exception as exc:
            self.logger.exception("Exception raised while calling state handlers")
            return Failed(f"Exception raised while calling state handlers: {exc!r}", result=exc)
        return new_state


__all__ = ["Runner", "RunnerStateHandler"]
