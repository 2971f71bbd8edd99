"""Temporary resources around a block of tasks (Prefect 1's ``prefect.resource_manager``).

Decorate a class that has ``__init__(...)``, ``setup(self) -> resource`` (optional) and
``cleanup(self, resource)``; use it as a context manager inside a flow::

    @resource_manager
    class TempDir:
        def __init__(self, prefix):
            self.prefix = prefix

        def setup(self):
            return tempfile.mkdtemp(prefix=self.prefix)

        def cleanup(self, path):
            shutil.rmtree(path)

    with Flow("example") as flow:
        with TempDir("run-") as path:      # path: the setup task, its result is the resource
            data = download(path)
            report = summarize(data)

Three tasks join the flow: *init* (builds the manager object from the arguments, which may be task
results), *setup* (calls ``setup()``; every task of the block without an upstream task in the block
runs after it) and *cleanup* (calls ``cleanup(resource)`` after every task of the block finished,
whatever their states, as long as init and setup succeeded; it is skipped otherwise). The cleanup
task does not decide the flow run's state: a failure inside the block fails the run, a failed
cleanup alone does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, overload

from flowdeck.context import context
from flowdeck.core.task import Task
from flowdeck.engine import signals
from flowdeck.tasks.core.function import FunctionTask

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow
    from flowdeck.engine.state import State


class ResourceInitTask(FunctionTask):
    """Builds the resource manager object (calls the decorated class with the block's arguments)."""


class ResourceSetupTask(Task):
    """Calls the manager's ``setup()``; its result is the resource."""

    def run(self, mgr: Any) -> Any:
        return mgr.setup()


class ResourceCleanupTask(Task):
    """Calls the manager's ``cleanup(resource)``."""

    # Cleaning up does not decide whether the flow's work succeeded.
    _default_reference: ClassVar[bool] = False

    def run(self, mgr: Any, resource: Any = None) -> None:
        mgr.cleanup(resource)


def resource_cleanup_trigger(upstream_states: Mapping[Any, State]) -> bool:
    """The cleanup's trigger: run once every upstream task finished, whatever its state, provided the
    manager was built (``mgr``) and the resource set up (``resource``); otherwise skip the cleanup
    (there is nothing to clean)."""
    for edge, state in upstream_states.items():
        if not state.is_finished():
            raise signals.TRIGGERFAIL(
                'Trigger was "resource_cleanup_trigger" but some of the upstream tasks were not finished.'
            )
        step = {"mgr": "init", "resource": "setup"}.get(getattr(edge, "key", None) or "")
        if step is None:
            continue
        if state.is_skipped():
            raise signals.SKIP(f"Resource manager {step} skipped.")
        if not state.is_successful():
            raise signals.SKIP(f"Resource manager {step} failed.")
    return True


class ResourceContext:
    """The ``with`` block of one use of a resource manager (made by calling a ``ResourceManager``).

    ``init_task``, ``setup_task`` (None when the class has no ``setup``) and ``cleanup_task`` are the
    three tasks it added to ``flow``. Entering returns ``setup_task``.
    """

    def __init__(self, init_task: Task, setup_task: Task | None, cleanup_task: Task, flow: Flow) -> None:
        self.init_task = init_task
        self.setup_task = setup_task
        self.cleanup_task = cleanup_task
        self._flow = flow
        self._before: set[Task] = set()
        self._previous: Any = None

    def __enter__(self) -> Task | None:
        self._previous = context.get("resource")
        context["resource"] = self
        # The tasks added to the flow while the block is open are the block's tasks.
        self._before = set(self._flow.tasks)
        return self.setup_task

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._previous is None:
            context.pop("resource", None)
        else:
            context["resource"] = self._previous
        if exc_type is not None:
            return
        from flowdeck.core.parameter import Parameter

        flow = self._flow
        own = {self.init_task, self.setup_task, self.cleanup_task}
        block = [
            t for t in flow.get_tasks() if t not in self._before and t not in own and not isinstance(t, Parameter)
        ]
        members = set(block)
        for child in block:
            upstream = flow.upstream_tasks(child)
            if self.setup_task is not None and not upstream & members and self.setup_task not in upstream:
                child.set_upstream(self.setup_task, flow=flow)
            downstream = flow.downstream_tasks(child)
            if not downstream & members and self.cleanup_task not in downstream:
                child.set_downstream(self.cleanup_task, flow=flow)


class ResourceManager:
    """Makes resource blocks from ``resource_class`` (usually made with the ``resource_manager``
    decorator). Calling it inside a flow adds the init, setup and cleanup tasks and returns the
    ``ResourceContext`` to use in a ``with`` statement.

    Args:
        resource_class: builds the manager object; it has ``cleanup(resource)`` and may have ``setup()``.
        name: the init task's name (default: the class name); setup and cleanup are ``<name>.setup``
            and ``<name>.cleanup``.
        init_task_kwargs / setup_task_kwargs / cleanup_task_kwargs: ``Task`` arguments of each task.
    """

    def __init__(
        self,
        resource_class: Callable[..., Any],
        name: str | None = None,
        init_task_kwargs: Mapping[str, Any] | None = None,
        setup_task_kwargs: Mapping[str, Any] | None = None,
        cleanup_task_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(resource_class):
            raise TypeError("resource_manager needs a class (or another callable returning the manager object).")
        if not callable(getattr(resource_class, "cleanup", None)):
            raise TypeError(f"{resource_class!r} needs a cleanup(self, resource) method to be a resource manager.")
        self.resource_class = resource_class
        self.name = name if name is not None else getattr(resource_class, "__name__", "resource")
        self.init_task_kwargs: dict[str, Any] = dict(init_task_kwargs or {})
        self.setup_task_kwargs: dict[str, Any] = dict(setup_task_kwargs or {})
        self.cleanup_task_kwargs: dict[str, Any] = dict(cleanup_task_kwargs or {})
        self.init_task_kwargs.setdefault("name", self.name)
        self.setup_task_kwargs.setdefault("name", f"{self.name}.setup")
        self.setup_task_kwargs.setdefault("checkpoint", False)  # a live resource is rarely picklable
        self.cleanup_task_kwargs.setdefault("name", f"{self.name}.cleanup")
        self.cleanup_task_kwargs.setdefault("trigger", resource_cleanup_trigger)
        self.cleanup_task_kwargs.setdefault("skip_on_upstream_skip", False)
        self.cleanup_task_kwargs.setdefault("checkpoint", False)

    def __repr__(self) -> str:
        return f"<ResourceManager: {self.name}>"

    def __call__(self, *args: Any, flow: Flow | None = None, **kwargs: Any) -> ResourceContext:
        found = flow if flow is not None else context.get("flow")
        if found is None:
            raise ValueError(
                f"Could not infer an active Flow for resource {self.name!r}: use it inside a `with Flow(...):` "
                "block or pass flow=…."
            )
        init_task = ResourceInitTask(self.resource_class, **self.init_task_kwargs)(*args, flow=found, **kwargs)
        setup_task: Task | None = None
        if callable(getattr(self.resource_class, "setup", None)):
            setup_task = ResourceSetupTask(**self.setup_task_kwargs)(init_task, flow=found)
        cleanup = ResourceCleanupTask(**self.cleanup_task_kwargs)
        if setup_task is not None:
            cleanup_task = cleanup(init_task, setup_task, flow=found)
        else:
            cleanup_task = cleanup(init_task, flow=found)
        return ResourceContext(init_task, setup_task, cleanup_task, found)


@overload
def resource_manager(resource_class: Callable[..., Any], /) -> ResourceManager: ...


@overload
def resource_manager(
    resource_class: None = None,
    /,
    *,
    name: str | None = None,
    init_task_kwargs: Mapping[str, Any] | None = None,
    setup_task_kwargs: Mapping[str, Any] | None = None,
    cleanup_task_kwargs: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], ResourceManager]: ...


def resource_manager(
    resource_class: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    init_task_kwargs: Mapping[str, Any] | None = None,
    setup_task_kwargs: Mapping[str, Any] | None = None,
    cleanup_task_kwargs: Mapping[str, Any] | None = None,
) -> ResourceManager | Callable[[Callable[..., Any]], ResourceManager]:
    """Turn a class into a ``ResourceManager``: ``@resource_manager`` or ``@resource_manager(name=...)``
    (see the module documentation)."""

    def make(cls: Callable[..., Any]) -> ResourceManager:
        return ResourceManager(
            cls,
            name=name,
            init_task_kwargs=init_task_kwargs,
            setup_task_kwargs=setup_task_kwargs,
            cleanup_task_kwargs=cleanup_task_kwargs,
        )

    if resource_class is None:
        return make
    return make(resource_class)


__all__ = [
    "ResourceContext",
    "ResourceManager",
    "ResourceInitTask",
    "ResourceSetupTask",
    "ResourceCleanupTask",
    "resource_cleanup_trigger",
    "resource_manager",
]
