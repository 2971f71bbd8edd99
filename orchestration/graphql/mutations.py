"""GraphQL mutations for the UI's actions on runs, versions, schedules and projects: small adapters
over :mod:`orchestration.services` with the accounts mutations' conventions (errors in the payload,
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
from orchestration.models import STATE_TYPES, StateType
from orchestration.services import flows as flow_services
from orchestration.services import projects as project_services
from orchestration.services import runs as run_services
from orchestration.services import schedules as schedule_services

from .types import FlowRunType, FlowType, FlowVersionType, ProjectType, ScheduleType

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
        if state_type not in STATE_TYPES:
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


# --- The flow page: versions and schedules --------------------------------------------------------
# Thin adapters over orchestration.services.flows and .schedules, as the REST version and schedule
# views call them: the flow is looked up with the action the service checks (another workspace's
# or a hidden id is ``not_found``, a Viewer's ``permission_denied``); the service authorizes again,
# audits and sends the live event.


def _flow_for(context: GraphQLContext, workspace: str, flow_id: str, action: str) -> tuple[Principal, Any]:
    actor = _actor(context, workspace)
    return actor, selectors.access_flow(actor, flow_id, action)


class PinFlowVersion(BaseMutation):
    """Make a version the one new runs use, whatever is registered later (Developer and up)."""

    class Arguments:
        workspace = graphene.String(required=True)
        flow_id = graphene.ID(required=True)
        version_id = graphene.ID(required=True)

    flow = graphene.Field(FlowType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, flow_id: str, version_id: str) -> PinFlowVersion:
        actor, flow = _flow_for(context, workspace, flow_id, "flow:register")
        version = selectors.access_flow_version(actor, flow, version_id)
        flow_services.flow_pin_version(actor=actor, flow=flow, version=version)
        return cls(flow=selectors.access_flow(actor, flow.pk), errors=[])


class UnpinFlowVersion(BaseMutation):
    """New runs use the newest unarchived version again."""

    class Arguments:
        workspace = graphene.String(required=True)
        flow_id = graphene.ID(required=True)

    flow = graphene.Field(FlowType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, flow_id: str) -> UnpinFlowVersion:
        actor, flow = _flow_for(context, workspace, flow_id, "flow:register")
        flow_services.flow_unpin_version(actor=actor, flow=flow)
        return cls(flow=selectors.access_flow(actor, flow.pk), errors=[])


class SetFlowVersionArchived(BaseMutation):
    """Archive a version (new runs no longer use it; a pin on it is lifted) or restore it."""

    class Arguments:
        workspace = graphene.String(required=True)
        flow_id = graphene.ID(required=True)
        version_id = graphene.ID(required=True)
        archived = graphene.Boolean(required=True)

    flow_version = graphene.Field(FlowVersionType)
    flow = graphene.Field(FlowType, description="The flow as the change left it (its active version may move).")

    @classmethod
    def perform(
        cls, context: GraphQLContext, workspace: str, flow_id: str, version_id: str, archived: bool
    ) -> SetFlowVersionArchived:
        actor, flow = _flow_for(context, workspace, flow_id, "flow:register")
        version = selectors.access_flow_version(actor, flow, version_id)
        version = flow_services.flow_version_archive(actor=actor, version=version, archived=archived)
        return cls(flow_version=version, flow=selectors.access_flow(actor, flow.pk), errors=[])


class SetSchedulePaused(BaseMutation):
    """Pause a schedule (its future runs no agent holds yet are deleted) or resume it (no catch-up on
    the pause)."""

    class Arguments:
        workspace = graphene.String(required=True)
        flow_id = graphene.ID(required=True)
        id = graphene.ID(required=True, description="The schedule's id.")
        paused = graphene.Boolean(required=True)

    schedule = graphene.Field(ScheduleType)

    @classmethod
    def perform(
        cls, context: GraphQLContext, workspace: str, flow_id: str, id: str, paused: bool
    ) -> SetSchedulePaused:
        actor, flow = _flow_for(context, workspace, flow_id, "project:write")
        schedule = selectors.access_schedule(actor, flow, id)
        schedule = schedule_services.schedule_set_active(actor=actor, schedule=schedule, is_active=not paused)
        return cls(schedule=schedule, errors=[])


# --- Projects -------------------------------------------------------------------------------------
# Over orchestration.services.projects, as the REST project views: Developers create and rename;
# restricting or opening one is for Owners and Admins (the service decides).


def _project_payload(actor: Principal, project_id: Any) -> Any:
    """The project as ``projects`` lists it (its unarchived flows loaded), or None once the actor
    can no longer see it."""
    return selectors.projects_with_flows(actor).filter(pk=project_id).first()


class CreateProject(BaseMutation):
    """Create a project (Developer and up); names are unique in the workspace."""

    class Arguments:
        workspace = graphene.String(required=True)
        name = graphene.String(required=True)
        description = graphene.String()
        is_restricted = graphene.Boolean(description="Visible only to Owners, Admins and those it is shared with.")

    project = graphene.Field(ProjectType)

    @classmethod
    def perform(
        cls, context: GraphQLContext, workspace: str, name: str, description: str | None = None,
        is_restricted: bool | None = None,
    ) -> CreateProject:
        actor = _actor(context, workspace)
        project = project_services.project_create(
            actor=actor, name=name, description=description or "", is_restricted=bool(is_restricted)
        )
        return cls(project=_project_payload(actor, project.pk), errors=[])


class UpdateProject(BaseMutation):
    """Rename a project, change its description, or restrict or open it; only the given fields change."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)
        name = graphene.String()
        description = graphene.String()
        is_restricted = graphene.Boolean(description="Owners and Admins only.")

    project = graphene.Field(ProjectType)

    @classmethod
    def perform(
        cls, context: GraphQLContext, workspace: str, id: str, name: str | None = None,
        description: str | None = None, is_restricted: bool | None = None,
    ) -> UpdateProject:
        actor = _actor(context, workspace)
        project = selectors.access_project(actor, id, "project:write")
        project = project_services.project_update(
            actor=actor, project=project, name=name, description=description, is_restricted=is_restricted
        )
        return cls(project=_project_payload(actor, project.pk), errors=[])
