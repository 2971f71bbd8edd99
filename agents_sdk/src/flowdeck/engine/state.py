"""Task-run and flow-run states (Prefect 1's ``prefect.engine.state``).

A state is a small object with a ``message``, a ``result`` (the task's return value, the exception of
a failure …) and, for the server, ``server_type`` — the coarse state the Flowdeck server stores —
and ``name`` (the class name by default). The class hierarchy answers the questions the runners ask
(``is_finished()``, ``is_successful()`` …): ``Skipped`` *is* a ``Success``, ``TimedOut`` *is* a
``Failed``, ``Retrying`` *is* a ``Scheduled`` …

As in Prefect 1, a state takes any extra attribute (state handlers set their own), ``repr`` shows
the message in double quotes (``<Success: "done">``), ``load_result()`` reads a checkpointed
result back and ``Mapped.children`` are the mapped children's states.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from flowdeck.engine.results import Result


class State:
    """Base class of every state."""

    # ``__dict__``: the common fields stay slots (fast), and handlers may still add their own.
    __slots__ = ("message", "result", "context", "cached_inputs", "result_ref", "__dict__")

    server_type: ClassVar[str] = "PENDING"
    color: ClassVar[str] = "#eeeeee"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
        *,
        result_ref: str | None = None,
    ) -> None:
        self.message = message
        self.result = result
        self.context = context
        self.cached_inputs = cached_inputs
        #: Where a checkpointed result was written (a ``Result`` location); sent to the server.
        self.result_ref = result_ref

    @property
    def name(self) -> str:
        """The state's name for people and the server: the class name."""
        return type(self).__name__

    def __repr__(self) -> str:
        if self.message:
            return f'<{self.name}: "{self.message}">'
        return f"<{self.name}>"

    def __eq__(self, other: object) -> bool:
        # Same kind, message and result: what tests and users compare.
        if type(self) is not type(other):
            return NotImplemented
        assert isinstance(other, State)
        return self.message == other.message and _safe_equal(self.result, other.result)

    __hash__ = object.__hash__

    def to_server(self) -> dict[str, Any]:
        """The state as the agent protocol sends it (``{"type", "name", "message", "result_ref"}``)."""
        data: dict[str, Any] = {"type": self.server_type, "name": self.name}
        if self.message:
            data["message"] = self.message
        if self.result_ref:
            data["result_ref"] = self.result_ref
        return data

    def load_result(self, result: Result | None = None) -> State:
        """Read this state's result from where it was checkpointed (``result_ref``) and return the
        state. ``result`` is the ``Result`` that wrote it (default: the run's ``CheckpointResult``
        for one of its references); a state whose result is already here, or that has no
        location, is returned as it is."""
        if self.result is not None or not self.result_ref:
            return self
        reader = result
        if reader is None:
            from flowdeck.engine.results.checkpoint import CheckpointResult, is_checkpoint_ref

            if not is_checkpoint_ref(self.result_ref):
                raise ValueError(
                    f"Cannot tell which Result wrote {self.result_ref!r}: pass it, as in state.load_result(result)."
                )
            reader = CheckpointResult()
        self.result = reader.read(self.result_ref).value
        return self

    # --- questions the runners ask ---------------------------------------------------------------
    def is_pending(self) -> bool:
        return isinstance(self, Pending)

    def is_scheduled(self) -> bool:
        return isinstance(self, Scheduled)

    def is_queued(self) -> bool:
        return isinstance(self, Queued)

    def is_submitted(self) -> bool:
        return isinstance(self, Submitted)

    def is_paused(self) -> bool:
        return isinstance(self, Paused)

    def is_retrying(self) -> bool:
        return isinstance(self, Retrying)

    def is_running(self) -> bool:
        return isinstance(self, Running)

    def is_cancelling(self) -> bool:
        return isinstance(self, Cancelling)

    def is_finished(self) -> bool:
        return isinstance(self, Finished)

    def is_successful(self) -> bool:
        return isinstance(self, Success)

    def is_failed(self) -> bool:
        return isinstance(self, Failed)

    def is_skipped(self) -> bool:
        return isinstance(self, Skipped)

    def is_mapped(self) -> bool:
        return isinstance(self, Mapped)

    def is_cached(self) -> bool:
        return isinstance(self, Cached)

    def is_looped(self) -> bool:
        return isinstance(self, Looped)

    def is_meta_state(self) -> bool:
        return isinstance(self, MetaState)


def _safe_equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return type(a) is type(b) and getattr(a, "args", None) == getattr(b, "args", None)
    try:
        return bool(a == b)
    except Exception:
        return False


# --- not yet running ----------------------------------------------------------------------------


class Pending(State):
    """Waiting to run (upstream tasks not finished, or not started yet)."""

    __slots__ = ()
    server_type = "PENDING"
    color = "#d3d3d3"


class Scheduled(Pending):
    """Due at ``start_time`` (``None``: now)."""

    __slots__ = ("start_time",)
    server_type = "SCHEDULED"
    color = "#ffab00"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        start_time: datetime | None = None,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
        *,
        result_ref: str | None = None,
    ) -> None:
        super().__init__(message, result, context, cached_inputs, result_ref=result_ref)
        self.start_time = start_time if start_time is not None else datetime.now(UTC)


class Paused(Scheduled):
    """Waiting for a person (the ``manual_only`` trigger, a ``PAUSE`` signal)."""

    __slots__ = ()
    server_type = "PAUSED"
    color = "#cfd8dc"


