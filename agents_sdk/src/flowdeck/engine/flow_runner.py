"""``FlowRunner``: runs a flow's tasks in dependency order on an executor (Prefect 1's
``prefect.engine.flow_runner.FlowRunner``).

The runner walks the tasks in topological order and submits one ``run_task`` per task to the
executor, passing the upstream tasks' futures as arguments (so parallel executors start each task
as soon as its inputs are ready). A mapped task first waits for the inputs it maps over, then
submits one child per element and a parent that gathers them into a ``Mapped`` state. Tasks given a
finished state in ``initial_task_states`` are not run again; so are mapped children given one under
``(task or key, map_index)``. A mapped task given a ``Mapped`` state without its children's states
(what a restart knows) maps again over its upstream result, reusing the children it was given, and
reports nothing when it was given every child.

Checkpoints: when the flow names no ``Result`` and checkpointing is on (``checkpointing`` in the
context, else ``FLOWDECK_CHECKPOINTING``; flow runs an agent starts turn it on), every task's result
is written to a ``CheckpointResult`` in the results directory, so a retry can restore it.

A ``RunObserver`` hears every flow-run and task-run state change, in order, in this process: task
runners executing in this process stream their changes as they happen; remote ones (processes,
Dask workers) return their history, which is forwarded when the driver collects it. Between
submissions the runner asks ``observer.cancel_requested()``; once it says yes nothing new is
submitted and the flow run ends ``Cancelled``.

Retries, as in Prefect 1: a task whose attempt failed with retries left ends the pass ``Retrying``
(tasks downstream of it stay ``Pending``) while every other task that can run does. Then the runner
waits for the earliest retry's ``start_time`` and walks the graph again from the states it has:
finished tasks are kept, due retries run, and the tasks waiting for them follow. So with ``a``
(failing once) and independent ``b`` and ``c``, the calls are ``a, b, c, a``. A mapped task's
retrying children run again the same way, under the ``Mapped`` parent they already have.

Logging (Prefect 1's lines, on ``flowdeck.FlowRunner``): "Beginning Flow run for 'name'", then
"Flow run SUCCESS: all reference tasks succeeded" or "Flow run FAILED: some reference tasks failed.".
The flow run's first state change is ``Scheduled`` → ``Running`` (what flow state handlers see).

Context: ``date`` and ``scheduled_start_time`` are pendulum ``DateTime``s in UTC; ``today``,
``yesterday``, ``tomorrow`` (``YYYY-MM-DD``) and their ``_nodash`` forms are strings.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowdeck.context import context as flowdeck_context
from flowdeck.engine import signals
from flowdeck.engine.runner import Runner, RunnerStateHandler
from flowdeck.engine.state import (
    Cancelled,
    Failed,
    Mapped,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    Skipped,
    State,
    Success,
    TriggerFailed,
)
from flowdeck.engine.task_runner import (
    TaskRunner,
    TaskRunOutcome,
    TaskRunSpec,
    assemble_mapped,
    handle_state_change_guarded,
    run_task,
    upstream_finished,
)

if TYPE_CHECKING:
    import pendulum

    from flowdeck.core.edge import Edge
    from flowdeck.core.flow import Flow
    from flowdeck.core.task import Task
    from flowdeck.engine.observer import RunObserver
    from flowdeck.engine.results import Result

# Context keys that describe how a flow is being *built*; they must not leak into task runs.
_BUILD_KEYS = ("flow", "case", "tags")
# The final states' messages, and the lines Prefect 1 logs for them.
_ALL_SUCCEEDED = "All reference tasks succeeded."
_SOME_FAILED = "Some reference tasks failed."
# How often a runner waiting for a retry asks whether the run was cancelled (seconds).
_RETRY_WAIT_POLL = 0.1


def checkpoint_result(flow: Flow, checkpointing: Any = None) -> Result | None:
    """The flow-level ``Result`` tasks are checkpointed to: the flow's own, else, when checkpointing
    is on (``checkpointing``, or ``FLOWDECK_CHECKPOINTING`` when it is not a bool), a
    ``CheckpointResult`` in the results directory."""
    if flow.result is not None:
        return flow.result
    if not isinstance(checkpointing, bool):
        from flowdeck.config import checkpointing as checkpointing_setting

        checkpointing = checkpointing_setting(default=False)
    if not checkpointing:
        return None
    from flowdeck.engine.results.checkpoint import CheckpointResult

    return CheckpointResult()


def task_result(task: Task, flow_result: Result | None) -> Result | None:
    """Where ``task``'s result is checkpointed (``None``: it is not), as the task runner decides."""
    if task.checkpoint is False or task._is_parameter:
        return None
    return task.result if task.result is not None else flow_result


