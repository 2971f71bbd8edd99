"""Proposing a state for a run: lock the run, let the policy's rules accept, reject or rewrite the
proposal, then record it — all in one transaction (Prefect's orchestration model, STYLE.md).

This module is the skeleton: it owns locking, the expected-version check (D3), history rows, the
denormalised current state and the event. The rules and policies (terminal states absorb, claims
are exclusive, retries, cancellation wins, concurrency slots…) plug in through ``policy``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import transaction
from django.db.models.functions import Now

from accounts.authz import NotFound, Principal
from core.errors import Conflict
from core.events import publish
from orchestration.models import FlowRun, FlowRunState, StateType, TaskRun, TaskRunState


class SetStateStatus(enum.StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    WAIT = "WAIT"
    ABORT = "ABORT"


@dataclass
class ProposedState:
    type: str
    name: str = ""
    message: str = ""
    result_ref: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in StateType.values:
            from core.errors import InvalidInput

            raise InvalidInput(
                f"'{self.type}' is not a state type; use one of {', '.join(StateType.values)}.",
                code="invalid_state",
                details={"type": ["Invalid."]},
            )
        if not self.name:
            self.name = self.type.title()


@dataclass
class OrchestrationResult:
    status: SetStateStatus
    state_type: str
    state_name: str
    state_version: int
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Policy(Protocol):
    def apply(self, context: Any) -> None: ...


@dataclass
class Context:
    """What rules see and may change: the locked run, its current and proposed state."""

    run: FlowRun | TaskRun
    proposed: ProposedState
    actor: Principal | None
    attempt: int | None = None
    status: SetStateStatus = SetStateStatus.ACCEPT
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def reject(self, reason: str, **details: Any) -> None:
        self.status, self.reason = SetStateStatus.REJECT, reason
        self.details.update(details)

    def abort(self, reason: str, **details: Any) -> None:
        self.status, self.reason = SetStateStatus.ABORT, reason
        self.details.update(details)

    def wait(self, reason: str, **details: Any) -> None:
        self.status, self.reason = SetStateStatus.WAIT, reason
        self.details.update(details)


class AcceptAll:
    """The empty policy (every proposal accepted). The engine's CorePolicy replaces it."""

    def apply(self, context: Context) -> None:
        return None


def _default_policy() -> Policy:
    try:
        from .policies import CorePolicy  # the full rule set, when present
    except ImportError:
        return AcceptAll()
    return CorePolicy()


def _result(run: FlowRun | TaskRun, context: Context) -> OrchestrationResult:
    return OrchestrationResult(
        status=context.status,
        state_type=run.state_type,
        state_name=run.state_name,
        state_version=run.state_version,
        reason=context.reason,
        details=context.details,
    )


@transaction.atomic
def flow_run_set_state(
    *,
    actor: Principal | None,
    flow_run_id: Any,
    state: ProposedState,
    workspace_id: Any,
    expected_version: int | None = None,
    attempt: int | None = None,
    policy: Policy | None = None,
) -> OrchestrationResult:
    """Propose ``state`` for a flow run of ``workspace_id``. Stale ``expected_version`` → 409."""
    run = FlowRun.objects.for_workspace(workspace_id).select_for_update().filter(pk=flow_run_id).first()
    if run is None:
        raise NotFound()
    if expected_version is not None and expected_version != run.state_version:
        raise Conflict(
            "The run's state changed since you read it; re-read and retry.",
            code="stale_state_version",
            details={"state_type": run.state_type, "state_name": run.state_name, "state_version": run.state_version},
        )
    context = Context(run=run, proposed=state, actor=actor, attempt=attempt)
    (policy or _default_policy()).apply(context)
    if context.status is not SetStateStatus.ACCEPT:
        return _result(run, context)
    _record(run, context.proposed, FlowRunState, "flow_run")
    publish(
        workspace_id=run.workspace_id,
        type="flow_run.state_changed",
        data={"id": str(run.pk), "state_type": run.state_type, "state_name": run.state_name, "state_version": run.state_version},
        flow_run_id=run.pk,
    )
    return _result(run, context)


@transaction.atomic
def task_run_set_state(
    *,
    actor: Principal | None,
    task_run_id: Any,
    state: ProposedState,
    workspace_id: Any,
    expected_version: int | None = None,
    attempt: int | None = None,
    policy: Policy | None = None,
) -> OrchestrationResult:
    run = TaskRun.objects.for_workspace(workspace_id).select_for_update().filter(pk=task_run_id).first()
    if run is None:
        raise NotFound()
    if expected_version is not None and expected_version != run.state_version:
        raise Conflict(
            "The task run's state changed since you read it; re-read and retry.",
            code="stale_state_version",
            details={"state_type": run.state_type, "state_name": run.state_name, "state_version": run.state_version},
        )
    context = Context(run=run, proposed=state, actor=actor, attempt=attempt)
    (policy or _default_policy()).apply(context)
    if context.status is not SetStateStatus.ACCEPT:
        return _result(run, context)
    _record(run, context.proposed, TaskRunState, "task_run")
    publish(
        workspace_id=run.workspace_id,
        type="task_run.state_changed",
        data={"id": str(run.pk), "flow_run_id": str(run.flow_run_id), "task_key": run.task_key,
              "map_index": run.map_index, "state_type": run.state_type, "state_name": run.state_name},
        flow_run_id=run.flow_run_id,
    )
    return _result(run, context)


def _record(run: FlowRun | TaskRun, state: ProposedState, history_model: Any, fk: str) -> None:
    history = history_model.objects.unscoped().create(
        workspace_id=run.workspace_id, type=state.type, name=state.name, message=state.message,
        result_ref=state.result_ref, details=state.details, timestamp=Now(), **{fk: run},
    )
    history.refresh_from_db(fields=["timestamp"])
    run.state_type = state.type
    run.state_name = state.name
    run.state_message = state.message
    run.state_timestamp = history.timestamp
    run.state_version += 1
    run.save(update_fields=["state_type", "state_name", "state_message", "state_timestamp", "state_version"])
