"""Flow of flows: tasks that start runs of registered flows on the Flowdeck server, wait for them
and read their task results (Prefect 1's ``prefect.tasks.prefect.flow_run``)::

    from flowdeck import Flow
    from flowdeck.tasks.flowdeck import create_flow_run, get_task_run_result, wait_for_flow_run

    with Flow("parent") as flow:
        child_id = create_flow_run(flow_name="child", project_name="etl", parameters={"day": "2030-01-01"})
        child = wait_for_flow_run(child_id, raise_final_state=True)
        total = get_task_run_result(child_id, "total", upstream_tasks=[child])

Inside a flow run an agent started, the child is linked to the run that created it, and the web
app shows the link both ways. The idempotency key then
defaults to one derived from the parent run, the task and its map index, so a retried task (or a
restarted parent) finds the child it created before instead of starting another.

The tasks act with the flow run's API key (``FLOWDECK_API_KEY``). An agent's key may only claim and
report runs, so give the parent run a key allowed to start runs: a Developer service account's
key in ``FLOWDECK_CHILD_RUNS_API_KEY``, listed in the flow's ``run_config`` env (the agent copies
its value from its own environment; it never travels through Flowdeck).

Results: Flowdeck keeps only where a task's result is (its ``Result`` location), never the value,
so :func:`get_task_run_result` reads the value from there: the child's task needs a ``Result`` on
storage this process can read, e.g. ``@task(result=LocalResult(dir="/shared/results"))``, or a
``PrefectResult`` for a small JSON value (then pass ``result=PrefectResult()`` to read it). (The
default checkpoints of an agent's runs are removed once the run completes.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from flowdeck.client import Client
from flowdeck.client.errors import PermissionDeniedError
from flowdeck.client.info import state_from_server
from flowdeck.context import context
from flowdeck.engine import signals
from flowdeck.engine.results.base import Result
from flowdeck.utilities.tasks import task

#: An API key for these tasks instead of the run's own (see the module docstring).
ENV_CHILD_RUNS_API_KEY = "FLOWDECK_CHILD_RUNS_API_KEY"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
MAX_IDEMPOTENCY_KEY = 200
# Waiting polls often at first (most children are short) and less as the wait goes on.
FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 10.0

def _logger() -> logging.Logger:
    found = context.get("logger")
    return found if isinstance(found, logging.Logger) else logging.getLogger("flowdeck.tasks.flowdeck")


@contextmanager
def _client() -> Iterator[Client]:
    """A client with the key these tasks act with; a refusal says which key to give instead."""
    client = Client(api_key=os.environ.get(ENV_CHILD_RUNS_API_KEY) or None)
    try:
        yield client
    except PermissionDeniedError as exc:
        raise PermissionDeniedError(
            f"{exc} Flow-of-flows tasks act with the run's API key; set {ENV_CHILD_RUNS_API_KEY} to a key allowed "
            "to start and read runs (a Developer service account's) and list it in the flow's run_config env.",
            status=exc.status, code=exc.code, details=exc.details,
        ) from exc
    finally:
        client.close()


class FlowRunView:
    """What the server says about a flow run at one moment (Prefect 1's ``FlowRunView``): ``flow_run_id``,
    ``name``, ``flow_id``, ``state`` (an engine state: ``state.is_successful()`` …), ``state_type``,
    ``parameters``, ``labels``, ``parent_flow_run_id``, ``task_runs`` (the server's task-run records).
    :meth:`get_latest` reads it again."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = dict(record)
        self.flow_run_id: str = str(record["id"])
        self.name: str = str(record.get("name") or "")
        self.flow_id: str = str(record.get("flow") or "")
        self.state_type: str = str(record.get("state_type") or "")
        self.state_name: str = str(record.get("state_name") or "")
        self.state = state_from_server(self.state_type, record.get("state_name"), record.get("state_message"))
        self.parameters: dict[str, Any] = dict(record.get("parameters") or {})
        self.labels: list[str] = list(record.get("labels") or [])
        parent = record.get("parent_flow_run")
        self.parent_flow_run_id: str | None = str(parent) if parent else None
        self.task_runs: list[dict[str, Any]] = [dict(t) for t in record.get("task_runs") or []]

    @classmethod
    def from_flow_run_id(cls, flow_run_id: str) -> FlowRunView:
        with _client() as client:
            return cls(client.get_flow_run(str(flow_run_id)))

    def get_latest(self) -> FlowRunView:
        return FlowRunView.from_flow_run_id(self.flow_run_id)

    @property
    def is_finished(self) -> bool:
        return self.state_type in TERMINAL

    def __repr__(self) -> str:
        return f"FlowRunView(flow_run_id={self.flow_run_id!r}, name={self.name!r}, state={self.state!r})"


def parent_links() -> dict[str, str]:
    """The parent of a run created from here: set only inside a flow run an agent started (elsewhere
    ``flow_run_id`` is a local run's, unknown to the server). The task run is left out: the engine
    knows its own task runs by key and map index, not by the server's ids (``context.task_run_id``
    is the engine's name for one), so only an API caller that knows the id links it."""
    if not context.get("running_with_backend") or not context.get("flow_run_id"):
        return {}
    return {"parent_flow_run": str(context["flow_run_id"])}


def default_idempotency_key() -> str | None:
    """Inside an agent's flow run: one key per parent run, task and map index, so every attempt of
    the task (and a restart of the parent) finds the child its first attempt created."""
    if not context.get("running_with_backend") or not context.get("flow_run_id"):
        return None
    task_key = context.get("task_key") or context.get("task_name") or ""
    map_index = context.get("map_index")  # None outside a map, as in Prefect 1
    key = f"child-of:{context['flow_run_id']}:{task_key}:{-1 if map_index is None else map_index}"
    if len(key) > MAX_IDEMPOTENCY_KEY:
        key = f"child-of:{context['flow_run_id']}:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


@task
def create_flow_run(
    flow_id: str | None = None,
    flow_name: str | None = None,
    project_name: str = "",
    parameters: Mapping[str, Any] | None = None,
    labels: Iterable[str] | None = None,
    run_name: str | None = None,
    idempotency_key: str | None = None,
    scheduled_start_time: datetime | None = None,
) -> str:
    """Create a run of a registered flow (``flow_id``, or ``flow_name`` with ``project_name`` when
    the name is used in several projects) and return its id. ``labels`` replace the flow's;
    ``scheduled_start_time`` (time-zone aware) makes it a scheduled run instead of a quick run."""
    if (flow_id is None) == (flow_name is None):
        raise ValueError("Give create_flow_run either flow_id or flow_name (with project_name if needed).")
    logger = _logger()
    with _client() as client:
        if flow_id is None:
            flow_id = str(client.get_flow(str(flow_name), project=project_name or None)["id"])
        links = parent_links()
        run = client.create_flow_run(
            str(flow_id), parameters=dict(parameters) if parameters is not None else None,
            labels=list(labels) if labels is not None else None, name=run_name,
            idempotency_key=idempotency_key or default_idempotency_key(),
            scheduled_start=scheduled_start_time, **links,
        )
        url = f"{client.api_url}/w/{client.workspace}/runs/{run['id']}"
    logger.info("Created flow run %r (%s)%s", run.get("name"), url,
                " as a child of this run" if links else "")
    return str(run["id"])


def _stream_new_states(client: Client, flow_run_id: str, after: int | None, name: str) -> int | None:
    """Log the states the run passed through since ``after`` (a state id); the new cursor."""
    logger = _logger()
    while True:
        page = client.list_flow_run_states(flow_run_id, after=after)
        found = page.get("results") or []
        for item in found:
            message = f": {item['message']}" if item.get("message") else ""
            logger.info("Flow run %r: entered state <%s>%s", name, item.get("name") or item.get("type"), message)
        after = page.get("next_after", after)
        if not found:
            return after


def _stream_new_logs(client: Client, flow_run_id: str, after: int | None, name: str) -> int | None:
    """Repeat the run's log lines since ``after`` (a sequence number) here; the new cursor."""
    logger = _logger()
    while True:
        page = client.list_logs(flow_run_id, after_sequence=after, limit=1000)
        found = page.get("results") or []
        for line in found:
            logger.log(int(line.get("level") or logging.INFO), "Flow run %r: %s", name, line.get("message"))
        after = page.get("next_after_sequence", after)
        if not found:
            return after


@task
def wait_for_flow_run(
    flow_run_id: str,
    stream_states: bool = True,
    stream_logs: bool = False,
    raise_final_state: bool = False,
    max_poll_seconds: float = MAX_POLL_SECONDS,
) -> FlowRunView:
    """Wait until the run ``flow_run_id`` is in a final state and return it as a :class:`FlowRunView`.
    ``stream_states`` / ``stream_logs`` repeat its states / log lines in this task's log as they
    come. ``raise_final_state``: end this task as the child ended: a child that did not complete
    (failed, crashed or cancelled) fails the task (a ``FAIL`` whose result is the view)."""
    flow_run_id = str(flow_run_id)
    state_cursor: int | None = None
    log_cursor: int | None = None
    delay = FIRST_POLL_SECONDS
    with _client() as client:
        view = FlowRunView(client.get_flow_run(flow_run_id))
        while True:
            if stream_states:
                state_cursor = _stream_new_states(client, flow_run_id, state_cursor, view.name)
            if stream_logs:
                log_cursor = _stream_new_logs(client, flow_run_id, log_cursor, view.name)
            if view.is_finished:
                break
            time.sleep(delay)
            delay = min(delay * 1.5, max(max_poll_seconds, FIRST_POLL_SECONDS))
            view = FlowRunView(client.get_flow_run(flow_run_id))
    if raise_final_state and view.state_type != "COMPLETED":
        raise signals.FAIL(f"Child flow run {view.name!r} ({view.flow_run_id}) ended {view.state_type}: "
                           f"{view.state.message or 'no message'}", result=view)
    return view


def _read(location: str, result: Result | None) -> Any:
    """The value stored at ``location`` by the child's ``Result``: ``result`` when given (the same
    kind and serializer as the child's), else a ``LocalResult`` for an absolute path, or the default
    checkpoint directory for a relative one."""
    from flowdeck.engine.results.checkpoint import CheckpointResult, is_checkpoint_ref
    from flowdeck.engine.results.local_result import LocalResult

    if result is None:
        if Path(location).is_absolute():
            result = LocalResult(dir=str(Path(location).parent), validate_dir=False)
        elif is_checkpoint_ref(location):
            result = CheckpointResult()
        else:
            raise ValueError(f"Cannot tell how to read the result at {location!r}; pass result= (the Result the "
                             "child's task uses).")
    try:
        return result.read(location).value
    except ValueError as exc:
        raise ValueError(
            f"{exc}. The child's task result must be on storage this process can read (e.g. "
            "@task(result=LocalResult(dir=<a shared directory>))): the default checkpoints of a run are "
            "removed once it completes.") from exc


def _task_runs_of(record: Mapping[str, Any], task_slug: str) -> list[dict[str, Any]]:
    return [dict(t) for t in record.get("task_runs") or [] if t.get("task_key") == task_slug]


@task
def get_task_run_result(
    flow_run_id: str,
    task_slug: str,
    map_index: int = -1,
    poll_time: float = 5,
    result: Result | None = None,
) -> Any:
    """The result of task ``task_slug`` (its key) in the run ``flow_run_id``, once that task run has
    completed (checked every ``poll_time`` seconds). ``map_index`` picks one child of a mapped
    task; -1 for a mapped task gives the list of its children's results. The value is read from
    where the child's ``Result`` stored it (see the module docstring); ``result`` says how to read
    it when that is not a ``LocalResult`` with the default serializer (e.g. ``PrefectResult()``,
    whose location is the value itself, or the child's ``S3Result``)."""
    flow_run_id = str(flow_run_id)
    logger = _logger()
    with _client() as client:
        while True:
            record = client.get_flow_run(flow_run_id)
            found = _task_runs_of(record, task_slug)
            chosen = [t for t in found if t.get("map_index", -1) == map_index]
            children = sorted((t for t in found if t.get("map_index", -1) >= 0), key=lambda t: int(t["map_index"]))
            run_over = record.get("state_type") in TERMINAL
            # A mapped task's parent is done (Mapped) once it has mapped, before its children are:
            # its results are its children's, complete once the run is over.
            mapped = map_index == -1 and any(t.get("state_name") == "Mapped" for t in chosen)
            wanted = children if mapped or (map_index == -1 and children) else chosen
            finished = bool(wanted) and all(t.get("state_type") in TERMINAL for t in wanted)
            if run_over if mapped else finished:
                break
            if run_over:
                where = f"{task_slug!r}" + (f"[{map_index}]" if map_index >= 0 else "")
                raise ValueError(f"Flow run {flow_run_id} ended {record.get('state_type')} without a finished "
                                 f"task run {where}.")
            logger.debug("Task run %r of flow run %s is not finished; waiting %ss", task_slug, flow_run_id, poll_time)
            time.sleep(poll_time)
    values = []
    for task_run in wanted:
        label = f"{task_slug}" + (f"[{task_run['map_index']}]" if int(task_run.get("map_index", -1)) >= 0 else "")
        if task_run.get("state_type") != "COMPLETED":
            raise ValueError(f"Task run {label} of flow run {flow_run_id} ended {task_run.get('state_type')}, "
                             "so it has no result.")
        location = str(task_run.get("result_ref") or "")
        if not location:
            raise ValueError(f"Task run {label} of flow run {flow_run_id} stored no result: give the task a "
                             "Result (e.g. @task(result=LocalResult(dir=<a shared directory>))).")
        values.append(_read(location, result))
    return values if wanted is children and map_index == -1 else values[0]


__all__ = [
    "ENV_CHILD_RUNS_API_KEY",
    "FlowRunView",
    "create_flow_run",
    "default_idempotency_key",
    "get_task_run_result",
    "parent_links",
    "wait_for_flow_run",
]
