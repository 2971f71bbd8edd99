"""``TaskRunner``: runs one task (or one mapped child) from its upstream states to a final state
(Prefect 1's ``prefect.engine.task_runner.TaskRunner``).

In order: an already finished task is left alone; unfinished upstream tasks keep it Pending; a
skipped upstream skips it (``skip_on_upstream_skip``); the trigger decides (``TriggerFailed``,
``Paused``); a result already at the task's ``target``, or a valid cached result (``cache_for`` …),
is reused (``Cached``); then ``run()`` is called — with the timeout, loops (``LOOP`` → ``Looped``) and
signals. A freshly computed result of a task with ``cache_for`` ends ``Cached``, as in Prefect 1. Every
state change goes through the state handlers and is recorded in ``history`` (and streamed to
``on_state`` when given).

Retries, as in Prefect 1: a failed attempt with retries left ends this run ``Retrying`` (its
``start_time`` is when ``retry_delay`` has passed); the FlowRunner runs it again in a later pass,
after every other task that could run, once that time has come. Given a ``Retrying`` state whose
start time has not come, the runner leaves it as it is. A retried looping task goes on with the
loop count and loop result it had.

Each run logs two INFO lines on ``flowdeck.TaskRunner`` (Prefect 1's): "Task 'x': Starting task
run..." and "Task 'x': Finished task run for task with final state: 'Success'"; when the level hides
them they cost one ``isEnabledFor`` check.

Tag concurrency limits: under an agent, a task with tags does not call ``run()`` until the server
has accepted its RUNNING (it then holds a slot of each limited tag). The task runner proposes it
through the flow run's :class:`SlotGate` (the run's reporter, found by ``flow_run_id``) and, on WAIT,
waits — saying so once in the run's logs — and proposes again, at the pace the server asks for,
until it is accepted; a refusal means the task does not run. Tasks without tags, and runs without a
gate (a plain ``flow.run()``), start at once.

``run_task`` and ``assemble_mapped`` are the functions the ``FlowRunner`` submits to executors; they
are module-level so process and distributed executors can pickle them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from flowdeck.context import context as flowdeck_context
from flowdeck.engine import signals
from flowdeck.engine.runner import Runner, RunnerStateHandler
from flowdeck.engine.state import (
    Cached,
    Cancelled,
    Failed,
    Looped,
    Mapped,
    Pending,
    Resume,
    Retrying,
    Running,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)
from flowdeck.utilities.logging import get_logger

if TYPE_CHECKING:
    from flowdeck.core.edge import Edge
    from flowdeck.core.task import Task
    from flowdeck.engine.results import Result

OnState = Callable[[State], None]

# The run's two INFO lines go to the runner class's logger (``flowdeck.TaskRunner``), made once per class.
_RUNNER_LOGGERS: dict[type, logging.Logger] = {}


def _runner_logger(runner_cls: type) -> logging.Logger:
    found = _RUNNER_LOGGERS.get(runner_cls)
    if found is None:
        found = _RUNNER_LOGGERS[runner_cls] = get_logger(runner_cls.__name__)
    return found


def handle_state_change_guarded(runner: Runner, old_state: State, new_state: State) -> State:
    """``runner.handle_state_change`` for runners: a handler raising ``ENDRUN`` ends in its state, any
    other signal (a ``BaseException``, which the base class does not catch) fails the state."""
    try:
        return Runner.handle_state_change(runner, old_state, new_state)
    except signals.ENDRUN as end:
        return end.state
    except signals.FlowdeckSignal as sig:
        runner.logger.error("A state handler raised %s", type(sig).__name__, exc_info=sig)
        return Failed(f"Exception raised while calling state handlers: {sig!r}", result=sig)


def upstream_finished(state: State) -> bool:
    """Whether an upstream state lets a task go on: finished and, for a mapped upstream, every child
    finished (a child may still be ``Retrying``)."""
    if not state.is_finished():
        return False
    if isinstance(state, Mapped):
        return all(upstream_finished(child) for child in state.map_states)
    return True


# --- the in-memory cache ---------------------------------------------------------------------------
# Per process, keyed by the task's cache key (see TaskRunner._cache_key); newest entry first.
_CACHE: dict[str, list[Cached]] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_ENTRIES_PER_KEY = 10


def clear_cache() -> None:
    """Forget every cached task result of this process."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --- tag concurrency slots ---------------------------------------------------------------------------


