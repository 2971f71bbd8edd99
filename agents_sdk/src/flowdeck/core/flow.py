"""``Flow``: a graph of tasks (Prefect 1's ``prefect.core.flow.Flow``).

Build it with the functional API inside ``with Flow("name") as flow:`` (calling tasks binds them) or
imperatively (``flow.add_task``, ``flow.set_dependencies``, ``flow.add_edge``). ``flow.run()`` runs
it once, locally; ``flow.serialize()`` is the metadata the server stores; ``flow.register()`` sends it.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from flowdeck.context import context
from flowdeck.core.edge import Edge
from flowdeck.core.parameter import Parameter
from flowdeck.core.task import Task
from flowdeck.sla import SlaPolicy, check_policies
from flowdeck.utilities.edges import unwrap
from flowdeck.utilities.logging import get_logger

if TYPE_CHECKING:
    import logging

    from flowdeck.engine.flow_runner import FlowRunner
    from flowdeck.engine.observer import RunObserver
    from flowdeck.engine.results import Result
    from flowdeck.engine.state import State
    from flowdeck.run_configs import RunConfig
    from flowdeck.storage import Storage

MAX_KEY_LENGTH = 200


class _Schedule(Protocol):
    def serialize(self) -> dict[str, Any]: ...


def slugify(name: str) -> str:
    """A task key from a task name: lower case ASCII letters, digits and ``_``; other runs become ``-``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_]+", "-", ascii_name.lower()).strip("-")
    return slug[: MAX_KEY_LENGTH - 10] or "task"


