"""Every read of SLA alerts: which flows and runs a policy covers, the duration a flow usually
takes, and (for people) the policies, incidents, channels and deliveries they may see.

Reads for the evaluator take a workspace id and run inside the caller's tenant scope; reads for
people take a :class:`~accounts.authz.Principal` and leave out restricted projects they cannot see.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber

from accounts.authz import NotFound, Principal, authorize
from core.errors import InvalidInput
from orchestration.models import (
    Flow,
    FlowRun,
    Incident,
    IncidentEvent,
    IncidentRun,
    PolicyChannel,
    SlaPolicy,
    StateType,
)
from orchestration.selectors.flows import access_flow
from orchestration.selectors.projects import access_project, parse_id, sees_all_projects, visible_projects_q
from orchestration.selectors.runs import with_labels

from .models import PolicyKind, Severity


def policy_flows_q(policy: SlaPolicy, path: str = "") -> Q:
    """Rows (flows when ``path`` is "", runs when it is "flow") that fall under the policy's scope:
    its flow, its project's flows, or every flow of the workspace."""
    prefix = f"{path}__" if path else ""
    if policy.flow_id is not None:
        return Q(**{f"{path}_id" if path else "pk": policy.flow_id})
    if policy.project_id is not None:
        return Q(**{f"{prefix}project_id": policy.project_id})
    return Q()


def policy_flows(policy: SlaPolicy) -> QuerySet[Flow]:
    """The flows a policy covers today (archived flows left out), by name."""
    return (
        Flow.objects.for_workspace(policy.workspace_id)
        .filter(policy_flows_q(policy), is_archived=False)
        .select_related("project")
        .order_by("name", "id")
    )


def runs_with_labels(runs: QuerySet[FlowRun], labels: Iterable[str]) -> QuerySet[FlowRun]:
    """``runs`` narrowed to those carrying every one of ``labels`` (the run filter's own rule)."""
    return with_labels(runs, list(labels))


def policy_runs(policy: SlaPolicy) -> QuerySet[FlowRun]:
    """The runs a policy covers: its scope's flows, narrowed by its labels."""
    runs = FlowRun.objects.for_workspace(policy.workspace_id).filter(policy_flows_q(policy, "flow"))
    return runs_with_labels(runs, policy.labels or [])