def runs_in_process(executor: Any) -> bool:
    """Whether the executor runs task functions in this process (so states can be streamed live).

    An executor may say so with a ``runs_in_process`` attribute; otherwise ``LocalExecutor`` and a
    thread-based ``LocalDaskExecutor`` do, anything else is assumed remote."""
    flag = getattr(executor, "runs_in_process", None)
    if isinstance(flag, bool):
        return flag
    name = type(executor).__name__
    if name == "LocalExecutor":
        return True
    if name == "LocalDaskExecutor":
        return getattr(executor, "scheduler", "threads") in ("threads", "synchronous", "sync", "single-threaded")
    return False


class _TaskPlan:
    """What the runner precomputes once per flow graph for each task."""

    __slots__ = ("task", "key", "edges", "upstream", "constants", "mapped_constants", "is_mapped", "extra")

    def __init__(self, flow: Flow, task: Task) -> None:
        self.task = task
        self.key = flow.key_of(task)
        self.edges: tuple[Edge, ...] = tuple(flow._upstream[task])
        self.upstream: tuple[Task, ...] = tuple(e.upstream_task for e in self.edges)
        mapped_keys = flow.mapped_constants.get(task, set())
        constants = flow.constants.get(task, {})
        self.constants = {k: v for k, v in constants.items() if k not in mapped_keys}
        self.mapped_constants: dict[str, list[Any]] = {k: list(constants[k]) for k in mapped_keys}
        self.is_mapped = flow.is_mapped(task)
        # For executors (Dask key names, resources from tags); the task runner sets the full context.
        self.extra = {"task_key": self.key, "task_name": task.name, "map_index": -1, "task_tags": sorted(task.tags)}


def _plan(flow: Flow) -> tuple[_TaskPlan, ...]:
    def build() -> tuple[_TaskPlan, ...]:
        return tuple(_TaskPlan(flow, t) for t in flow.sorted_tasks())

    plans: tuple[_TaskPlan, ...] = flow._cached("run_plan", build)
    return plans


class _Pending:
    """A task run submitted to a remote executor, whose history the driver forwards to the observer."""

    __slots__ = ("seq", "key", "map_index", "future", "outcome", "deps", "forwarded")

    def __init__(self, seq: int, key: str, map_index: int, future: Any, deps: list[_Pending]) -> None:
        self.seq = seq
        self.key = key
        self.map_index = map_index
        self.future = future
        self.outcome: TaskRunOutcome | None = None
        #: Runs whose states must reach the observer first (upstream tasks, a mapped parent's children).
        self.deps = deps
        self.forwarded = False