class SlotGate(Protocol):
    """How a task runner asks the server for its tags' slots (the flow run's reporter)."""

    def propose_task_running(self, task_key: str, map_index: int, state: State) -> Mapping[str, Any]:
        """Propose RUNNING for the task run and return the server's answer (``status``, ``reason``,
        ``details``); blocks until there is one."""

    def cancel_requested(self) -> bool:
        """True once the flow run must stop."""


# flow_run_id -> (gate, the pid that registered it: a forked child must not use its parent's).
_SLOT_GATES: dict[str, tuple[SlotGate, int]] = {}
_SLOT_GATES_LOCK = threading.Lock()
# How long a task told to WAIT waits before proposing again when the server does not say, and the
# longest wait its back-off reaches (a freed slot should not stay idle long).
SLOT_RETRY_DEFAULT = 1.0
SLOT_RETRY_MAX = 5.0


def register_slot_gate(flow_run_id: str, gate: SlotGate, *, remove: bool = False) -> None:
    """Make ``gate`` the one task runs of ``flow_run_id`` in this process ask for their slots
    (``remove``: stop, if it still is)."""
    key, pid = str(flow_run_id), os.getpid()
    with _SLOT_GATES_LOCK:
        if not remove:
            _SLOT_GATES[key] = (gate, pid)
        elif _SLOT_GATES.get(key, (None, 0))[0] is gate:
            _SLOT_GATES[key] = (_CLOSED_GATE, pid)  # the run's reporter is done: nothing starts any more


def slot_gate(flow_run_id: Any) -> SlotGate | None:
    """The slot gate of ``flow_run_id`` in this process: the run's reporter; in a process the
    flow-run process started to run tasks (a process pool's worker), a gate that asks the server
    itself; none outside an agent's run (nothing to ask)."""
    if flow_run_id is None:
        return None
    key, pid = str(flow_run_id), os.getpid()
    found = _SLOT_GATES.get(key)
    if found is not None and found[1] == pid:
        return found[0]
    if os.environ.get("FLOWDECK_FLOW_RUN_ID") != key:
        return None
    from flowdeck.reporting.reporter import DirectSlotGate

    gate = DirectSlotGate.from_env(key)
    if gate is not None:
        with _SLOT_GATES_LOCK:
            _SLOT_GATES[key] = (gate, pid)
    return gate


class _ClosedGate:
    """The gate of a run whose reporter closed or was told the attempt is over."""

    def propose_task_running(self, task_key: str, map_index: int, state: State) -> Mapping[str, Any]:
        return {"status": "ABORT", "reason": "This run attempt's reporter is closed.", "details": {}}

    def cancel_requested(self) -> bool:
        return True


_CLOSED_GATE = _ClosedGate()


def slot_retry_delay(answer: Mapping[str, Any], waits: int) -> float:
    """Seconds before proposing RUNNING again after the ``waits``-th WAIT: the server's
    ``retry_after_seconds`` first, then growing slowly (capped), with jitter so waiting tasks of many
    runs do not all come back in the same instant."""
    details = answer.get("details") or {}
    given = answer.get("retry_after_seconds", details.get("retry_after_seconds") if isinstance(details, Mapping)
                       else None)
    base = float(given) if isinstance(given, (int, float)) and not isinstance(given, bool) and given > 0 \
        else SLOT_RETRY_DEFAULT
    delay = min(base * 1.25 ** max(waits - 1, 0), max(base, SLOT_RETRY_MAX))
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not security)


class _TaskTimeout(Exception):
    """run() did not finish within the task's timeout."""


