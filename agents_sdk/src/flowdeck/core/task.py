"""``Task``: one unit of work in a flow (Prefect 1's ``prefect.core.task.Task``).

Subclass it and implement ``run()``, or decorate a function with ``@task``. Inside ``with Flow(...)``,
calling a task (``add(1, x)``) *binds* a copy of it into the flow: task arguments become edges,
other values become constants; ``.map(...)`` binds a mapped copy. Outside a flow, call ``.run()``.

Operators build tasks too, as in Prefect 1: ``x + 1``, ``3 * x``, ``x > y``, ``x & y``, ``pair[0]``
(see ``flowdeck.tasks.core.operators``); ``==`` stays identity (``x.is_equal(y)`` compares results) and
``a | b`` makes ``b`` run after ``a``.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from flowdeck import triggers as _triggers
from flowdeck.context import context
from flowdeck.utilities.edges import unwrap
from flowdeck.utilities.logging import get_logger

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow
    from flowdeck.engine.results import Result
    from flowdeck.engine.state import State

StateHandler = Callable[[Any, "State", "State"], "State | None"]
CacheValidator = Callable[["State", Mapping[str, Any], Mapping[str, Any] | None], bool]
CacheKeyFn = Callable[[Any, Mapping[str, Any]], "str | None"]

# run() signatures per Task class: binding a task inspects it, and flows bind thousands of copies.
_SIGNATURES: dict[type, inspect.Signature] = {}

# Names the functional API uses itself: a task's run() cannot take them as arguments.
RESERVED_ARGUMENTS = frozenset({"upstream_tasks", "mapped", "task_args", "flow"})


def _check_run_signature(run: Callable[..., Any], owner: str) -> None:
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):
        return
    reserved = RESERVED_ARGUMENTS.intersection(signature.parameters)
    if reserved:
        raise ValueError(
            f"{owner}.run() uses reserved argument name(s) {sorted(reserved)}; rename them "
            f"(the functional API uses {sorted(RESERVED_ARGUMENTS)} itself)."
        )
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        raise ValueError(f"{owner}.run() takes *args, which tasks do not support: name each argument.")


def _seconds(value: timedelta | float | int | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be a datetime.timedelta or a number of seconds, not {type(value).__name__}.")
    if seconds < 0:
        raise ValueError(f"{what} cannot be negative.")
    return seconds


class Task:
    """A unit of work. Override ``run()``; configure behaviour with the constructor arguments.

    Args:
        name: shown in the UI and logs (default: the class name).
        slug: the task's key in its flow (default: the name slugified, made unique per flow).
        tags: labels; tasks created inside ``with flowdeck.tags(...)`` get those too.
        max_retries / retries: how many times to retry after a failure (same thing, two spellings).
        retry_delay: wait between attempts (``timedelta`` or seconds; default 0).
        timeout: seconds (or ``timedelta``) after which the run ends ``TimedOut``.
        trigger: decides from upstream states whether to run (default ``all_successful``).
        skip_on_upstream_skip: end ``Skipped`` when an upstream task was skipped (default True).
        cache_for: reuse a successful result for this long (``Cached`` state).
        cache_validator: ``fn(cached_state, inputs, parameters) -> bool``; default ``duration_only``.
        cache_key: share a cache between tasks under this name.
        cache_key_fn: ``fn(context, inputs) -> str | None``: cache per computed key (None: no caching).
        checkpoint: write the result with ``result`` (default: when a result is configured).
        result: a ``Result`` (e.g. ``LocalResult(dir=...)``) to checkpoint to.
        target: a location template; when a result exists there the task is not run (``Cached``).
        state_handlers: ``fn(task, old_state, new_state) -> State | None`` called on every change.
        on_failure: ``fn(task, state)`` called when the task fails.
        log_stdout: send ``print()`` output of ``run()`` to the logger.
        nout: number of outputs, so ``a, b = task()`` works.
    """

    #: Set by subclasses that must not be retried/cached by default, such as ``Parameter``.
    _is_parameter: ClassVar[bool] = False
    #: False for tasks whose state should not decide the flow run's state unless the flow names them
    #: reference tasks (a resource manager's cleanup task, as in Prefect 1).
    _default_reference: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__:
            _check_run_signature(cls.__dict__["run"], cls.__name__)

    def __init__(
        self,
        name: str | None = None,
        slug: str | None = None,
        tags: Iterable[str] | None = None,
        max_retries: int | None = None,
        retry_delay: timedelta | float | None = None,
        timeout: timedelta | float | None = None,
        trigger: Callable[..., bool] | None = None,
        skip_on_upstream_skip: bool = True,
        cache_for: timedelta | None = None,
        cache_validator: CacheValidator | None = None,
        cache_key: str | None = None,
        checkpoint: bool | None = None,
        state_handlers: Iterable[StateHandler] | None = None,
        on_failure: Callable[[Any, State], None] | None = None,
        log_stdout: bool = False,
        result: Result | None = None,
        target: str | Callable[..., str] | None = None,
        nout: int | None = None,
        *,
        retries: int | None = None,
        cache_key_fn: CacheKeyFn | None = None,
    ) -> None:
        self.name: str = name if name is not None else type(self).__name__
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("A task name must be a non-empty string.")
        self.slug: str | None = slug
        self._explicit_slug = slug is not None
        self.tags: set[str] = set(tags or ()) | set(context.get("tags", ()))

        if retries is not None and max_retries is not None and retries != max_retries:
            raise ValueError("Give either retries or max_retries (they are the same setting), not both.")
        count = retries if retries is not None else max_retries
        count = 0 if count is None else count
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"retries must be an integer ≥ 0, not {count!r}.")
        self.max_retries: int = count
        delay = _seconds(retry_delay, "retry_delay")
        self.retry_delay: timedelta | None = timedelta(seconds=delay) if delay is not None else None
        timeout_s = _seconds(timeout, "timeout")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout must be a positive number of seconds.")
        # The number as given (Prefect 1 keeps an int an int); a timedelta becomes seconds.
        self.timeout: float | None = timeout if isinstance(timeout, (int, float)) else timeout_s

        self.trigger: Callable[..., bool] = trigger if trigger is not None else _triggers.all_successful
        if not callable(self.trigger):
            raise TypeError("trigger must be a function of the upstream states (see flowdeck.triggers).")
        self.skip_on_upstream_skip = bool(skip_on_upstream_skip)

        if cache_for is not None and not isinstance(cache_for, timedelta):
            raise TypeError("cache_for must be a datetime.timedelta.")
        if cache_key_fn is not None and not callable(cache_key_fn):
            raise TypeError("cache_key_fn must be a function (context, inputs) -> str | None.")
        self.cache_for = cache_for
        self.cache_key = cache_key
        self.cache_key_fn = cache_key_fn
        if cache_validator is None and (cache_for is not None or cache_key_fn is not None):
            from flowdeck.engine.cache_validators import duration_only

            cache_validator = duration_only
        self.cache_validator = cache_validator

        self.checkpoint = checkpoint
        self.result = result
        self.target = target
        self.state_handlers: list[StateHandler] = list(state_handlers or ())
        if not all(callable(h) for h in self.state_handlers):
            raise TypeError("state_handlers must be functions (task, old_state, new_state) -> State | None.")
        self.on_failure = on_failure
        self.log_stdout = bool(log_stdout)
        if nout is not None and (isinstance(nout, bool) or not isinstance(nout, int) or nout < 0):
            raise ValueError("nout must be an integer ≥ 0.")
        self.nout = nout
        self._logger: logging.Logger | None = None

    # --- Prefect-compatible conveniences ----------------------------------------------------------
    @property
    def retries(self) -> int:
        """Alias of ``max_retries``."""
        return self.max_retries

    @retries.setter
    def retries(self, value: int) -> None:
        self.max_retries = value

    @property
    def logger(self) -> logging.Logger:
        """This task's logger (``flowdeck.Task: <name>``)."""
        if self._logger is None or self._logger.name != f"flowdeck.Task: {self.name}":
            self._logger = get_logger(f"Task: {self.name}")
        return self._logger

    @logger.setter
    def logger(self, value: logging.Logger) -> None:
        self._logger = value

    def __repr__(self) -> str:
        return f"<Task: {self.name}>"

    # Identity semantics: tasks are graph nodes, used as dict keys.
    __hash__ = object.__hash__

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The work. Subclasses override it with the arguments they need (the task's inputs)."""
        return None

    # --- copying and binding ----------------------------------------------------------------------
    def copy(self, **task_args: Any) -> Task:
        """A copy of this task (not bound to any flow) with ``task_args`` attributes changed."""
        if "retries" in task_args:
            task_args["max_retries"] = task_args.pop("retries")
        new = copy.copy(self)
        new.tags = set(self.tags) | set(context.get("tags", ()))
        new.state_handlers = list(self.state_handlers)
        new._logger = None
        if not self._explicit_slug:
            new.slug = None
        for key, value in task_args.items():
            if not hasattr(new, key):
                raise AttributeError(
                    f"{key!r} is not an attribute of {type(self).__name__}; it cannot go in task_args."
                )
            if key == "tags":
                value = set(value) | set(context.get("tags", ()))
            if key == "slug":
                new._explicit_slug = value is not None
            if key in ("timeout", "retry_delay"):
                seconds = _seconds(value, key)
                if key == "timeout":
                    value = value if isinstance(value, (int, float)) else seconds
                else:
                    value = timedelta(seconds=seconds) if seconds is not None else None
            setattr(new, key, value)
        return new

    def __call__(
        self,
        *args: Any,
        mapped: bool = False,
        task_args: dict[str, Any] | None = None,
        upstream_tasks: Iterable[Any] | None = None,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Task:
        """Bind a copy of this task into the active flow with these inputs; returns the copy."""
        new = self.copy(**(task_args or {}))
        return new.bind(*args, mapped=mapped, upstream_tasks=upstream_tasks, flow=flow, **kwargs)

    def map(
        self,
        *args: Any,
        upstream_tasks: Iterable[Any] | None = None,
        flow: Flow | None = None,
        task_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Task:
        """Bind a copy that runs once per element of its inputs (``unmapped(x)`` passes ``x`` whole)."""
        new = self.copy(**(task_args or {}))
        return new.bind(*args, mapped=True, upstream_tasks=upstream_tasks, flow=flow, **kwargs)

    def _active_flow(self, flow: Flow | None, action: str) -> Flow:
        found = flow if flow is not None else context.get("flow")
        if found is None:
            raise ValueError(
                f"Could not infer an active Flow while {action} {self!r}: call it inside a `with Flow(...):` "
                f"block or pass flow=…. To run the task's code directly, call `{self.name}.run(...)`."
            )
        return found

    def bind(
        self,
        *args: Any,
        mapped: bool = False,
        upstream_tasks: Iterable[Any] | None = None,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Task:
        """Bind this task (not a copy) into the flow with these inputs; returns the task."""
        from flowdeck.utilities.tasks import as_task, contains_task

        flow = self._active_flow(flow, "binding")
        signature = self._run_signature()
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"Cannot bind task {self.name!r}: {exc}.") from None
        arguments: dict[str, Any] = {}
        for pname, value in bound.arguments.items():
            if signature.parameters[pname].kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            else:
                arguments[pname] = value

        flow.add_task(self)
        mapped_inputs = 0
        for key, raw in arguments.items():
            value, is_mapped, flattened = unwrap(raw, mapped)
            mapped_inputs += is_mapped
            if isinstance(value, Task):
                flow.add_edge(value, self, key=key, mapped=is_mapped, flattened=flattened)
            elif contains_task(value):
                flow.add_edge(as_task(value, flow=flow), self, key=key, mapped=is_mapped, flattened=flattened)
            else:
                flow.add_constant(self, key, value, mapped=is_mapped, flattened=flattened)
        for raw in upstream_tasks or ():
            value, is_mapped, flattened = unwrap(raw, mapped)
            mapped_inputs += is_mapped
            upstream = value if isinstance(value, Task) else as_task(value, flow=flow)
            flow.add_edge(upstream, self, mapped=is_mapped, flattened=flattened)
        if mapped and not mapped_inputs:
            raise ValueError(f"{self.name}.map() needs at least one input to map over (all were unmapped).")
        return self

    def _run_signature(self) -> inspect.Signature:
        cls = type(self)
        found = _SIGNATURES.get(cls)
        if found is None:
            found = _SIGNATURES[cls] = inspect.signature(self.run)
        return found

    # --- dependencies without data -----------------------------------------------------------------
    def set_dependencies(
        self,
        flow: Flow | None = None,
        upstream_tasks: Iterable[Any] | None = None,
        downstream_tasks: Iterable[Any] | None = None,
        keyword_tasks: Mapping[str, Any] | None = None,
        mapped: bool = False,
        validate: bool | None = None,
    ) -> None:
        """Add this task and the given dependencies to the flow (see ``Flow.set_dependencies``)."""
        flow = self._active_flow(flow, "setting dependencies of")
        flow.set_dependencies(
            task=self,
            upstream_tasks=upstream_tasks,
            downstream_tasks=downstream_tasks,
            keyword_tasks=keyword_tasks,
            mapped=mapped,
            validate=validate,
        )

    def set_upstream(self, task: Any, flow: Flow | None = None, key: str | None = None, mapped: bool = False) -> None:
        """Run after ``task`` (with ``key``: receive its result as that argument)."""
        flow = self._active_flow(flow, "setting an upstream of")
        if key is not None:
            flow.set_dependencies(self, keyword_tasks={key: task}, mapped=mapped)
        else:
            flow.set_dependencies(self, upstream_tasks=[task], mapped=mapped)

    def set_downstream(self, task: Any, flow: Flow | None = None, key: str | None = None, mapped: bool = False) -> None:
        """Run before ``task`` (with ``key``: pass this result as that argument)."""
        flow = self._active_flow(flow, "setting a downstream of")
        if key is not None:
            flow.set_dependencies(task, keyword_tasks={key: self}, mapped=mapped)
        else:
            flow.set_dependencies(task, upstream_tasks=[self], mapped=mapped)

    def __rshift__(self, other: Task) -> Task:
        """``a >> b``: b runs after a. Returns b, so ``a >> b >> c`` chains."""
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Task) -> Task:
        """``a << b``: a runs after b. Returns b."""
        self.set_upstream(other)
        return other

    def __or__(self, other: Any) -> Any:
        """``a | b``: b runs after a (Prefect 1's spelling; not a logical or, see ``or_``). Returns b."""
        self.set_dependencies(downstream_tasks=[other])
        return other

    def __ror__(self, other: Any) -> Task:
        """``x | task`` with a non-task ``x``: the task runs after ``x`` (made a task). Returns the task."""
        self.set_dependencies(upstream_tasks=[other])
        return self

    # --- indexing the result -------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Task:
        """A task returning ``result[key]`` (``pair[0]`` inside a flow); it checkpoints like this task."""
        from flowdeck.tasks.core.operators import GetItem

        flow = self._active_flow(None, "indexing")
        label = key.name if isinstance(key, Task) else repr(key)
        getter = GetItem(name=f"{self.name}[{label}]", checkpoint=self.checkpoint, result=self.result)
        return getter.bind(self, key, flow=flow)

    # --- operators: each binds an operator task into the active flow ---------------------------------
    # ``==``/``!=`` are deliberately not among them: tasks compare by identity (flows keep them in
    # sets and dicts), so equality is ``is_equal``/``is_not_equal``, as in Prefect 1.
    def _operator(self, name: str, *operands: Any) -> Task:
        from flowdeck.tasks.core import operators

        operator_task: Task = getattr(operators, name)()
        return operator_task.bind(*operands, flow=self._active_flow(None, f"applying {name} to"))

    def is_equal(self, other: Any) -> Task:
        """A task returning ``self == other``."""
        return self._operator("Equal", self, other)

    def is_not_equal(self, other: Any) -> Task:
        """A task returning ``self != other``."""
        return self._operator("NotEqual", self, other)

    def not_(self) -> Task:
        """A task returning ``not self``."""
        return self._operator("Not", self)

    def and_(self, other: Any) -> Task:
        """A task returning ``bool(self and other)`` (same as ``self & other``)."""
        return self._operator("And", self, other)

    def or_(self, other: Any) -> Task:
        """A task returning ``bool(self or other)`` (``|`` sets a dependency instead)."""
        return self._operator("Or", self, other)

    def __add__(self, other: Any) -> Task:
        return self._operator("Add", self, other)

    def __radd__(self, other: Any) -> Task:
        return self._operator("Add", other, self)

    def __sub__(self, other: Any) -> Task:
        return self._operator("Sub", self, other)

    def __rsub__(self, other: Any) -> Task:
        return self._operator("Sub", other, self)

    def __mul__(self, other: Any) -> Task:
        return self._operator("Mul", self, other)

    def __rmul__(self, other: Any) -> Task:
        return self._operator("Mul", other, self)

    def __truediv__(self, other: Any) -> Task:
        return self._operator("Div", self, other)

    def __rtruediv__(self, other: Any) -> Task:
        return self._operator("Div", other, self)

    def __floordiv__(self, other: Any) -> Task:
        return self._operator("FloorDiv", self, other)

    def __rfloordiv__(self, other: Any) -> Task:
        return self._operator("FloorDiv", other, self)

    def __mod__(self, other: Any) -> Task:
        return self._operator("Mod", self, other)

    def __rmod__(self, other: Any) -> Task:
        return self._operator("Mod", other, self)

    def __pow__(self, other: Any) -> Task:
        return self._operator("Pow", self, other)

    def __rpow__(self, other: Any) -> Task:
        return self._operator("Pow", other, self)

    def __and__(self, other: Any) -> Task:
        return self._operator("And", self, other)

    def __rand__(self, other: Any) -> Task:
        return self._operator("And", other, self)

    def __xor__(self, other: Any) -> Task:
        return self._operator("Xor", self, other)

    def __rxor__(self, other: Any) -> Task:
        return self._operator("Xor", other, self)

    def __gt__(self, other: Any) -> Task:
        return self._operator("GreaterThan", self, other)

    def __ge__(self, other: Any) -> Task:
        return self._operator("GreaterThanOrEqual", self, other)

    def __lt__(self, other: Any) -> Task:
        return self._operator("LessThan", self, other)

    def __le__(self, other: Any) -> Task:
        return self._operator("LessThanOrEqual", self, other)

    def __iter__(self) -> Iterator[Task]:
        if self.nout is None:
            raise TypeError(
                f"Task {self.name!r} is not iterable. If it returns several values, give nout "
                f"(e.g. @task(nout=2)) so that `a, b = {self.name}()` works."
            )
        for i in range(self.nout):
            yield self[i]

    def inputs(self) -> dict[str, dict[str, Any]]:
        """The arguments of ``run()``: ``{name: {"required": bool}}``."""
        signature = self._run_signature()
        return {
            name: {"required": p.default is inspect.Parameter.empty}
            for name, p in signature.parameters.items()
            if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        }


__all__ = ["Task", "StateHandler", "CacheValidator", "CacheKeyFn", "RESERVED_ARGUMENTS"]