class _Collector:
    """Turns the executor's futures into outcomes (batching waits) and, for executors that run tasks
    elsewhere, forwards each run's history to the observer — never before the runs it depends on."""

    def __init__(self, runner: FlowRunner, executor: Any, tracking: bool) -> None:
        self.runner = runner
        self.executor = executor
        self.tracking = tracking
        self.entries: list[_Pending] = []
        self.by_future: dict[int, _Pending] = {}
        self.values: dict[int, TaskRunOutcome] = {}

    def track(self, key: str, map_index: int, future: Any, deps: Iterable[Any] = ()) -> None:
        if not self.tracking or isinstance(future, TaskRunOutcome):
            return
        found = [e for e in (self.by_future.get(id(d)) for d in deps) if e is not None]
        entry = _Pending(len(self.entries), key, map_index, future, found)
        self.entries.append(entry)
        self.by_future[id(future)] = entry

    def _wait(self, futures: list[Any]) -> None:
        todo = [f for f in futures if not isinstance(f, TaskRunOutcome) and id(f) not in self.values]
        if not todo:
            return
        values = self.executor.wait(todo)
        for future, value in zip(todo, values, strict=True):
            if not isinstance(value, TaskRunOutcome):
                raise TypeError(f"The executor returned {type(value).__name__} instead of a task-run outcome.")
            self.values[id(future)] = value
            entry = self.by_future.get(id(future))
            if entry is not None:
                entry.outcome = value

    def outcome(self, item: Any) -> TaskRunOutcome:
        if isinstance(item, TaskRunOutcome):
            return item
        return self.values[id(item)]

    def resolve(self, items: list[Any]) -> list[TaskRunOutcome]:
        """The outcomes of ``items`` (futures or outcomes), their histories (and those of the runs
        they depend on) forwarded."""
        self._wait(items)
        closure: dict[int, _Pending] = {}
        stack = [e for e in (self.by_future.get(id(i)) for i in items) if e is not None]
        while stack:
            entry = stack.pop()
            if entry.forwarded or entry.seq in closure:
                continue
            closure[entry.seq] = entry
            stack.extend(entry.deps)
        self._wait([e.future for e in closure.values()])
        # Submission order is topological: forwarding by it keeps upstream states first.
        for seq in sorted(closure):
            self._forward(closure[seq])
        return [self.outcome(i) for i in items]

    def finish(self, items: list[Any]) -> list[TaskRunOutcome]:
        """Every remaining outcome (one batched wait) and every history not forwarded yet, in order."""
        self._wait(items + [e.future for e in self.entries if not e.forwarded])
        for entry in self.entries:
            self._forward(entry)
        return [self.outcome(i) for i in items]

    def _forward(self, entry: _Pending) -> None:
        if entry.forwarded:
            return
        entry.forwarded = True
        assert entry.outcome is not None
        for state in entry.outcome.history:
            self.runner._emit(entry.key, entry.map_index, state)


