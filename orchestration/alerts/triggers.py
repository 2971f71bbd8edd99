"""The evaluator's trigger: a run that starts or ends is evaluated at once (for its flow), not at
the next tick, so a failure reaches people within seconds.

The engine calls :func:`flow_run_state_changed` after it records a flow run's RUNNING or terminal
state. Nothing happens before commit; then the runs of the transaction (one per flow) are handed to
this process's trigger thread, which never holds up the request that committed (a broker that is
down takes seconds to refuse a publish; G3): it sends one Celery task per run when there is a
worker, or evaluates the runs itself in embedded mode (eager Celery, no worker). Runs of workspaces
without an unpaused policy are dropped there. A dispatch that fails, or a queue that is full, is
logged and never fails anything: the periodic tick catches up.

Most workspaces have no policy, and most state changes would pay a background transaction only to
learn that. So the thread remembers, for a few seconds (``NO_POLICY_SECONDS``), the workspaces it
found without one, and the engine's call returns at once for them. A policy saved in this process
clears that memory (a ``post_save`` receiver, after commit); one saved in another server process is seen here within
``NO_POLICY_SECONDS``, and the periodic tick evaluates it anyway.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models.signals import post_save

from orchestration.models import TERMINAL_STATES, FlowRun, StateType

logger = logging.getLogger(__name__)

TRIGGERING = frozenset({StateType.RUNNING, *TERMINAL_STATES})
# Batches (one per commit) waiting for the trigger thread; beyond this they are dropped (the tick
# catches up), so a stuck broker never grows memory.
MAX_PENDING = 10_000
_LOG_EVERY_SECONDS = 60
NO_POLICY_SECONDS = 5.0
_MAX_REMEMBERED = 10_000


class _WorkspacesWithoutPolicies:
    """Workspaces recently found with no unpaused policy, and when (monotonic seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[Any, float] = {}

    def holds(self, workspace_id: Any) -> bool:
        found_at = self.seen.get(workspace_id)
        return found_at is not None and time.monotonic() - found_at < NO_POLICY_SECONDS

    def remember(self, workspace_ids: set[Any]) -> None:
        now = time.monotonic()
        with self.lock:
            if len(self.seen) + len(workspace_ids) > _MAX_REMEMBERED:
                self.seen.clear()
            self.seen.update(dict.fromkeys(workspace_ids, now))

    def forget(self, workspace_id: Any) -> None:
        with self.lock:
            self.seen.pop(workspace_id, None)


_without_policies = _WorkspacesWithoutPolicies()


def _policy_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Once a policy's save commits, its workspace's runs trigger again (paused or not: a wrong
    "may have policies" costs one query in the trigger thread, a wrong "has none" a missed trigger)."""
    workspace_id = instance.workspace_id
    transaction.on_commit(lambda: _without_policies.forget(workspace_id))


post_save.connect(_policy_saved, sender="orchestration.SlaPolicy", dispatch_uid="alerts.triggers.policy_saved")


class _Dispatch:
    """One per transaction: the runs to evaluate once it commits, one per flow."""

    def __init__(self) -> None:
        self.runs: dict[Any, Any] = {}

    def __call__(self) -> None:
        dispatch(list(self.runs.values()))


def flow_run_state_changed(run: FlowRun) -> None:
    """``run`` entered a new state (called by the engine, inside its transaction)."""
    if run.state_type not in TRIGGERING or _without_policies.holds(run.workspace_id):
        return
    pending = _pending()
    if pending is None:
        pending = _Dispatch()
        transaction.on_commit(pending)
    pending.runs.setdefault(run.flow_id, run.pk)


def _pending() -> _Dispatch | None:
    """The dispatch this transaction already registered (a rolled-back transaction drops it with its
    other on-commit callbacks, so it is never reused by the next one)."""
    for entry in reversed(connection.run_on_commit):
        if isinstance(entry[1], _Dispatch):  # (savepoint ids, callback, robust)
            found: _Dispatch = entry[1]
            return found
    return None


class _TriggerThread:
    """This process's one trigger thread and its bounded queue (started on first use, again in a
    forked child)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: queue.Queue[list[Any]] = queue.Queue(maxsize=MAX_PENDING)
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.last_logged = 0.0

    def submit(self, run_ids: list[Any]) -> None:
        with self.lock:
            if self.pid != os.getpid():
                self.queue, self.thread, self.pid = queue.Queue(maxsize=MAX_PENDING), None, os.getpid()
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, daemon=True, name="flowdeck-sla-trigger")
                self.thread.start()
        try:
            self.queue.put_nowait(run_ids)
        except queue.Full:
            self.log("the SLA trigger queue is full; runs %s are left to the next tick", run_ids)

    def log(self, message: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self.last_logged >= _LOG_EVERY_SECONDS:  # one line a minute while something is down
            self.last_logged = now
            logger.warning(message, *args, exc_info=exc_info)

    def _loop(self) -> None:
        while True:
            batch = self.queue.get()
            try:
                close_old_connections()
                _handle(batch)
            except Exception:
                self.log("the SLA trigger could not hand over runs %s; the next tick catches up", batch,
                         exc_info=True)
            finally:
                connection.close()  # back to the pool: an idle thread holds no connection
                self.queue.task_done()

    def wait_idle(self) -> None:
        """Until every batch submitted so far is handled (tests; a shutdown that wants to drain)."""
        self.queue.join()


_worker = _TriggerThread()


def dispatch(run_ids: list[Any]) -> None:
    """Have each run's flow evaluated, off the caller's thread. Never raises."""
    if run_ids:
        try:
            _worker.submit(list(run_ids))
        except Exception:
            logger.exception("could not queue the SLA evaluation of runs %s; the next tick catches up", run_ids)


def wait_idle() -> None:
    _worker.wait_idle()


def _handle(run_ids: list[Any]) -> None:
    wanted = _with_policies(run_ids)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        from .evaluator import evaluate_flow_run

        for run_id in wanted:  # embedded mode: no worker, evaluate here
            try:
                evaluate_flow_run(run_id)
            except Exception:
                logger.exception("SLA evaluation of run %s failed; the next tick catches up", run_id)
        return
    from .tasks_evaluate import evaluate_flow_run_task

    for run_id in wanted:
        # No publish retries: the tick is the retry.
        evaluate_flow_run_task.apply_async(args=[str(run_id)], retry=False)


def _with_policies(run_ids: list[Any]) -> list[Any]:
    """Those of ``run_ids`` whose workspace has an unpaused policy (most state changes have none)."""
    from django.db.models import Exists, OuterRef

    from core.tenancy import rls_bypass

    from .models import SlaPolicy

    with transaction.atomic(), rls_bypass():
        policies = SlaPolicy.objects.unscoped().filter(workspace_id=OuterRef("workspace_id"), is_paused=False)
        rows = list(FlowRun.objects.unscoped().filter(pk__in=run_ids).annotate(watched=Exists(policies))
                    .values_list("pk", "workspace_id", "watched"))
    _without_policies.remember({workspace_id for _, workspace_id, watched in rows if not watched})
    return [pk for pk, _, watched in rows if watched]