class _LogWriter(io.TextIOBase):
    """A text stream that sends each printed line to a logger (``log_stdout=True``)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line:
                self._logger.info(line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self._logger.info(self._buffer)
            self._buffer = ""


class TaskRunner(Runner):
    """Runs one task.

    Args:
        task: the task.
        state_handlers: runner-level handlers ``fn(runner, old, new)``, after the task's own.
        flow_result: the flow's default ``Result`` (checkpointing when the task has none).
        on_state: called with every new state as it happens (the FlowRunner streams them to its observer).
    """

    def __init__(
        self,
        task: Task,
        state_handlers: Iterable[RunnerStateHandler] | None = None,
        flow_result: Result | None = None,
        on_state: OnState | None = None,
    ) -> None:
        super().__init__(state_handlers)
        self.task = task
        self.flow_result = flow_result
        self.on_state = on_state
        self.history: list[State] = []
        self._has_handlers = bool(self.state_handlers or task.state_handlers or task.on_failure)

    def __repr__(self) -> str:
        return f"<TaskRunner: {self.task.name}>"

    # --- state changes ---------------------------------------------------------------------------
    def runner_target(self) -> Task:
        return self.task

    def handle_state_change(self, old_state: State, new_state: State) -> State:
        return handle_state_change_guarded(self, old_state, new_state)

    def _set(self, old_state: State, new_state: State) -> State:
        if self._has_handlers:
            new_state = self.handle_state_change(old_state, new_state)
        self.history.append(new_state)
        if self.on_state is not None:
            self.on_state(new_state)
        return new_state

    # --- the run ---------------------------------------------------------------------------------
    def run(
        self,
        state: State | None = None,
        upstream_states: Mapping[Edge, State] | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        task_key: str | None = None,
        map_index: int = -1,
        constants: Mapping[str, Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> State:
        """Run the task and return its final state (``Pending`` when upstream tasks are not finished).

        ``constants`` are the task's non-task inputs; ``context`` the flow-run context (default: the
        current ``flowdeck.context``); ``should_stop`` is asked once before starting (cancellation).
        ``map_index`` in the context is ``None`` outside a map, as in Prefect 1; ``task_run_id`` is
        set under a backend (``running_with_backend``): the id the reporter knows the task run by,
        ``"<flow_run_id>/<task_key>[<map_index>]"`` (the server's own ids never reach the process).
        """
        task = self.task
        key = task_key or task.slug or task.name
        data = dict(context) if context is not None else flowdeck_context.to_dict()
        full_name = task.name if map_index < 0 else f"{task.name}[{map_index}]"
        data["task_key"] = key
        data["task_slug"] = key
        data["task_name"] = task.name
        data["task_full_name"] = full_name
        data["map_index"] = map_index if map_index >= 0 else None
        data["task_tags"] = task.tags
        data["logger"] = task.logger
        if data.get("running_with_backend"):
            data["task_run_id"] = f"{data.get('flow_run_id')}/{key}[{map_index}]"
        start = state if state is not None else Pending()
        if isinstance(start, Resume):
            data["resume"] = True
        logger = self._logger if self._logger is not None else _runner_logger(type(self))
        log = logger.isEnabledFor(logging.INFO)
        if log:
            logger.info("Task '%s': Starting task run...", full_name)
        previous = flowdeck_context.replace(data)
        try:
            final = self._run(start, upstream_states or {}, constants or {}, data, should_stop)
        finally:
            flowdeck_context.replace(previous)
        if log:
            logger.info("Task '%s': Finished task run for task with final state: '%s'", full_name, final.name)
        return final

    def _run(
        self,
        state: State,
        upstream_states: Mapping[Edge, State],
        constants: Mapping[str, Any],
        data: dict[str, Any],
        should_stop: Callable[[], bool] | None,
    ) -> State:
        task = self.task
        try:
            if state.is_finished():
                return state
            for upstream in upstream_states.values():
                if not upstream_finished(upstream):
                    return state  # stays Pending until its upstream tasks finish
            if isinstance(state, Retrying) and state.start_time > datetime.now(UTC):
                return state  # its retry is not due yet: a later pass of the FlowRunner runs it
            if should_stop is not None and should_stop():
                # Never started: not a state change anyone needs to hear about.
                return Cancelled("The flow run was cancelled before this task started.")
            if task.skip_on_upstream_skip and any(s.is_skipped() for s in upstream_states.values()):
                return self._set(
                    state,
                    Skipped(
                        "Upstream task was skipped; if this was not the intended behavior, consider "
                        "changing `skip_on_upstream_skip=False` for this task."
                    ),
                )
            try:
                if not task.trigger(upstream_states):
                    name = getattr(task.trigger, "__name__", "trigger")
                    raise signals.TRIGGERFAIL(f'Trigger "{name}" returned False.')
            except signals.FlowdeckStateSignal as sig:
                return self._set(state, sig.state)

            inputs: dict[str, Any] = dict(constants)
            for edge, upstream in upstream_states.items():
                if edge.key is not None:
                    inputs[edge.key] = upstream.result

            handler = task.result if task.result is not None else self.flow_result
            if handler is None or task.checkpoint is False or task._is_parameter:
                handler = None
            target: str | None = None
            if handler is not None and task.target is not None:
                target = self._target(data, inputs)
                if handler.exists(target):
                    found = handler.read(target)
                    return self._set(
                        state,
                        Cached(f"Result found at task target {target}.", result=found.value, result_ref=found.location),
                    )

            cache_key: str | None = None
            if task.cache_for is not None or task.cache_key_fn is not None or task.cache_key is not None:
                cache_key = self._cache_key(data, inputs)
                if cache_key is not None:
                    hit = self._cache_lookup(cache_key, inputs, data.get("parameters"))
                    if hit is not None:
                        return self._set(state, hit)
            return self._run_with_retries(state, inputs, data, handler, target, cache_key)
        except signals.ENDRUN as end:
            return self._set(state, end.state)
        except signals.FlowdeckStateSignal as sig:  # e.g. from a cache key function or a target
            return self._set(state, sig.state)
        except (Exception, signals.FlowdeckSignal) as exc:
            if isinstance(exc, Exception) and data.get("raise_on_exception"):
                raise
            self.logger.error("Task %r: unexpected error in the task runner", task.name, exc_info=exc)
            return self._set(state, Failed(f"Unexpected error while running task {task.name!r}: {exc!r}", result=exc))

    def _run_with_retries(
        self,
        state: State,
        inputs: dict[str, Any],
        data: dict[str, Any],
        handler: Result | None,
        target: str | None,
        cache_key: str | None,
    ) -> State:
        task = self.task
        run_count = 1
        loop_count = 1
        if isinstance(state, Retrying):
            run_count = state.run_count + 1
            # A looping task that failed goes on with the iteration it was in.
            loop_count = state.loop_count
            if loop_count > 1:
                data["task_loop_count"] = loop_count
                data["task_loop_result"] = state.loop_result
        elif isinstance(state, Looped):
            loop_count = state.loop_count + 1
            data["task_loop_count"] = loop_count
            data["task_loop_result"] = state.result
        while True:
            data["task_run_count"] = run_count
            running = Running("Starting task run.")
            if task.tags:
                refused = self._secure_slots(running, data)
                if refused is not None:
                    return self._set(state, refused)
            state = self._set(state, running)
            if not state.is_running():
                return state  # a state handler decided otherwise
            forced_retry = False
            new: State
            try:
                value = self._call(inputs, data)
                new = Success("Task run succeeded.", result=value)
                if handler is not None:
                    new.result_ref = self._checkpoint(handler, value, data, inputs, target)
                if cache_key is not None:
                    entry = self._cache_store(cache_key, new, inputs, data.get("parameters"))
                    if task.cache_for is not None:  # Prefect 1: a result cached for later ends Cached
                        new = Cached(
                            new.message, result=value, cached_inputs=entry.cached_inputs,
                            cached_parameters=entry.cached_parameters,
                            cached_result_expiration=entry.cached_result_expiration, result_ref=new.result_ref,
                        )
            except signals.LOOP as sig:
                looped = Looped(
                    sig.state.message or f"Loop {loop_count} finished.", result=sig.state.result, loop_count=loop_count
                )
                state = self._set(state, looped)
                if not state.is_looped():
                    return state
                loop_count += 1
                data["task_loop_count"] = loop_count
                data["task_loop_result"] = looped.result
                continue
            except signals.RETRY as sig:
                new, forced_retry = sig.state, True
            except signals.ENDRUN as end:
                new = end.state
            except signals.FlowdeckStateSignal as sig:
                new = sig.state
            except _TaskTimeout as exc:
                new = TimedOut(f"Task timed out after {task.timeout:g} seconds.", result=exc)
            except (Exception, signals.FlowdeckSignal) as exc:
                if isinstance(exc, Exception) and data.get("raise_on_exception"):
                    raise  # ``with raise_on_exception():`` (debugging): the error leaves flow.run()
                self.logger.error(
                    "Task %r: exception during execution (attempt %d)", task.name, run_count, exc_info=exc
                )
                new = Failed(f"Error during execution of task: {exc!r}", result=exc)

            if forced_retry or (
                new.is_failed() and not isinstance(new, TriggerFailed) and run_count <= task.max_retries
            ):
                return self._set(state, self._retrying(new, run_count, loop_count, data))
            return self._set(state, new)

    def _retrying(self, failed: State, run_count: int, loop_count: int, data: dict[str, Any]) -> Retrying:
        """The state of an attempt that ended ``failed`` and runs again once ``retry_delay`` has passed."""
        task = self.task
        delay = task.retry_delay.total_seconds() if task.retry_delay is not None else 0.0
        reason = failed.message or failed.name
        retrying = Retrying(
            f"Retrying in {delay:g}s: attempt {run_count} of {task.max_retries + 1} ended {failed.name} ({reason}).",
            start_time=datetime.now(UTC) + timedelta(seconds=delay),
            run_count=run_count,
            loop_count=loop_count,
            loop_result=data.get("task_loop_result"),
        )
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("Task '%s': %s", data.get("task_full_name", task.name), retrying.message)
        return retrying

    # --- tag slots -------------------------------------------------------------------------------
    def _secure_slots(self, running: Running, data: dict[str, Any]) -> State | None:
        """Have the server accept ``running`` (its tags' slots taken) before the task runs: ``None``
        once accepted (or when there is no server to ask), else the state the task ends in."""
        gate = slot_gate(data.get("flow_run_id"))
        if gate is None:
            return None
        key = str(data.get("task_key") or self.task.name)
        map_index = data.get("map_index", -1)
        map_index = map_index if isinstance(map_index, int) else -1
        waits = 0
        while True:
            answer = gate.propose_task_running(key, map_index, running)
            status = answer.get("status")
            if status == "ACCEPT":
                if waits:
                    self.task.logger.info("Task %r: got its concurrency slot after waiting; starting", self.task.name)
                return None
            if status != "WAIT":
                reason = answer.get("reason") or f"the server answered {status}"
                self.task.logger.warning("Task %r: Flowdeck did not let it start: %s", self.task.name, reason)
                return Cancelled(f"Flowdeck did not let this task start: {reason}")
            waits += 1
            if waits == 1:  # once, not on every poll
                details = answer.get("details") or {}
                tag = details.get("tag") if isinstance(details, Mapping) else None
                self.task.logger.info("Task %r: waiting for a concurrency slot on tag %s (%s)", self.task.name,
                                      tag or ", ".join(sorted(self.task.tags)), answer.get("reason") or "limit reached")
            deadline = time.monotonic() + slot_retry_delay(answer, waits)
            while time.monotonic() < deadline:
                if gate.cancel_requested():
                    return Cancelled("The flow run was cancelled while this task waited for a concurrency slot.")
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    # --- calling run() ---------------------------------------------------------------------------
    def _call(self, inputs: dict[str, Any], data: dict[str, Any]) -> Any:
        task = self.task
        if task.timeout is None and not task.log_stdout:
            return task.run(**inputs)
        if task.timeout is None:
            return self._call_logging_stdout(inputs)
        return self._call_with_timeout(inputs, data, task.timeout)

    def _call_logging_stdout(self, inputs: dict[str, Any]) -> Any:
        writer = _LogWriter(self.task.logger)
        try:
            with contextlib.redirect_stdout(writer):
                return self.task.run(**inputs)
        finally:
            writer.flush()

    def _call_with_timeout(self, inputs: dict[str, Any], data: dict[str, Any], timeout: float) -> Any:
        # A worker thread we can stop waiting for (Python cannot kill it: it is a daemon and its
        # result is ignored if it ever finishes).
        box: dict[str, Any] = {}
        thread_context = dict(data)

        def target() -> None:
            flowdeck_context.replace(thread_context)
            try:
                if self.task.log_stdout:
                    box["value"] = self._call_logging_stdout(inputs)
                else:
                    box["value"] = self.task.run(**inputs)
            except BaseException as exc:  # handed back to the runner's thread
                box["error"] = exc

        worker = threading.Thread(target=target, name=f"flowdeck-task-{self.task.name}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise _TaskTimeout(f"Task {self.task.name!r} did not finish within {timeout:g} seconds.")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    # --- results, targets, cache -------------------------------------------------------------------
    def _format_kwargs(self, data: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(data)
        kwargs.update(inputs)
        return kwargs

    def _target(self, data: dict[str, Any], inputs: dict[str, Any]) -> str:
        target = self.task.target
        kwargs = self._format_kwargs(data, inputs)
        if callable(target):
            return str(target(**kwargs))
        assert isinstance(target, str)
        return target.format(**kwargs)

    def _checkpoint(
        self, handler: Result, value: Any, data: dict[str, Any], inputs: dict[str, Any], target: str | None
    ) -> str | None:
        if target is not None:
            handler = handler.copy()
            handler.location = target
        written = handler.write(value, **self._format_kwargs(data, inputs))
        return written.location

    def _cache_key(self, data: dict[str, Any], inputs: dict[str, Any]) -> str | None:
        task = self.task
        key = task.cache_key or f"{data.get('flow_name', '')}/{data.get('task_key', task.name)}"
        map_index = data.get("map_index", -1)
        if isinstance(map_index, int) and map_index >= 0:
            key += f"[{map_index}]"
        if task.cache_key_fn is not None:
            computed = task.cache_key_fn(flowdeck_context, inputs)
            if computed is None:
                return None
            key += f":{computed}"
        return key

    def _cache_lookup(self, key: str, inputs: dict[str, Any], parameters: Any) -> Cached | None:
        validator = self.task.cache_validator
        if validator is None:
            from flowdeck.engine.cache_validators import duration_only

            validator = duration_only
        with _CACHE_LOCK:
            candidates = list(_CACHE.get(key, ()))
        for candidate in candidates:
            if validator(candidate, inputs, parameters):
                return Cached(
                    "Task retrieved from cache.",
                    result=candidate.result,
                    cached_inputs=candidate.cached_inputs,
                    cached_parameters=candidate.cached_parameters,
                    cached_result_expiration=candidate.cached_result_expiration,
                    result_ref=candidate.result_ref,
                )
        return None

    def _cache_store(self, key: str, state: State, inputs: dict[str, Any], parameters: Any) -> Cached:
        cache_for = self.task.cache_for
        expiration = datetime.now(UTC) + cache_for if cache_for is not None else None
        entry = Cached(
            "Task retrieved from cache.",
            result=state.result,
            cached_inputs=dict(inputs),
            cached_parameters=dict(parameters) if isinstance(parameters, Mapping) else None,
            cached_result_expiration=expiration,
            result_ref=state.result_ref,
        )
        with _CACHE_LOCK:
            _CACHE[key] = [entry, *_CACHE.get(key, ())][:_CACHE_ENTRIES_PER_KEY]
        return entry


# --- what the FlowRunner submits to executors ------------------------------------------------------


class TaskRunOutcome:
    """What a submitted task run hands back to the driver: its final state and every state it went
    through (which the driver forwards to the run observer when it could not stream them)."""

    __slots__ = ("state", "history")

    def __init__(self, state: State, history: list[State]) -> None:
        self.state = state
        self.history = history

    def __repr__(self) -> str:
        return f"<TaskRunOutcome: {self.state!r}>"


class TaskRunSpec:
    """Everything ``run_task`` needs besides the upstream outcomes (which come as executor arguments,
    so executors can resolve their futures)."""

    __slots__ = (
        "task",
        "key",
        "map_index",
        "edges",
        "constants",
        "initial",
        "context",
        "runner_cls",
        "handlers",
        "flow_result",
        "on_state",
        "should_stop",
    )

    def __init__(
        self,
        task: Task,
        key: str,
        map_index: int,
        edges: tuple[Edge, ...],
        constants: Mapping[str, Any],
        initial: State | None,
        context: Mapping[str, Any],
        runner_cls: type[TaskRunner],
        handlers: list[RunnerStateHandler],
        flow_result: Result | None,
        on_state: OnState | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.task = task
        self.key = key
        self.map_index = map_index
        self.edges = edges
        self.constants = constants
        self.initial = initial
        self.context = context
        self.runner_cls = runner_cls
        self.handlers = handlers
        self.flow_result = flow_result
        self.on_state = on_state
        self.should_stop = should_stop


def run_task(spec: TaskRunSpec, *upstream: Any) -> TaskRunOutcome:
    """Run one task (or mapped child) given its upstream outcomes or states, in edge order."""
    states: dict[Edge, State] = {}
    for edge, item in zip(spec.edges, upstream, strict=True):
        states[edge] = item.state if isinstance(item, TaskRunOutcome) else item
    runner = spec.runner_cls(
        spec.task, state_handlers=spec.handlers, flow_result=spec.flow_result, on_state=spec.on_state
    )
    final = runner.run(
        state=spec.initial,
        upstream_states=states,
        context=spec.context,
        task_key=spec.key,
        map_index=spec.map_index,
        constants=spec.constants,
        should_stop=spec.should_stop,
    )
    return TaskRunOutcome(final, runner.history)


def assemble_mapped(spec: TaskRunSpec, *children: Any) -> TaskRunOutcome:
    """The parent of a mapped task, once its children finished: ``Mapped`` with their states and results."""
    states = [c.state if isinstance(c, TaskRunOutcome) else c for c in children]
    runner = spec.runner_cls(
        spec.task, state_handlers=spec.handlers, flow_result=spec.flow_result, on_state=spec.on_state
    )
    if isinstance(spec.initial, Mapped):
        # A later pass (some children were retrying): the parent is Mapped already and says nothing new.
        again = Mapped(spec.initial.message, result=[s.result for s in states], map_states=states)
        return TaskRunOutcome(again, [])
    previous = flowdeck_context.replace({**spec.context, "task_key": spec.key, "map_index": None})
    try:
        start = spec.initial if spec.initial is not None else Running("Mapping.")
        mapped = Mapped(f"Mapped {len(states)} children.", result=[s.result for s in states], map_states=states)
        final = runner._set(start, mapped)
    finally:
        flowdeck_context.replace(previous)
    logger = _runner_logger(spec.runner_cls)
    if logger.isEnabledFor(logging.INFO):
        logger.info("Task '%s': Finished task run for task with final state: '%s'", spec.task.name, final.name)
    return TaskRunOutcome(final, runner.history)


__all__ = [
    "handle_state_change_guarded",
    "upstream_finished",
    "SlotGate",
    "register_slot_gate",
    "slot_gate",
    "TaskRunner",
    "TaskRunOutcome",
    "TaskRunSpec",
    "run_task",
    "assemble_mapped",
    "clear_cache",
]