class FlowRunner(Runner):
    """Runs a flow.

    Args:
        flow: the flow.
        task_runner_cls: the task runner class (default ``TaskRunner``).
        state_handlers: runner-level flow state handlers ``fn(runner, old, new)``.
        observer: default ``RunObserver`` for ``run()``.
    """

    def __init__(
        self,
        flow: Flow,
        task_runner_cls: type[TaskRunner] | None = None,
        state_handlers: Iterable[RunnerStateHandler] | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        super().__init__(state_handlers)
        self.flow = flow
        self.task_runner_cls = task_runner_cls or TaskRunner
        self.observer = observer
        self._observer: RunObserver | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._flow_result: Result | None = flow.result
        #: Finished states of mapped children given by ``initial_task_states`` (``{task: {index: state}}``).
        self._children: dict[Task, dict[int, State]] = {}

    def __repr__(self) -> str:
        return f"<FlowRunner: {self.flow.name}>"

    # --- state changes ---------------------------------------------------------------------------
    def runner_target(self) -> Flow:
        return self.flow

    def handle_state_change(self, old_state: State, new_state: State) -> State:
        return handle_state_change_guarded(self, old_state, new_state)

    def _set_flow_state(self, old_state: State, new_state: State) -> State:
        new_state = self.handle_state_change(old_state, new_state)
        observer = self._observer
        if observer is not None:
            with self._lock:
                observer.flow_state(new_state)
        return new_state

    def _emit(self, key: str, map_index: int, state: State) -> None:
        observer = self._observer
        if observer is not None:
            with self._lock:
                observer.task_state(key, map_index, state)

    def _cancel_requested(self) -> bool:
        if not self._cancelled and self._observer is not None and self._observer.cancel_requested():
            self._cancelled = True
        return self._cancelled

    # --- the run ---------------------------------------------------------------------------------
    def run(
        self,
        state: State | None = None,
        task_states: Mapping[Any, State] | None = None,
        return_tasks: Iterable[Task] | None = None,
        parameters: Mapping[str, Any] | None = None,
        task_runner_state_handlers: Iterable[RunnerStateHandler] | None = None,
        executor: Any = None,
        context: Mapping[str, Any] | None = None,
        task_contexts: Mapping[Task, Mapping[str, Any]] | None = None,
        *,
        initial_task_states: Mapping[Any, State] | None = None,
        observer: RunObserver | None = None,
    ) -> State:
        """Run the flow once and return its final state; ``state.result`` maps each task to its state.

        Args:
            state: the flow run's current state (default ``Scheduled``, for now); when it is already ``Running``
                (an agent reported it), the runner does not report ``Running`` again.
            task_states / initial_task_states: ``{task or task key: State}``; finished states are kept
                and those tasks are not run (restarts); ``Resume`` resumes a paused task. A key
                ``(task or task key, map_index)`` gives a mapped child's state.
            parameters: parameter values (defaults fill the rest; unknown or missing required ones
                end the run ``Failed`` with a message saying which).
            executor: where tasks run (default: the flow's executor, else ``LocalExecutor``).
            context: extra ``flowdeck.context`` values for every task (e.g. ``flow_run_id``;
                ``checkpointing=True`` checkpoints every result, see ``checkpoint_result``).
            task_contexts: extra context values per task.
            return_tasks: accepted for Prefect 1 compatibility; every task's state is returned.
            observer: receives every state change (default: the one given to the constructor).
        """
        flow = self.flow
        self._observer = observer if observer is not None else self.observer
        self._cancelled = False
        current: State = state if state is not None else Scheduled()

        try:
            resolved_parameters = flow.resolve_parameters(parameters)
            flow.validate()
            self._flow_result = checkpoint_result(flow, (context or {}).get("checkpointing",
                                                                            flowdeck_context.get("checkpointing")))
            initial = self._initial_states(task_states, initial_task_states)
        except (ValueError, KeyError, TypeError) as exc:
            return self._set_flow_state(current, Failed(str(exc).strip("\"'"), result=exc))

        flow_context = self._flow_context(resolved_parameters, context)
        if self._cancel_requested():
            return self._set_flow_state(current, Cancelled("The flow run was cancelled before it started."))
        log = self.logger.isEnabledFor(logging.INFO)
        if log:
            self.logger.info("Beginning Flow run for '%s'", flow.name)
        if not current.is_running():  # a caller that already reported Running is not told twice
            current = self._set_flow_state(current, Running("Running flow."))
            if not current.is_running():
                return current

        previous = flowdeck_context.replace(dict(flow_context))
        try:
            if executor is None:
                executor = flow.executor
            if executor is None:
                from flowdeck.executors import LocalExecutor

                executor = LocalExecutor()
            handlers = list(task_runner_state_handlers or ())
            with executor.start():
                task_states_final = self._walk(executor, flow_context, initial, handlers, task_contexts or {})
                # Later passes: the retries, once due (see the module doc).
                while (due := _next_retry(task_states_final.values())) is not None and self._wait_until(due):
                    before = _retrying(task_states_final.values())  # kept alive: their ids stay theirs
                    task_states_final = self._walk(
                        executor, flow_context, task_states_final, handlers, task_contexts or {}
                    )
                    if {id(s) for s in _retrying(task_states_final.values())} == {id(s) for s in before}:
                        break  # nothing moved (e.g. a state handler kept a task Retrying): do not spin
            final = self._final_state(task_states_final)
        except (Exception, signals.FlowdeckSignal) as exc:
            if isinstance(exc, Exception) and flow_context.get("raise_on_exception"):
                raise  # a task's error under ``with raise_on_exception():``
            self.logger.error("Unexpected error while running flow %r", flow.name, exc_info=exc)
            final = Failed(f"Unexpected error while running the flow: {exc!r}", result=exc)
        finally:
            flowdeck_context.replace(previous)
        if log:
            if final.message == _ALL_SUCCEEDED and final.is_successful():
                self.logger.info("Flow run SUCCESS: all reference tasks succeeded")
            elif final.message == _SOME_FAILED and final.is_failed():
                self.logger.info("Flow run FAILED: some reference tasks failed.")
            elif final.is_failed():
                self.logger.info("Flow run FAILED: %s", final.message)
            else:
                self.logger.info("Flow run %s: %s", final.name.upper(), final.message)
        return self._set_flow_state(current, final)

    def _wait_until(self, due: datetime) -> bool:
        """Sleep until ``due`` (a retry's start time); False when the run was cancelled meanwhile."""
        while True:
            if self._observer is not None and self._cancel_requested():
                return False
            left = (due - datetime.now(UTC)).total_seconds()
            if left <= 0:
                return True
            time.sleep(min(left, _RETRY_WAIT_POLL))

    def _initial_states(self, *sources: Mapping[Any, State] | None) -> dict[Task, State]:
        from flowdeck.core.task import Task

        found: dict[Task, State] = {}
        children: dict[Task, dict[int, State]] = {}
        for source in sources:
            for ref, st in (source or {}).items():
                index = -1
                if isinstance(ref, tuple) and len(ref) == 2 and isinstance(ref[1], int):
                    ref, index = ref
                task = ref if isinstance(ref, Task) else self.flow.task_by_key(str(ref))
                if not isinstance(st, State):
                    raise TypeError(f"The initial state of {task.name!r} must be a State, not {type(st).__name__}.")
                if index < 0:
                    found[task] = st
                elif st.is_finished():  # an unfinished child simply runs
                    children.setdefault(task, {})[index] = st
        for task, st in found.items():
            self._hydrate(task, st)
        for task, by_index in children.items():
            for st in by_index.values():
                self._hydrate(task, st)
        self._children = children
        return found

    def _hydrate(self, task: Task, state: State) -> None:
        """A restarted task's result is read back from its checkpoint when only the reference is known."""
        if state.result is not None or not state.result_ref or not state.is_successful():
            return
        handler = task.result if task.result is not None else self._flow_result
        if handler is not None:
            state.result = handler.read(state.result_ref).value

    def _flow_context(self, parameters: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
        data = {k: v for k, v in flowdeck_context.to_dict().items() if k not in _BUILD_KEYS}
        data.update(extra or {})
        import pendulum  # here, not at import: it takes longer to import than a small flow takes to run

        now = pendulum.now("UTC")
        data.setdefault("flow_run_id", str(uuid.uuid4()))
        data["scheduled_start_time"] = _utc_datetime(data.get("scheduled_start_time"), now)
        if "running_with_backend" not in data and os.environ.get("FLOWDECK_FLOW_RUN_ID") == str(data["flow_run_id"]):
            data["running_with_backend"] = True  # the flow-run process an agent started
        yesterday, tomorrow = now.subtract(days=1), now.add(days=1)
        data.update(
            flow_name=self.flow.name,
            parameters=parameters,
            date=now,
            today=now.strftime("%Y-%m-%d"),
            today_nodash=now.strftime("%Y%m%d"),
            yesterday=yesterday.strftime("%Y-%m-%d"),
            yesterday_nodash=yesterday.strftime("%Y%m%d"),
            tomorrow=tomorrow.strftime("%Y-%m-%d"),
            tomorrow_nodash=tomorrow.strftime("%Y%m%d"),
            logger=self.flow.logger,
        )
        return data

    # --- walking the graph -----------------------------------------------------------------------
    def _walk(
        self,
        executor: Any,
        flow_context: dict[str, Any],
        initial: dict[Task, State],
        handlers: list[RunnerStateHandler],
        task_contexts: Mapping[Task, Mapping[str, Any]],
    ) -> dict[Task, State]:
        flow = self.flow
        observer = self._observer
        stream = observer is not None and runs_in_process(executor)
        emit = self._emit if stream else None
        # Thread pools may start a task long after it was submitted: let it check for cancellation.
        should_stop = self._cancel_requested if stream and type(executor).__name__ != "LocalExecutor" else None
        runner_cls = self.task_runner_cls
        flow_result = self._flow_result
        submit = executor.submit
        # The local executor needs no hints, and preparing them would cost time on every task.
        hints = type(executor).__name__ != "LocalExecutor"

        outcomes: dict[Task, Any] = {}
        collector = _Collector(self, executor, tracking=observer is not None and not stream)
        not_started: list[Task] = []

        for plan in _plan(flow):
            task = plan.task
            if observer is not None and self._cancel_requested():
                not_started.append(task)
                continue
            start = initial.get(task)
            if start is not None and upstream_finished(start) and not (plan.is_mapped and _restored_parent(start)):
                outcomes[task] = TaskRunOutcome(start, [])
                continue
            context = flow_context if task not in task_contexts else {**flow_context, **task_contexts[task]}
            if plan.is_mapped:
                outcomes[task] = self._submit_mapped(
                    plan, outcomes, collector, executor, context, start, handlers, emit, should_stop
                )
                continue
            on_state = functools.partial(emit, plan.key, -1) if emit is not None else None
            spec = TaskRunSpec(
                task, plan.key, -1, plan.edges, plan.constants, start, context, runner_cls, handlers, flow_result,
                on_state, should_stop,
            )
            args = [outcomes[u] for u in plan.upstream]
            future = submit(run_task, spec, *args, extra_context=plan.extra if hints else None)
            outcomes[task] = future
            collector.track(plan.key, -1, future, args)

        tasks = list(outcomes)
        finished = collector.finish([outcomes[t] for t in tasks])
        states: dict[Task, State] = {t: o.state for t, o in zip(tasks, finished, strict=True)}
        for task in not_started:
            states[task] = Cancelled("The flow run was cancelled before this task started.")
        return states

    def _submit_mapped(
        self,
        plan: _TaskPlan,
        outcomes: dict[Task, Any],
        collector: _Collector,
        executor: Any,
        context: Mapping[str, Any],
        start: State | None,
        handlers: list[RunnerStateHandler],
        emit: Callable[[str, int, State], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> Any:
        """Map ``plan.task``: one child run per element, then a parent gathering them (see module doc)."""
        task = plan.task
        upstream = collector.resolve([outcomes[u] for u in plan.upstream])
        upstream_states = {e: o.state for e, o in zip(plan.edges, upstream, strict=True)}
        flow_result = self._flow_result
        # The parent's own state changes happen here, in the driver: report them directly.
        parent = self.task_runner_cls(
            task, state_handlers=handlers, flow_result=flow_result,
            on_state=functools.partial(self._emit, plan.key, -1),
        )
        finished_before = start is not None and _restored_parent(start)
        # A later pass of this run: mapped already, some children to run again (retries).
        again = isinstance(start, Mapped) and not finished_before
        restored = dict(enumerate(start.map_states)) if isinstance(start, Mapped) and again \
            else self._children.get(task, {})
        current: State = start if start is not None and not finished_before else Pending()
        previous = flowdeck_context.replace({**context, "task_key": plan.key, "map_index": None,
                                             "task_name": task.name})
        try:
            decision = _prepare_map(plan, upstream_states)
            if isinstance(decision, Pending):
                return TaskRunOutcome(current, [])  # upstream not finished: nothing happened
            if isinstance(decision, State):
                return TaskRunOutcome(parent._set(current, decision), [])
            elements, count = decision
            if finished_before and all(i in restored for i in range(count)):
                # Mapped in an earlier attempt and every child restored: nothing to run or report.
                states = [restored[i] for i in range(count)]
                done = Mapped(start.message if start is not None else None, result=[s.result for s in states],
                              map_states=states)
                return TaskRunOutcome(done, [])
            if not again:
                logger = parent.logger
                if logger.isEnabledFor(logging.INFO):
                    logger.info("Task '%s': Starting task run...", task.name)
                current = parent._set(current, Running(f"Mapping over {count} elements."))
        finally:
            flowdeck_context.replace(previous)
        if not (again or current.is_running()):
            return TaskRunOutcome(current, [])

        runner_cls = self.task_runner_cls
        children: list[Any] = []
        for i in range(count):
            if self._observer is not None and self._cancel_requested():
                cancelled = parent._set(current, Cancelled("The flow run was cancelled while mapping this task."))
                collector.resolve(children)
                return TaskRunOutcome(cancelled, [])
            child = restored.get(i)
            if child is not None and upstream_finished(child):
                children.append(TaskRunOutcome(child, []))  # finished in an earlier attempt or pass
                continue
            args = [
                elements[j][i] if edge.mapped else upstream[j]
                for j, edge in enumerate(plan.edges)
            ]
            constants = dict(plan.constants)
            for name, values in plan.mapped_constants.items():
                constants[name] = values[i]
            spec = TaskRunSpec(
                task, plan.key, i, plan.edges, constants, child, context, runner_cls, handlers, flow_result,
                functools.partial(emit, plan.key, i) if emit is not None else None, should_stop,
            )
            extra = {**plan.extra, "map_index": i}
            future = executor.submit(run_task, spec, *args, extra_context=extra)
            children.append(future)
            collector.track(plan.key, i, future)
        parent_spec = TaskRunSpec(
            task, plan.key, -1, (), {}, current, context, runner_cls, handlers, flow_result,
            functools.partial(emit, plan.key, -1) if emit is not None else None, None,
        )
        future = executor.submit(assemble_mapped, parent_spec, *children, extra_context=plan.extra)
        collector.track(plan.key, -1, future, children)
        return future

    # --- the flow's final state ------------------------------------------------------------------
    def _final_state(self, states: dict[Task, State]) -> State:
        if self._cancelled:
            return Cancelled("The flow run was cancelled.", result=states)
        reference = self.flow.reference_tasks()
        reference_states = [states[t] for t in reference if t in states]
        if not all(upstream_finished(s) for s in reference_states):
            paused = sorted(self.flow.key_of(t) for t, s in states.items() if s.is_paused())
            if paused:
                return Paused(f"Waiting for approval of task(s): {', '.join(paused)}.", result=states)
            return Failed("Some reference tasks did not finish.", result=states)

        def failed(s: State) -> bool:
            if s.is_failed():
                return True
            return s.is_mapped() and any(failed(c) for c in getattr(s, "map_states", ()))

        if any(failed(s) for s in reference_states):
            return Failed(_SOME_FAILED, result=states)
        return Success(_ALL_SUCCEEDED, result=states)


def _retrying(states: Iterable[State]) -> list[Retrying]:
    """The ``Retrying`` states among ``states`` and their mapped children."""
    found: list[Retrying] = []
    stack = list(states)
    while stack:
        state = stack.pop()
        if isinstance(state, Retrying):
            found.append(state)
        elif isinstance(state, Mapped):
            stack.extend(state.map_states)
    return found


def _next_retry(states: Iterable[State]) -> datetime | None:
    """The earliest start time of a ``Retrying`` state among ``states`` and their mapped children."""
    return min((s.start_time for s in _retrying(states)), default=None)



def _utc_datetime(value: Any, default: pendulum.DateTime) -> pendulum.DateTime:
    """``value`` (a datetime or an ISO 8601 string, e.g. the run's scheduled start) as a pendulum
    ``DateTime`` in UTC; ``default`` when there is none or it cannot be read."""
    import pendulum

    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return pendulum.instance(aware).in_timezone("UTC")
    if isinstance(value, str) and value:
        try:
            parsed = pendulum.parse(value)
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            return default
        if isinstance(parsed, pendulum.DateTime):
            return parsed.in_timezone("UTC")
    return default


def _restored_parent(state: State) -> bool:
    """A ``Mapped`` state without its children's states: a mapped task a restart says finished, which
    maps again to get its children back (see the module doc)."""
    return isinstance(state, Mapped) and not state.map_states


def _mapped_elements(state: State, flattened: bool, source: str) -> list[State] | str:
    """The per-child upstream states of a mapped edge, or an error message."""
    if state.is_mapped():
        children: list[State] = list(getattr(state, "map_states", []))
        if not flattened:
            return children
        flat: list[State] = []
        for child in children:
            if child.is_successful() and not child.is_skipped():
                try:
                    flat.extend(Success(result=v) for v in child.result)
                except TypeError:
                    return f"Cannot flatten the result of a child of {source!r}: it is not a list."
            else:
                flat.append(child)
        return flat
    values = state.result
    try:
        if flattened:
            values = [v for inner in values for v in inner]
        return [Success(result=v) for v in values]
    except TypeError:
        return f"Cannot map over the result of {source!r}: {type(values).__name__} is not a list."


def _prepare_map(plan: _TaskPlan, upstream_states: dict[Edge, State]) -> State | tuple[list[list[State]], int]:
    """Either the parent's final state (nothing to map) or, per edge, the child upstream states and
    the number of children."""
    task = plan.task
    for st in upstream_states.values():
        if not st.is_finished():
            return Pending("Waiting for upstream tasks to finish.")
    if task.skip_on_upstream_skip and any(s.is_skipped() for s in upstream_states.values()):
        return Skipped(
            "Upstream task was skipped; if this was not the intended behavior, consider "
            "changing `skip_on_upstream_skip=False` for this task."
        )
    elements: list[list[State]] = []
    lengths = [len(v) for v in plan.mapped_constants.values()]
    for edge, st in upstream_states.items():
        if not edge.mapped:
            elements.append([])
            continue
        source = edge.upstream_task.name
        if not st.is_successful():
            return TriggerFailed(
                f"Upstream task {source!r} did not succeed ({st.name}), so there is nothing to map over."
            )
        found = _mapped_elements(st, edge.flattened, source)
        if isinstance(found, str):
            return Failed(found)
        elements.append(found)
        lengths.append(len(found))
    if not lengths:
        return Failed("No upstream states can be mapped over.")
    return elements, min(lengths)


__all__ = ["FlowRunner", "checkpoint_result", "runs_in_process", "task_result"]