class Resume(Scheduled):
    """Give this as a task's initial state to run a ``Paused`` task (its ``manual_only`` trigger passes)."""

    __slots__ = ()
    server_type = "SCHEDULED"


class Retrying(Scheduled):
    """Failed, and will run again at ``start_time`` (attempt ``run_count`` + 1); a looping task goes
    on at iteration ``loop_count`` with ``loop_result``."""

    __slots__ = ("run_count", "loop_count", "loop_result")
    server_type = "SCHEDULED"
    color = "#ffa726"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        start_time: datetime | None = None,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
        run_count: int | None = None,
        *,
        result_ref: str | None = None,
        loop_count: int = 1,
        loop_result: Any = None,
    ) -> None:
        super().__init__(message, result, start_time, context, cached_inputs, result_ref=result_ref)
        self.run_count = run_count if run_count is not None else 1
        self.loop_count = loop_count
        self.loop_result = loop_result


class MetaState(State):
    """Wraps another state (Prefect 1's ``Submitted``/``Queued``)."""

    __slots__ = ("state",)

    def __init__(self, message: str | None = None, result: Any = None, state: State | None = None) -> None:
        super().__init__(message, result)
        self.state = state


class Submitted(MetaState):
    """Handed to an executor; not started yet."""

    __slots__ = ()
    server_type = "PENDING"


class Queued(MetaState):
    """Waiting for a concurrency slot."""

    __slots__ = ()
    server_type = "PENDING"


# --- running -------------------------------------------------------------------------------------


class Running(State):
    """The task or flow is running."""

    __slots__ = ()
    server_type = "RUNNING"
    color = "#2196f3"


class Cancelling(State):
    """Cancellation was requested; work is stopping."""

    __slots__ = ()
    server_type = "CANCELLING"
    color = "#9e9e9e"


# --- finished ------------------------------------------------------------------------------------


class Finished(State):
    """Base of every final state."""

    __slots__ = ()
    server_type = "COMPLETED"
    color = "#ba68c8"


class Looped(Finished):
    """One iteration of a looping task finished (``LOOP`` signal); the next one follows."""

    __slots__ = ("loop_count",)
    server_type = "RUNNING"
    color = "#ffeb3b"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        loop_count: int | None = None,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
        *,
        result_ref: str | None = None,
    ) -> None:
        super().__init__(message, result, context, cached_inputs, result_ref=result_ref)
        self.loop_count = loop_count if loop_count is not None else 1


class Success(Finished):
    """Ran successfully; ``result`` is the return value."""

    __slots__ = ()
    server_type = "COMPLETED"
    color = "#28a745"


class Cached(Success):
    """Not run: a valid cached result was reused."""

    __slots__ = ("cached_parameters", "cached_result_expiration")
    server_type = "COMPLETED"
    color = "#ffa000"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
        cached_parameters: dict[str, Any] | None = None,
        cached_result_expiration: datetime | None = None,
        *,
        result_ref: str | None = None,
    ) -> None:
        super().__init__(message, result, context, cached_inputs, result_ref=result_ref)
        self.cached_parameters = cached_parameters
        self.cached_result_expiration = cached_result_expiration


class Mapped(Success):
    """A mapped task's parent: ``map_states`` are its children's states, ``result`` their results."""

    __slots__ = ("map_states",)
    server_type = "COMPLETED"
    color = "#97fefa"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        map_states: list[State] | None = None,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
        *,
        result_ref: str | None = None,
    ) -> None:
        super().__init__(message, result, context, cached_inputs, result_ref=result_ref)
        self.map_states: list[State] = map_states if map_states is not None else []

    @property
    def children(self) -> list[State]:
        """The mapped children's states (Prefect 1's name for ``map_states``)."""
        return self.map_states

    @property
    def n_map_states(self) -> int:
        return len(self.map_states)


class Skipped(Success):
    """Not run on purpose (a ``SKIP`` signal, a skipped upstream, a branch not taken)."""

    __slots__ = ()
    server_type = "COMPLETED"
    color = "#62757f"


class Failed(Finished):
    """Failed; ``result`` is usually the exception."""

    __slots__ = ()
    server_type = "FAILED"
    color = "#eb0000"


class TimedOut(Failed):
    """Ran longer than the task's ``timeout``."""

    __slots__ = ()
    server_type = "FAILED"
    color = "#ef5350"


class TriggerFailed(Failed):
    """Not run: the trigger said no (e.g. an upstream task failed under ``all_successful``)."""

    __slots__ = ()
    server_type = "FAILED"
    color = "#c42800"


class ValidationFailed(Failed):
    """The task's output did not validate."""

    __slots__ = ()
    server_type = "FAILED"


class Cancelled(Finished):
    """Stopped because cancellation was requested."""

    __slots__ = ()
    server_type = "CANCELLED"
    color = "#bdbdbd"


class Crashed(Failed):
    """The process running the flow died (reported by the agent, never by the runners)."""

    __slots__ = ()
    server_type = "CRASHED"


__all__ = [
    "State",
    "Pending",
    "Scheduled",
    "Paused",
    "Resume",
    "Retrying",
    "MetaState",
    "Submitted",
    "Queued",
    "Running",
    "Cancelling",
    "Finished",
    "Looped",
    "Success",
    "Cached",
    "Mapped",
    "Skipped",
    "Failed",
    "TimedOut",
    "TriggerFailed",
    "ValidationFailed",
    "Cancelled",
    "Crashed",
]