def _defining_module() -> tuple[str | None, str | None]:
    """(module name, file) of the code that created the flow, skipping flowdeck's own frames."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("flowdeck.core"):
        frame = frame.f_back
    if frame is None:
        return None, None
    module = frame.f_globals.get("__name__")
    file = frame.f_globals.get("__file__")
    return (module if isinstance(module, str) else None), (file if isinstance(file, str) else None)


class Flow:
    """A named graph of tasks.

    Args:
        name: the flow's name (registration key together with the project).
        schedule: when the server should create runs (``flowdeck.schedules``); ``flow.run()`` ignores it.
        executor: default executor of ``flow.run()`` (default ``LocalExecutor``).
        run_config: how an agent runs it (``flowdeck.run_configs.LocalRun``/``DockerRun``/``KubernetesRun``).
        storage: where an agent finds the code (``flowdeck.storage``); default: this module, or this file.
        labels: agent labels a run needs.
        tasks, edges: for imperative construction.
        reference_tasks: the tasks whose states decide the flow's final state (default: terminal tasks).
        state_handlers: ``fn(flow, old_state, new_state) -> State | None`` on every flow-run change.
        on_failure: ``fn(flow, state)`` when the flow run fails.
        result: default ``Result`` for checkpointing every task.
        sla: SLA policies registered with the flow (``flowdeck.sla``: ``StartWithin``, ``FinishWithin``,
            ``Failures``, ``Freshness``, ``AgentCoverage``, ``PrestartFailure``); ``flow.run()`` ignores them.
    """

    def __init__(
        self,
        name: str,
        schedule: _Schedule | None = None,
        executor: Any = None,
        run_config: RunConfig | None = None,
        storage: Storage | None = None,
        tasks: Iterable[Task] | None = None,
        edges: Iterable[Edge] | None = None,
        reference_tasks: Iterable[Task] | None = None,
        state_handlers: Iterable[Callable[[Flow, State, State], State | None]] | None = None,
        on_failure: Callable[[Flow, State], None] | None = None,
        validate: bool | None = None,
        result: Result | None = None,
        labels: Iterable[str] | None = None,
        sla: Iterable[SlaPolicy] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("A flow needs a name (a non-empty string).")
        self.name = name
        self.schedule = schedule
        self.sla: list[SlaPolicy] = check_policies(name, sla or ())
        self.executor = executor
        self.run_config = run_config
        self.storage = storage
        self.labels: set[str] = set(labels or ())
        self.result = result
        self.state_handlers: list[Callable[[Flow, State, State], State | None]] = list(state_handlers or ())
        self.on_failure = on_failure
        self.validate_edges = True if validate is None else bool(validate)
        self._defined_in = _defining_module()

        self.tasks: set[Task] = set()
        self.edges: set[Edge] = set()
        self.constants: dict[Task, dict[str, Any]] = {}
        #: For each mapped task, the constant inputs mapped over (``add.map(x=[1, 2, 3])``).
        self.mapped_constants: dict[Task, set[str]] = {}
        self._order: list[Task] = []
        self._keys: dict[Task, str] = {}
        self._by_key: dict[str, Task] = {}
        self._next_suffix: dict[str, int] = {}
        self._parameters: dict[str, Parameter] = {}
        self._upstream: dict[Task, list[Edge]] = {}
        self._downstream: dict[Task, list[Edge]] = {}
        self._reference_tasks: set[Task] = set()
        self._version = 0  # bumped on every change: invalidates cached orderings and run plans
        self._cache: dict[str, tuple[int, Any]] = {}
        self._previous_flow: list[Any] = []

        for t in tasks or ():
            self.add_task(t)
        for e in edges or ():
            self.add_edge(e.upstream_task, e.downstream_task, key=e.key, mapped=e.mapped, flattened=e.flattened)
        self.set_reference_tasks(reference_tasks or ())

    def __repr__(self) -> str:
        return f"<Flow: name={self.name!r}, {len(self.tasks)} tasks>"

    @property
    def logger(self) -> logging.Logger:
        return get_logger(f"Flow: {self.name}")

    # --- functional API context -------------------------------------------------------------------
    def __enter__(self) -> Flow:
        self._previous_flow.append(context.get("flow"))
        context["flow"] = self
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        previous = self._previous_flow.pop() if self._previous_flow else None
        if previous is None:
            context.pop("flow", None)
        else:
            context["flow"] = previous

    # --- building ---------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._version += 1

    def add_task(self, task: Task) -> Task:
        """Add ``task`` (once) and give it its key; returns it."""
        if not isinstance(task, Task):
            raise TypeError(f"Flows can only contain tasks, not {type(task).__name__} ({task!r}).")
        if task in self.tasks:
            return task
        if isinstance(task, Parameter) and task.name in self._parameters:
            raise ValueError(f"This flow already has a parameter named {task.name!r}; parameter names are unique.")
        if task._explicit_slug and task.slug is not None:
            key = task.slug
            if key in self._by_key:
                raise ValueError(f"Two tasks of flow {self.name!r} use the slug {key!r}; slugs must be unique.")
        else:
            base = slugify(task.name)
            key, n = base, self._next_suffix.get(base, 2)
            if key in self._by_key:
                # Start from the last suffix used for this name: many same-named tasks stay O(1) each.
                key = f"{base}-{n}"
                while key in self._by_key:
                    n += 1
                    key = f"{base}-{n}"
                self._next_suffix[base] = n + 1
            if task.slug is None:
                task.slug = key
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"Task key {key[:40]!r}… is longer than {MAX_KEY_LENGTH} characters.")
        if isinstance(task, Parameter):
            self._parameters[task.name] = task
        self.tasks.add(task)
        self._order.append(task)
        self._keys[task] = key
        self._by_key[key] = task
        self._upstream[task] = []
        self._downstream[task] = []
        self._changed()
        active_case = context.get("case")
        if active_case is not None:
            active_case.add_task(task, self)
        return task

    def add_edge(
        self,
        upstream_task: Task,
        downstream_task: Task,
        key: str | None = None,
        mapped: bool = False,
        flattened: bool = False,
        validate: bool | None = None,
    ) -> Edge:
        """Make ``downstream_task`` depend on ``upstream_task`` (with ``key``: receive its result)."""
        edge = Edge(upstream_task, downstream_task, key=key, mapped=mapped, flattened=flattened)
        if edge in self.edges:
            return edge
        if upstream_task is downstream_task:
            raise ValueError(f"Task {upstream_task.name!r} cannot depend on itself.")
        self.add_task(upstream_task)
        self.add_task(downstream_task)
        if key is not None:
            taken = key in self.constants.get(downstream_task, {}) or any(
                e.key == key for e in self._upstream[downstream_task]
            )
            if taken:
                raise ValueError(
                    f"Argument {key!r} of task {downstream_task.name!r} was already given a value in this flow."
                )
        check = self.validate_edges if validate is None else validate
        if check and self._reaches(downstream_task, upstream_task):
            raise ValueError(
                f"Adding {upstream_task.name!r} → {downstream_task.name!r} would create a cycle; flows must be acyclic."
            )
        self.edges.add(edge)
        self._upstream[downstream_task].append(edge)
        self._downstream[upstream_task].append(edge)
        self._changed()
        return edge

    def _reaches(self, start: Task, target: Task) -> bool:
        """Whether ``target`` is ``start`` or downstream of it."""
        if start is target:
            return True
        seen = {start}
        stack = [start]
        while stack:
            for edge in self._downstream.get(stack.pop(), ()):
                nxt = edge.downstream_task
                if nxt is target:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    def add_constant(self, task: Task, key: str, value: Any, mapped: bool = False, flattened: bool = False) -> None:
        """Give ``task``'s argument ``key`` a fixed value (mapped: one element per child)."""
        self.add_task(task)
        if key in self.constants.get(task, {}) or any(e.key == key for e in self._upstream[task]):
            raise ValueError(f"Argument {key!r} of task {task.name!r} was already given a value in this flow.")
        if flattened:
            try:
                value = [item for inner in value for item in inner]
            except TypeError:
                raise TypeError(f"flatten() needs a list of lists for argument {key!r} of {task.name!r}.") from None
        if mapped:
            try:
                value = list(value)
            except TypeError:
                raise TypeError(
                    f"Cannot map {task.name!r} over argument {key!r}: {type(value).__name__} is not a list."
                ) from None
            self.mapped_constants.setdefault(task, set()).add(key)
        self.constants.setdefault(task, {})[key] = value
        self._changed()

    def set_dependencies(
        self,
        task: Task,
        upstream_tasks: Iterable[Any] | None = None,
        downstream_tasks: Iterable[Any] | None = None,
        keyword_tasks: Mapping[str, Any] | None = None,
        mapped: bool = False,
        validate: bool | None = None,
    ) -> None:
        """Add ``task`` with ordering-only upstream/downstream tasks and data inputs (``keyword_tasks``)."""
        from flowdeck.utilities.tasks import as_task, contains_task

        self.add_task(task)
        for raw in upstream_tasks or ():
            value, is_mapped, flattened = unwrap(raw, mapped)
            self.add_edge(as_task(value, flow=self), task, mapped=is_mapped, flattened=flattened, validate=validate)
        for raw in downstream_tasks or ():
            value, _, _ = unwrap(raw, False)
            self.add_edge(task, as_task(value, flow=self), validate=validate)
        for key, raw in (keyword_tasks or {}).items():
            value, is_mapped, flattened = unwrap(raw, mapped)
            if isinstance(value, Task) or contains_task(value):
                self.add_edge(
                    as_task(value, flow=self), task, key=key, mapped=is_mapped, flattened=flattened, validate=validate
                )
            else:
                self.add_constant(task, key, value, mapped=is_mapped, flattened=flattened)

    def chain(self, *tasks: Task, validate: bool | None = None) -> list[Edge]:
        """Make each task run after the previous one (ordering only)."""
        return [self.add_edge(a, b, validate=validate) for a, b in zip(tasks, tasks[1:], strict=False)]

    def update(self, flow: Flow, validate: bool | None = None) -> None:
        """Add every task, edge and constant of ``flow`` to this flow."""
        for t in flow._order:
            self.add_task(t)
        for e in sorted(flow.edges, key=lambda e: (flow._keys[e.downstream_task], e.key or "")):
            self.add_edge(e.upstream_task, e.downstream_task, e.key, e.mapped, e.flattened, validate=validate)
        for t, values in flow.constants.items():
            for k, v in values.items():
                if k not in self.constants.get(t, {}):
                    self.constants.setdefault(t, {})[k] = v
        for t, keys in flow.mapped_constants.items():
            self.mapped_constants.setdefault(t, set()).update(keys)
        self._changed()

    def copy(self) -> Flow:
        """A copy sharing the task objects (changing its graph leaves this flow unchanged)."""
        new = Flow(
            self.name, schedule=self.schedule, executor=self.executor, run_config=self.run_config,
            storage=self.storage, labels=self.labels, result=self.result, state_handlers=self.state_handlers,
            on_failure=self.on_failure, sla=self.sla,
        )
        new._defined_in = self._defined_in
        new.update(self)
        new.set_reference_tasks(self._reference_tasks)
        return new

    # --- reading the graph ------------------------------------------------------------------------
    def key_of(self, task: Task) -> str:
        """The task's stable key in this flow (the same in ``serialize()`` and in runs)."""
        try:
            return self._keys[task]
        except KeyError:
            raise ValueError(f"{task!r} is not a task of flow {self.name!r}.") from None

    def task_by_key(self, key: str) -> Task:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"Flow {self.name!r} has no task with key {key!r}.") from None

    def get_tasks(
        self,
        name: str | None = None,
        slug: str | None = None,
        tags: Iterable[str] | None = None,
        task_type: type | None = None,
    ) -> list[Task]:
        """Tasks matching every given criterion, in the order they were added."""
        wanted = set(tags or ())
        return [
            t
            for t in self._order
            if (name is None or t.name == name)
            and (slug is None or self._keys[t] == slug)
            and wanted <= t.tags
            and (task_type is None or isinstance(t, task_type))
        ]

    def edges_to(self, task: Task) -> set[Edge]:
        return set(self._upstream.get(task, ()))

    def edges_from(self, task: Task) -> set[Edge]:
        return set(self._downstream.get(task, ()))

    def upstream_tasks(self, task: Task) -> set[Task]:
        return {e.upstream_task for e in self._upstream.get(task, ())}

    def downstream_tasks(self, task: Task) -> set[Task]:
        return {e.downstream_task for e in self._downstream.get(task, ())}

    def root_tasks(self) -> set[Task]:
        return {t for t in self._order if not self._upstream[t]}

    def terminal_tasks(self) -> set[Task]:
        return {t for t in self._order if not self._downstream[t]}

    def reference_tasks(self) -> set[Task]:
        """The tasks whose states decide the flow run's state. By default the terminal tasks, where
        tasks that never decide it (a resource manager's cleanup, ``Task._default_reference``) do
        not count as downstream: as in Prefect 1, a failure inside a resource block fails the flow
        even though the cleanup after it succeeds."""
        if self._reference_tasks:
            return set(self._reference_tasks)
        return set(self._cached("default_reference_tasks", self._default_reference_tasks))

    def _default_reference_tasks(self) -> set[Task]:
        return {t for t in self._order
                if t._default_reference and not any(d._default_reference for d in self.downstream_tasks(t))}

    def set_reference_tasks(self, tasks: Iterable[Task]) -> None:
        chosen = set(tasks)
        missing = [t for t in chosen if t not in self.tasks]
        if missing:
            raise ValueError(f"Reference tasks must belong to the flow; not found: {missing}.")
        self._reference_tasks = chosen

    def parameters(self) -> set[Parameter]:
        """The flow's parameters."""
        return set(self._parameters.values())

    def is_mapped(self, task: Task) -> bool:
        """Whether ``task`` runs once per element of a mapped input."""
        return task in self.mapped_constants or any(e.mapped for e in self._upstream.get(task, ()))

    def _cached(self, name: str, build: Callable[[], Any]) -> Any:
        hit = self._cache.get(name)
        if hit is not None and hit[0] == self._version:
            return hit[1]
        value = build()
        self._cache[name] = (self._version, value)
        return value

    def sorted_tasks(self, root_tasks: Iterable[Task] | None = None) -> tuple[Task, ...]:
        """Every task, upstream before downstream; ties keep the order tasks were added."""
        if root_tasks is not None:
            return tuple(t for t in self._topological() if t in self._descendants(set(root_tasks)))
        return self._topological()

    def _descendants(self, roots: set[Task]) -> set[Task]:
        seen = set(roots)
        stack = list(roots)
        while stack:
            for e in self._downstream.get(stack.pop(), ()):
                if e.downstream_task not in seen:
                    seen.add(e.downstream_task)
                    stack.append(e.downstream_task)
        return seen

    def _topological(self) -> tuple[Task, ...]:
        def build() -> tuple[Task, ...]:
            indegree = {t: len({e.upstream_task for e in self._upstream[t]}) for t in self._order}
            ready = deque(t for t in self._order if indegree[t] == 0)
            ordered: list[Task] = []
            while ready:
                t = ready.popleft()
                ordered.append(t)
                for d in dict.fromkeys(e.downstream_task for e in self._downstream[t]):
                    indegree[d] -= 1
                    if indegree[d] == 0:
                        ready.append(d)
            if len(ordered) != len(self._order):
                raise ValueError(f"Flow {self.name!r} has a cycle; flows must be acyclic.")
            return tuple(ordered)

        result: tuple[Task, ...] = self._cached("topological", build)
        return result

    def __iter__(self) -> Iterator[Task]:
        return iter(self._topological())

    def __len__(self) -> int:
        return len(self.tasks)

    def validate(self) -> None:
        """Check the flow can run: acyclic, references known, every required task argument given."""
        self._cached("validated", self._validate)

    def _validate(self) -> bool:
        self._topological()
        for edge in self.edges:
            if edge.upstream_task not in self.tasks or edge.downstream_task not in self.tasks:
                raise ValueError(f"{edge!r} refers to a task that is not in flow {self.name!r}.")
        if not self._reference_tasks <= self.tasks:
            raise ValueError("Some reference tasks are not in the flow.")
        for t in self._order:
            given = set(self.constants.get(t, {})) | {e.key for e in self._upstream[t] if e.key}
            missing = [name for name, spec in t.inputs().items() if spec["required"] and name not in given]
            if missing:
                raise ValueError(
                    f"Task {t.name!r} (key {self._keys[t]!r}) has no value for argument(s) {', '.join(missing)}: "
                    "pass them when calling the task or with flow.set_dependencies(keyword_tasks=...)."
                )
        return True

    # --- parameters -------------------------------------------------------------------------------
    def resolve_parameters(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every parameter's value for a run: ``given`` plus defaults. Raises ValueError for unknown
        names and missing required parameters."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self._parameters))
        if unknown:
            known = ", ".join(repr(n) for n in sorted(self._parameters)) or "none"
            raise ValueError(
                f"Flow {self.name!r} got unexpected parameter(s) {', '.join(repr(n) for n in unknown)}; "
                f"its parameters are: {known}."
            )
        missing = sorted(n for n, p in self._parameters.items() if p.required and n not in given)
        if missing:
            raise ValueError(
                f"Flow {self.name!r} needs a value for the required parameter(s) {', '.join(repr(n) for n in missing)}."
            )
        values = {n: p.default for n, p in self._parameters.items()}
        values.update(given)
        return values

    # --- running ----------------------------------------------------------------------------------
    def run(
        self,
        parameters: Mapping[str, Any] | None = None,
        run_on_schedule: bool = False,
        runner_cls: type[FlowRunner] | None = None,
        *,
        executor: Any = None,
        task_states: Mapping[Any, State] | None = None,
        initial_task_states: Mapping[Any, State] | None = None,
        observer: RunObserver | None = None,
        context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> State:
        """Run the flow once, here, and return its final state.

        ``state.result`` maps every task to its ``State`` (``state.result[task].result`` is the value).
        Parameters can be given as ``parameters={...}`` or as keyword arguments (``flow.run(x=1)``).
        Unlike Prefect 1, a flow with a schedule still runs exactly once: schedules are the server's
        job (register the flow and start an agent).
        """
        if run_on_schedule:
            raise ValueError(
                "flow.run() runs a flow once. To run it on its schedule, register it "
                "(flow.register(project=...)) and start an agent: the Flowdeck server creates the scheduled runs."
            )
        values = dict(parameters or {})
        values.update(kwargs)
        resolved = self.resolve_parameters(values)
        self.validate()
        from flowdeck.engine.flow_runner import FlowRunner

        runner = (runner_cls or FlowRunner)(flow=self, observer=observer)
        return runner.run(
            parameters=resolved,
            executor=executor if executor is not None else self.executor,
            task_states=task_states,
            initial_task_states=initial_task_states,
            context=context,
        )

    # --- serialization, visualization, registration ----------------------------------------------
    def default_storage(self) -> Storage:
        """Where an agent finds this flow when no storage was given: this module, or this file."""
        from flowdeck.storage import File, Module

        module, file = self._defined_in
        if module and module != "__main__" and not module.startswith("<") and not module.startswith("__flowdeck"):
            return Module(module)
        if file:
            return File(str(Path(file).resolve()))
        raise ValueError(
            f"Cannot tell where flow {self.name!r} is defined (no module or file): pass storage=Module(...) "
            "or storage=File(...) to Flow()."
        )

    def serialize(self, build: bool = False) -> dict[str, Any]:
        """The registration metadata the server stores (tasks, edges, parameters, schedule, storage,
        labels, run_config, sla_policies). Stable: the same flow gives the same dict.

        Prefect 1's keys come too, for code that reads them: ``__version__`` (the SDK's),
        ``name``, ``type`` (the flow's class), ``reference_tasks`` (``[{"slug": key}]``) and, per
        task, ``slug`` (its key) and ``max_retries``; the server accepts and ignores them.
        ``build`` is Prefect 1's: Flowdeck storage has nothing to build, so it changes nothing.
        """
        import flowdeck
        from flowdeck.core.serialization import serialize_flow

        metadata = serialize_flow(self)
        for item in metadata["tasks"]:
            item["slug"] = item["key"]
            item["max_retries"] = item["retries"]
        metadata["__version__"] = flowdeck.__version__
        metadata["name"] = self.name
        metadata["type"] = f"{type(self).__module__}.{type(self).__qualname__}"
        metadata["reference_tasks"] = [{"slug": key} for key in sorted(self.key_of(t) for t in self.reference_tasks())]
        return metadata

    def to_dot(self, flow_state: State | None = None, horizontal: bool = False) -> str:
        """The task graph in Graphviz DOT (colored by task state when ``flow_state`` is given)."""
        from flowdeck.utilities.graphviz import flow_to_dot

        return flow_to_dot(self, flow_state=flow_state, horizontal=horizontal)

    def visualize(
        self,
        flow_state: State | None = None,
        filename: str | Path | None = None,
        format: str | None = None,  # noqa: A002 — Prefect 1 spelling
        horizontal: bool = False,
    ) -> Path:
        """Write the graph as a DOT file and, for ``format`` png/svg/pdf…, render it with Graphviz.

        ``filename`` without an extension gets ``.dot`` (and ``.<format>`` for the image); default: the
        flow's name in the temporary directory. Rendering needs Graphviz's ``dot`` program; without it
        a ``RuntimeError`` says how to install it (the DOT file is written anyway). Returns the path of
        the image, or of the DOT file for ``format`` None/"dot".
        """
        from flowdeck.utilities.graphviz import visualize

        return visualize(self, flow_state=flow_state, filename=filename, format=format, horizontal=horizontal)

    def register(self, project: str, *, client: Any = None, **client_kwargs: Any) -> str:
        """Register this flow's metadata with Flowdeck under ``project``; returns the version id.

        Unchanged metadata reuses the existing version. ``client`` defaults to ``flowdeck.client.Client()``
        (configured from ``FLOWDECK_API_URL``/``FLOWDECK_API_KEY`` or ``flowdeck login``).
        """
        if client is None:
            from flowdeck.client import Client

            client = Client(**client_kwargs)
        version, _created = client.register_flow(project=project, name=self.name, metadata=self.serialize())
        return str(version["id"])


__all__ = ["Flow", "slugify"]