def duration_p95_seconds(workspace_id: Any, flow_ids: Iterable[Any], history_size: int) -> dict[Any, tuple[float, int]]:
    """For each flow with at least one success, the 95th percentile of the run time (start to end)
    of its last ``history_size`` COMPLETED runs, and how many runs that was: {flow id: (p95, n)}.
    Nearest rank, so the answer is a duration some run really took. One query for all flows: only
    the last ``history_size`` runs of each leave the database."""
    ids = list(flow_ids)
    if not ids:
        return {}
    recent = (
        FlowRun.objects.for_workspace(workspace_id)
        .filter(flow_id__in=ids, state_type=StateType.COMPLETED, start_time__isnull=False, end_time__isnull=False)
        .annotate(recency=Window(RowNumber(), partition_by=[F("flow_id")], order_by=[F("end_time").desc(),
                                                                                     F("id").desc()]))
        .filter(recency__lte=history_size)
        .values_list("flow_id", "start_time", "end_time")
    )
    durations: dict[Any, list[float]] = {}
    for flow_id, start, end in recent:
        durations.setdefault(flow_id, []).append((end - start).total_seconds())
    result: dict[Any, tuple[float, int]] = {}
    for flow_id, values in durations.items():
        values.sort()
        rank = -(-95 * len(values) // 100)  # ceil(0.95 n), 1-based
        result[flow_id] = (values[rank - 1], len(values))
    return result


# --- people-facing reads ------------------------------------------------------------------------

ACTIVE_STATUSES = ("open", "acknowledged")
INCIDENT_STATUSES = ("open", "acknowledged", "resolved", "active")
PREVIEW_FLOW_LIMIT = 200


def _visible_scope_q(principal: Principal, project_path: str, flow_path: str) -> Q:
    """Rows whose project (through ``project_path``) and flow (through ``flow_path``) are either
    unset or in projects the principal may see. Owners and Admins see everything."""
    if sees_all_projects(principal):
        return Q()  # combined with ``|`` below, an empty Q would vanish rather than match all
    return (Q(**{f"{project_path}__isnull": True}) | visible_projects_q(principal, project_path)) & (
        Q(**{f"{flow_path}__isnull": True}) | visible_projects_q(principal, f"{flow_path}__project")
    )


def policies_visible_to(principal: Principal) -> QuerySet[SlaPolicy]:
    """The workspace's SLA policies the principal may see (those scoped to a restricted project it
    cannot see are left out), by name, with their scope's names, channel ids and open incident count
    loaded in the same two queries whatever their number."""
    authorize(principal, "sla:read", principal.workspace)
    active = _count_of(Incident.objects.for_workspace(principal.workspace).filter(status__in=ACTIVE_STATUSES),
                       "policy")
    channels = PolicyChannel.objects.for_workspace(principal.workspace).order_by("id")
    return (
        SlaPolicy.objects.for_workspace(principal.workspace)
        .filter(_visible_scope_q(principal, "project", "flow"))
        .select_related("project", "flow")
        .annotate(active_incident_count=active)
        .prefetch_related(Prefetch("policy_channels", queryset=channels))
        .order_by("name", "id")
    )


def access_policy(principal: Principal, policy_id: Any, action: str = "sla:read") -> SlaPolicy:
    """The policy, if the principal may do ``action`` to it: NotFound for a malformed id, a missing
    policy, another workspace's and one scoped to a restricted project the principal cannot see."""
    authorize(principal, action, principal.workspace)
    policy = policies_visible_to(principal).filter(pk=parse_id(policy_id)).first()
    if policy is None:
        raise NotFound()
    return policy


def policy_channel_ids(policy: SlaPolicy) -> list[Any]:
    """The ids of the channels ``policy`` notifies (prefetched by :func:`policies_visible_to`)."""
    return [link.channel_id for link in policy.policy_channels.all()]


def _count_of(rows: QuerySet, parent: str) -> Any:
    """How many of ``rows`` point at the outer row through ``parent``: a correlated subquery, so a
    list's counts cost no query of their own and no join that multiplies its rows."""
    counted = rows.filter(**{parent: OuterRef("pk")}).order_by().values(parent).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def incidents_visible_to(
    principal: Principal, *, status: str | None = None, flow_id: Any = None, flow_run_id: Any = None,
    policy_id: Any = None,
) -> QuerySet[Incident]:
    """The workspace's incidents the principal may see, newest first: those about a flow, or from a
    policy scoped to a project, that the principal cannot see are left out. ``status`` is one of
    open, acknowledged, resolved or active (open or acknowledged); a malformed id matches nothing."""
    authorize(principal, "sla:read", principal.workspace)
    # Hidden when its flow, or its policy's project or flow, is in a project the principal cannot see.
    incidents = (
        Incident.objects.for_workspace(principal.workspace)
        .filter(_visible_scope_q(principal, "policy__project", "flow"))
        .filter(_visible_scope_q(principal, "policy__project", "policy__flow"))
    )
    if status is not None:
        if status not in INCIDENT_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(INCIDENT_STATUSES)}.",
                               details={"status": ["Invalid."]})
        incidents = incidents.filter(status__in=ACTIVE_STATUSES if status == "active" else [status])
    for value, field in ((flow_id, "flow_id"), (policy_id, "policy_id"), (flow_run_id, "incident_runs__flow_run_id")):
        if value is None:
            continue
        try:
            incidents = incidents.filter(**{field: parse_id(value)})
        except NotFound:
            return incidents.none()
    run_count = _count_of(IncidentRun.objects.for_workspace(principal.workspace), "incident")
    return incidents.select_related("flow", "policy").annotate(run_count=run_count).order_by("-opened_at", "-id")


def access_incident(principal: Principal, incident_id: Any, action: str = "sla:read") -> Incident:
    """The incident, if the principal may do ``action`` to it (NotFound like :func:`access_policy`)."""
    authorize(principal, action, principal.workspace)
    incident = incidents_visible_to(principal).filter(pk=parse_id(incident_id)).first()
    if incident is None:
        raise NotFound()
    return incident


def incident_runs_for(principal: Principal, incident_ids: Iterable[Any], limit: int) -> dict[Any, list[FlowRun]]:
    """For each incident, the first ``limit`` runs it covers that the principal may see (newest
    scheduled first), with their flows: one query for all the incidents."""
    ids = list(incident_ids)
    if not ids or limit <= 0:
        return {incident_id: [] for incident_id in ids}
    rows = (
        IncidentRun.objects.for_workspace(principal.workspace)
        .filter(incident_id__in=ids)
        .filter(visible_projects_q(principal, "flow_run__flow__project"))
        .annotate(rank=Window(RowNumber(), partition_by=[F("incident_id")],
                              order_by=[F("flow_run__scheduled_start").desc(), F("flow_run_id").desc()]))
        .filter(rank__lte=limit)
        .select_related("flow_run__flow")
        .order_by("incident_id", "rank")
    )
    found: dict[Any, list[FlowRun]] = {incident_id: [] for incident_id in ids}
    for row in rows:
        found.setdefault(row.incident_id, []).append(row.flow_run)
    return found


