"""GraphQL mutations for the UI's actions on runs: small adapters over
:mod:`orchestration.services.runs` with the accounts mutations' conventions (errors in the payload,
one savepoint each, ``not_authenticated`` for anonymous callers).

Each one resolves the workspace from its slug and the run or flow from its id through the same
selectors as the reads (another workspace's or a restricted project's id is ``not_found``), checking
the action there (``flow_run:create`` or ``flow_run:update``: a Viewer gets ``permission_denied``),
then calls one service, which authorizes again and applies the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import graphene

from accounts import selectors as account_selectors
from accounts.authz import Principal, principal_for_user
from accounts.graphql.context import GraphQLContext
from accounts.graphql.mutations import BaseMutation
from core.errors import Conflict, InvalidInput
from orchestration import selectors
from orchestration.models import StateType
from orchestration.services import runs as run_services

from .types import FlowRunType

MAX_LABELS = 50
MAX_LABEL_LENGTH = 100
MAX_MESSAGE_LENGTH = 2000


def _actor(context: GraphQLContext, slug: str) -> Principal:
    workspace = account_selectors.workspace_get_for_user(context.user, slug)  # type: ignore[arg-type]
    return principal_for_user(context.user, workspace, context.ip_address)


def _labels(labels: Any) -> list[str] | None:
    if labels is None:
        return None
    if len(labels) > MAX_LABELS or any(not label or len(label) > MAX_LABEL_LENGTH for label in labels):
        raise InvalidInput(
            f"At most {MAX_LABELS} labels of 1 to {MAX_LABEL_LENGTH} characters.",
            code="invalid_labels",
            details={"labels": ["Invalid."]},
        )
    return list(labels)


class QuickRun(BaseMutation):
    """Start a run of a flow's active version now, with these parameters."""

    class Arguments:
        workspace = graphene.String(required=True)
        flow_id = graphene.ID(required=True)
        parameters = graphene.JSONString(description="A JSON object: parameter name → value.")
        labels = graphene.List(graphene.NonNull(graphene.String), description="Null: the version's labels.")
        name = graphene.String(description="Chosen by the server when left out.")

    flow_run = graphene.Field(FlowRunType)

    @classmethod
    def perform(
        cls,
        context: GraphQLContext,
        workspace: str,
        flow_id: str,
        parameters: Any = None,
        labels: list[str] | None = None,
        name: str | None = None,
    ) -> QuickRun:
        actor = _actor(context, workspace)
        flow = selectors.access_flow(actor, flow_id, "flow_run:create")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidInput(
                "Parameters must be a JSON object of name → value.",
                code="invalid_parameters",
                details={"parameters": ["Not an object."]},
            )
        run, _created = run_services.flow_run_create(
            actor=actor, flow=flow, parameters=parameters, labels=_labels(labels), name=name or None,
            created_by_kind="user",
        )
        return cls(flow_run=run, errors=[])


class _RunAction(BaseMutation):
    class Meta:
        abstract = True

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    @staticmethod
    def _run(context: GraphQLContext, workspace: str, id: str) -> tuple[Principal, Any]:
        actor = _actor(context, workspace)
        return actor, selectors.access_flow_run(actor, id, "flow_run:update")

    @classmethod
    def _apply(cls, service: Callable[..., Any], context: GraphQLContext, workspace: str, id: str) -> Any:
        """Call ``service`` on the run; return the run as the action left it."""
        actor, run = cls._run(context, workspace, id)
        service(actor=actor, flow_run=run)
        return selectors.access_flow_run(actor, run.pk)


class CancelFlowRun(_RunAction):
    """Cancel a run: an agent's run goes to Cancelling until the agent confirms; one no agent holds
    is Cancelled at once."""

    flow_run = graphene.Field(FlowRunType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> CancelFlowRun:
        return cls(flow_run=cls._apply(run_services.flow_run_cancel, context, workspace, id), errors=[])


class RestartFlowRun(_RunAction):
    """Run a failed (or crashed, or cancelled) run again as a new attempt: its unfinished tasks and
    those downstream of them go back to Pending."""

    flow_run = graphene.Field(FlowRunType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> RestartFlowRun:
        return cls(flow_run=cls._apply(run_services.flow_run_restart, context, workspace, id), errors=[])


class MarkFlowRun(_RunAction):
    """Set a run's state by hand (e.g. mark a stuck run Failed), through the orchestration rules."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)
        state_type = graphene.String(required=True, description="One of the state types, e.g. FAILED.")
        message = graphene.String()

    flow_run = graphene.Field(FlowRunType)

    @classmethod
    def perform(
        cls, context: GraphQLContext, workspace: str, id: str, state_type: str, message: str | None = None
    ) -> MarkFlowRun:
        actor, run = cls._run(context, workspace, id)
        if state_type not in StateType.values:
            raise InvalidInput(
                f"'{state_type}' is not a state type; use one of {', '.join(StateType.values)}.",
                code="invalid_state",
                details={"state_type": ["Invalid."]},
            )
        if message is not None and len(message) > MAX_MESSAGE_LENGTH:
            raise InvalidInput(
                f"A message is at most {MAX_MESSAGE_LENGTH} characters.", details={"message": ["Too long."]}
            )
        result = run_services.flow_run_mark(actor=actor, flow_run=run, state_type=state_type, message=message or "")
        if str(getattr(result, "status", "ACCEPT")) != "ACCEPT":
            raise Conflict(
                f"Could not mark the run {state_type}: {getattr(result, 'reason', '')}",
                code="transition_refused",
                details={"state_type": getattr(result, "state_type", None)},
            )
        return cls(flow_run=selectors.access_flow_run(actor, run.pk), errors=[])


class DeleteFlowRun(_RunAction):
    """Delete a run with its task runs, states and logs."""

    ok = graphene.Boolean(required=True)
    failure_values: ClassVar[dict[str, Any]] = {"ok": False}

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> DeleteFlowRun:
        actor, run = cls._run(context, workspace, id)
        run_services.flow_run_delete(actor=actor, flow_run=run)
        return cls(ok=True, errors=[])
