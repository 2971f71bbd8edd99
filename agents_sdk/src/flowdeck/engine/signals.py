"""Signals: exceptions a task raises to choose its own state (Prefect 1's ``prefect.engine.signals``).

``raise FAIL("bad input")`` ends the task ``Failed``; ``SKIP`` → ``Skipped``; ``SUCCESS`` → ``Success``;
``RETRY`` → ``Retrying``; ``LOOP(result=...)`` → ``Looped`` and runs the task again with
``flowdeck.context.task_loop_result``; ``PAUSE`` → ``Paused``. Each accepts ``message`` and ``result=``.
``ENDRUN(state)`` stops a runner with exactly ``state``.

As in Prefect 1, signals derive from ``BaseException``: a task's own ``except Exception:`` does not
swallow them (the runners catch them). A state ended by a signal carries the signal as its result
unless ``result=`` is given (``SUCCESS`` and ``LOOP`` keep ``result=``, ``None`` by default).
"""

from __future__ import annotations

from typing import Any

from flowdeck.engine import state as states


class FlowdeckSignal(BaseException):
    """Base class of the engine's signals (a ``BaseException``, so ``except Exception`` lets them through)."""


class FlowdeckStateSignal(FlowdeckSignal):
    """A signal that carries the state it asks for in ``.state``."""

    _state_cls: type[states.State] = states.State

    def __init__(self, message: str | None = None, *args: Any, result: Any = None, **kwargs: Any) -> None:
        super().__init__(message, *args)
        self.state: states.State = self._state_cls(message=message, result=result if result is not None else self)
        for key, value in kwargs.items():
            setattr(self.state, key, value)

    def __str__(self) -> str:
        message = self.args[0] if self.args else None
        return str(message) if message is not None else type(self).__name__


class FAIL(FlowdeckStateSignal):
    """Fail the task."""

    _state_cls = states.Failed


class TRIGGERFAIL(FAIL):
    """Raised by a trigger that is not met: the task ends ``TriggerFailed``."""

    _state_cls = states.TriggerFailed


class VALIDATIONFAIL(FAIL):
    """The task's output did not validate."""

    _state_cls = states.ValidationFailed


class SUCCESS(FlowdeckStateSignal):
    """End the task successfully now (with ``result=``)."""

    _state_cls = states.Success

    def __init__(self, message: str | None = None, *args: Any, result: Any = None, **kwargs: Any) -> None:
        super().__init__(message, *args, result=result, **kwargs)
        self.state.result = result


class SKIP(FlowdeckStateSignal):
    """Skip the task (and, by default, every task downstream of it); the ``Skipped`` state's result
    is the signal unless ``result=`` is given."""

    _state_cls = states.Skipped


class RETRY(FlowdeckStateSignal):
    """Ask for a retry now, whatever the task's retry settings."""

    _state_cls = states.Retrying


class LOOP(FlowdeckStateSignal):
    """Run the task again: ``result`` becomes ``flowdeck.context.task_loop_result`` in the next iteration."""

    _state_cls = states.Looped

    def __init__(self, message: str | None = None, *args: Any, result: Any = None, **kwargs: Any) -> None:
        super().__init__(message, *args, result=result, **kwargs)
        self.state.result = result


class PAUSE(FlowdeckStateSignal):
    """Pause the task until a person resumes it."""

    _state_cls = states.Paused


class ENDRUN(FlowdeckSignal):
    """Stop the runner with exactly ``state`` (used inside the engine and by advanced tasks)."""

    def __init__(self, state: states.State) -> None:
        super().__init__(state.message)
        self.state = state


# Prefect 1 spelling of the base classes.
PrefectSignal = FlowdeckSignal
PrefectStateSignal = FlowdeckStateSignal

__all__ = [
    "FlowdeckSignal",
    "FlowdeckStateSignal",
    "PrefectSignal",
    "PrefectStateSignal",
    "FAIL",
    "TRIGGERFAIL",
    "VALIDATIONFAIL",
    "SUCCESS",
    "SKIP",
    "RETRY",
    "LOOP",
    "PAUSE",
    "ENDRUN",
]