def incident_events_for(workspace_id: Any, incident_ids: Iterable[Any]) -> dict[Any, list[IncidentEvent]]:
    """Each incident's timeline, oldest first, for incidents the caller already holds: one query."""
    ids = list(incident_ids)
    found: dict[Any, list[IncidentEvent]] = {incident_id: [] for incident_id in ids}
    if ids:
        for event in IncidentEvent.objects.for_workspace(workspace_id).filter(incident_id__in=ids).order_by("at", "id"):
            found[event.incident_id].append(event)
    return found


def alert_badges(principal: Principal) -> dict[Any, tuple[int, str]]:
    """{flow id: (active incidents, worst severity)} for the flows the principal may see that have
    an open or acknowledged incident: about the flow itself, or listing one of its runs (a
    correlated incident, "no agent covers gpu", has no flow of its own but names runs of many)."""
    active = incidents_visible_to(principal, status="active")
    pairs = set(active.filter(flow__isnull=False).order_by().values_list("flow_id", "id", "severity"))
    pairs |= set(
        IncidentRun.objects.for_workspace(principal.workspace)
        .filter(incident__in=active.order_by().values("pk"))
        .filter(visible_projects_q(principal, "flow_run__flow__project"))
        .order_by()
        .values_list("flow_run__flow_id", "incident_id", "incident__severity")
        .distinct()
    )
    badges: dict[Any, tuple[int, str]] = {}
    for flow_id, _, severity in pairs:
        count, worst = badges.get(flow_id, (0, Severity.WARNING))
        badges[flow_id] = (count + 1, Severity.CRITICAL if Severity.CRITICAL in (worst, severity) else worst)
    return badges


def policy_preview(
    principal: Principal, *, kind: str | None = None, project_id: Any = None, flow_id: Any = None,
    history_size: int | None = None,
) -> dict[str, Any]:
    """What a policy with this scope would cover, before it is saved: the flows (those the principal
    may see, by name, at most :data:`PREVIEW_FLOW_LIMIT`), how many there are and, for a duration
    policy, each flow's p95 of its last ``history_size`` successful runs with the sample size (the
    number the predictive warning would use today). A project or flow the principal cannot see is
    an error on that field, as when saving."""
    authorize(principal, "sla:read", principal.workspace)
    scope = SlaPolicy(workspace=principal.workspace)
    details: dict[str, list[str]] = {}
    if kind is not None and kind not in PolicyKind.values:
        details["kind"] = [f"Must be one of {', '.join(PolicyKind.values)}."]
    if project_id is not None and flow_id is not None:
        details["flow_id"] = ["Give a project or a flow, not both."]
    for value, field, loader in ((project_id, "project_id", access_project), (flow_id, "flow_id", access_flow)):
        if value is None:
            continue
        try:
            setattr(scope, field, loader(principal, value).pk)
        except NotFound:
            details[field] = [f"No {field[:-3]} with this id in this workspace."]
    size = 20 if history_size is None else history_size
    if isinstance(size, bool) or not isinstance(size, int) or not 5 <= size <= 1000:
        details["history_size"] = ["Between 5 and 1000 runs."]
    if details:
        field, messages = next(iter(details.items()))
        raise InvalidInput(f"{field}: {messages[0]}", code="invalid_policy", details=details)
    flows = policy_flows(scope).filter(visible_projects_q(principal, "project"))
    listed = list(flows[:PREVIEW_FLOW_LIMIT])
    result: dict[str, Any] = {"flows": listed, "flow_count": flows.count(), "p95": []}
    if kind == PolicyKind.DURATION:
        p95 = duration_p95_seconds(principal.workspace.pk, [flow.pk for flow in listed], size)
        result["p95"] = [
            {"flow_id": flow.pk, "flow_name": flow.name, "p95_seconds": p95.get(flow.pk, (None, 0))[0],
             "sample_size": p95.get(flow.pk, (None, 0))[1]}
            for flow in listed
        ]
    return result
