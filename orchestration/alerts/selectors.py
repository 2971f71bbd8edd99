"""Every read of SLA alerts: which flows and runs a policy covers, the duration a flow usually
takes, and (for people) the policies, incidents, channels and deliveries they may see.

Reads for the evaluator take a workspace id and run inside the caller's tenant scope; reads for
people take a :class:`~accounts.authz.Principal` and leave out restricted projects they cannot see.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from orchestration.models import Flow, FlowRun, SlaPolicy, StateType
from orchestration.selectors.runs import with_labels


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
