"""The evaluator: one pass finds every broken promise of every unpaused SLA policy, by the database
clock (D6), and brings the incidents in line — open what breaks, add runs to what is open, resolve
what cleared. Celery beat and the embedded loop run :func:`evaluate_sla_policies` as a platform
tick; a run's state change runs :func:`evaluate_flow_run` for its flow (``triggers.py``), so a
failure is announced within seconds rather than at the next tick.

Queries are grouped by kind across all policies (and workspaces): one query finds every late run,
one every running run, and so on; which policies cover a run is decided in memory from an index of
the policies by flow, project and workspace. Reads happen under the RLS bypass (platform service,
like the late-run marker); each incident change is its own short transaction in its workspace's
scope, so two evaluators at once never wait on each other for long and open an incident once (the
partial unique constraint decides, see ``incidents.py``).

What each kind breaches (X = ``threshold_seconds``; "covered" = in the policy's scope and carrying
its labels):

- **start**: a covered SCHEDULED or PENDING run whose scheduled start is more than X ago. Subject
  ``run:<id>`` — unless no healthy agent covers the run's labels (run labels ⊆ agent labels): then
  the subject is the cause, ``labels:<labels>``, one incident per policy and label set listing every
  such run (a run keeps the subject it was first listed under while it stays late, so an agent that
  comes back does not turn one outage into fifty incidents). Clears when none of its runs is late.
- **duration**: a covered RUNNING (or CANCELLING) run that started more than X ago: ``run:<id>``,
  until it ends. With ``predictive``, a RUNNING run past its flow's p95 (last ``history_size``
  successes, at least 5) but still under X: a *warning*, ``run:<id>:p95``, until it ends or the hard
  limit takes over.
- **failure**: a covered flow whose newest N settled runs failed (N = ``consecutive_failures``;
  FAILED and CRASHED are failures, COMPLETED breaks the streak, CANCELLED and Skipped runs do not
  count; a crashed run the engine retries is SCHEDULED again, never counted). Subject
  ``flow:<id>``, listing the streak's runs; more failures are added to it while it lasts (N = 1
  too: one incident per streak, not one per failed run). Clears with the flow's next success.
- **freshness**: a covered flow (not archived; with a run, or created more than X ago) without a
  COMPLETED run that ended within X: ``flow:<id>``, until one lands.
- **agent**: no healthy agent carries every label of ``agent_labels`` (agent labels ⊇ them), and
  none has for X: ``agent-labels:<labels>``, until one is healthy.
- **prestart**: a covered run that ended FAILED or CRASHED without starting its code (no start
  time), the agent's error as the cause: ``run:<id>``, until a later run of the flow starts. It
  never opens again for that run once cleared.

Paused policies are not evaluated; their open incidents stay as they are until the policy resumes.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Cast
from django.db.models.lookups import Contains

from core.tenancy import rls_bypass
from orchestration.engine import db_now
from orchestration.models import Agent, Flow, FlowRun, StateType
from orchestration.services.agents import HEALTHY, agent_status, healthy_until
from orchestration.services.late_runs import SKIPPED_NAME

from . import incidents
from .incidents import Breach
from .models import Incident, PolicyKind, Severity, SlaPolicy
from .selectors import duration_p95_seconds

logger = logging.getLogger(__name__)

P95_MIN_SAMPLES = 5
# A pre-start failure older than this is not picked up by the tick (the state change's trigger
# opens it at once; the tick is the safety net for a lost trigger).
PRESTART_LOOKBACK = timedelta(days=1)
PRESTART_CREATED_LOOKBACK = timedelta(days=7)
# How many runs of a failure streak an incident lists (the streak may be longer).
STREAK_RUNS_LISTED = 200
FAILED = (StateType.FAILED, StateType.CRASHED)
SUBJECT_MAX = 300
NEEDS_THRESHOLD = frozenset({PolicyKind.START, PolicyKind.DURATION, PolicyKind.FRESHNESS, PolicyKind.AGENT})
# What the pass reads of a policy (thousands of them: no more than this).
POLICY_FIELDS = ("id", "workspace_id", "name", "kind", "project_id", "flow_id", "labels", "threshold_seconds",
                 "consecutive_failures", "predictive", "history_size", "agent_labels", "action", "severity")


# --- small helpers ---------------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    """45 s, 4 min, 2 h 5 min, 3 d 2 h: a duration a person reads at a glance."""
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s} s"
    m = s // 60
    if m < 120:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _at(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _labels_text(labels: Iterable[str]) -> str:
    return ", ".join(sorted(set(labels)))


def _key(prefix: str, labels: Iterable[str]) -> str:
    """``prefix:<sorted labels joined by ,>``, hashed when too long for the column."""
    key = f"{prefix}:{','.join(sorted(set(labels)))}"
    if len(key) <= SUBJECT_MAX:
        return key
    return f"{prefix}:#{hashlib.sha256(key.encode()).hexdigest()}"


def labels_subject(labels: Iterable[str]) -> str:
    return _key("labels", labels)


def agent_labels_subject(labels: Iterable[str]) -> str:
    return _key("agent-labels", labels)


def _has_labels(qs: QuerySet[Any], labels: list[str], prefix: str = "") -> QuerySet[Any]:
    """Rows whose ``labels`` (at ``prefix``) carry every one of ``labels``; usable inside a
    subquery (JSONB containment on PostgreSQL; on SQLite each label is a substring test on the
    JSON text, quotes included)."""
    if not labels:
        return qs
    column = f"{prefix}labels"
    if settings.IS_POSTGRES:
        return qs.filter(**{f"{column}__contains": labels})
    import json

    for label in labels:
        qs = qs.filter(Contains(Cast(column, output_field=TextField()), Value(json.dumps(label))))
    return qs


# --- which policies cover what -----------------------------------------------------------------------


class PolicyIndex:
    """Policies of one kind by flow, by project and by workspace (for workspace-wide ones)."""

    def __init__(self, policies: list[SlaPolicy]) -> None:
        self.policies = policies
        self.by_flow: dict[Any, list[SlaPolicy]] = defaultdict(list)
        self.by_project: dict[Any, list[SlaPolicy]] = defaultdict(list)
        self.by_workspace: dict[Any, list[SlaPolicy]] = defaultdict(list)
        for policy in policies:
            if policy.flow_id is not None:
                self.by_flow[policy.flow_id].append(policy)
            elif policy.project_id is not None:
                self.by_project[policy.project_id].append(policy)
            else:
                self.by_workspace[policy.workspace_id].append(policy)

    def for_flow(self, workspace_id: Any, flow_id: Any, project_id: Any) -> list[SlaPolicy]:
        return [*self.by_flow.get(flow_id, ()), *self.by_project.get(project_id, ()),
                *self.by_workspace.get(workspace_id, ())]

    def covering(self, workspace_id: Any, flow_id: Any, project_id: Any,
                 labels: Iterable[str] | None) -> list[SlaPolicy]:
        carried = set(labels or [])
        return [p for p in self.for_flow(workspace_id, flow_id, project_id) if set(p.labels or []) <= carried]

    def flows_q(self) -> Q:
        """Flows (a Q on Flow) some policy of the index covers."""
        q = Q(pk__in=[])
        if self.by_workspace:
            q |= Q(workspace_id__in=list(self.by_workspace))
        if self.by_project:
            q |= Q(project_id__in=list(self.by_project))
        if self.by_flow:
            q |= Q(pk__in=list(self.by_flow))
        return q

    def label_groups(self) -> dict[tuple[str, ...], list[SlaPolicy]]:
        groups: dict[tuple[str, ...], list[SlaPolicy]] = defaultdict(list)
        for policy in self.policies:
            groups[tuple(sorted(set(policy.labels or [])))].append(policy)
        return groups


@dataclass
class Pass:
    """One evaluation: its clock, its reach (workspaces, or one flow), the policies by kind, what
    is open, and the breaches found so far."""

    now: datetime
    workspace_ids: list[Any] | None
    flow_ids: list[Any] | None
    indexes: dict[str, PolicyIndex] = field(default_factory=dict)
    active: list[Incident] = field(default_factory=list)
    held: dict[tuple[Any, str], Any] = field(default_factory=dict)
    listed: dict[Any, set[Any]] = field(default_factory=dict)  # active incident id → its runs
    breaches: dict[tuple[Any, str], Breach] = field(default_factory=dict)
    agents: dict[Any, list[Agent]] | None = None

    def index(self, kind: str) -> PolicyIndex:
        return self.indexes.get(kind) or PolicyIndex([])

    def runs(self) -> QuerySet[FlowRun]:
        runs = FlowRun.objects.unscoped()
        if self.workspace_ids is not None:
            runs = runs.filter(workspace_id__in=self.workspace_ids)
        if self.flow_ids is not None:
            runs = runs.filter(flow_id__in=self.flow_ids)
        return runs

    def flows(self, index: PolicyIndex) -> QuerySet[Flow]:
        flows = Flow.objects.unscoped().filter(index.flows_q())
        if self.workspace_ids is not None:
            flows = flows.filter(workspace_id__in=self.workspace_ids)
        if self.flow_ids is not None:
            flows = flows.filter(pk__in=self.flow_ids)
        return flows

    def seen(self, policy: SlaPolicy, subject: str, run_ids: Iterable[Any] = ()) -> bool:
        """Whether (policy, subject) is already in breach in this pass (then ``run_ids`` join it)."""
        found = self.breaches.get((policy.pk, subject))
        if found is None:
            return False
        found.add_runs(run_ids)
        return True

    def put(self, breach: Breach, run_ids: Iterable[Any] = ()) -> None:
        breach.add_runs(run_ids)
        self.breaches[(breach.policy.pk, breach.subject_key)] = breach

    def agents_of(self, workspace_id: Any) -> list[Agent]:
        if self.agents is None:
            workspaces = {p.workspace_id for i in self.indexes.values() for p in i.policies}
            self.agents = defaultdict(list)
            for agent in Agent.objects.unscoped().filter(workspace_id__in=list(workspaces)).order_by("name"):
                self.agents[agent.workspace_id].append(agent)
        return self.agents.get(workspace_id, [])



def _last_seen(agents: list[Agent], now: datetime) -> str:
    seen = [a for a in agents if a.last_heartbeat_at is not None]
    if not seen:
        return "no agent with these labels has ever been seen" if agents else "no agent has these labels"
    latest = max(seen, key=lambda a: a.last_heartbeat_at)  # type: ignore[arg-type, return-value]
    return f"last seen: agent '{latest.name}' {_ago((now - latest.last_heartbeat_at).total_seconds())} ago"  # type: ignore[operator]


def _covering_agents(agents: list[Agent], labels: Iterable[str]) -> list[Agent]:
    wanted = set(labels)
    return [a for a in agents if wanted <= set(a.labels or [])]


# --- the kinds -----------------------------------------------------------------------------------------


def _start(run_pass: Pass) -> None:
    index = run_pass.index(PolicyKind.START)
    if not index.policies:
        return
    now = run_pass.now
    shortest = min(p.threshold_seconds or 0 for p in index.policies)
    runs = (run_pass.runs()
            .filter(state_type__in=[StateType.SCHEDULED, StateType.PENDING],
                    scheduled_start__lt=now - timedelta(seconds=shortest))
            .values_list("pk", "workspace_id", "flow_id", "flow__project_id", "flow__name", "name", "labels",
                         "scheduled_start"))
    # A run keeps the subject it is listed under while it stays late (see the module docstring).
    listed = _listed_subjects(run_pass, PolicyKind.START)
    healthy: dict[tuple[Any, tuple[str, ...]], bool] = {}
    for pk, workspace_id, flow_id, project_id, flow_name, name, labels, scheduled in runs:
        policies = index.covering(workspace_id, flow_id, project_id, labels)
        if not policies:
            continue
        label_set = tuple(sorted(set(labels or [])))
        if (workspace_id, label_set) not in healthy:
            covering = _covering_agents(run_pass.agents_of(workspace_id), label_set)
            healthy[(workspace_id, label_set)] = any(agent_status(a, now) == HEALTHY for a in covering)
        late = (now - scheduled).total_seconds()
        for policy in policies:
            if late <= (policy.threshold_seconds or 0):
                continue
            subject = listed.get((policy.pk, pk))
            if subject is None:
                subject = f"run:{pk}" if healthy[(workspace_id, label_set)] else labels_subject(label_set)
            if run_pass.seen(policy, subject, [pk]):
                continue
            if subject.startswith("labels:"):
                run_pass.put(_uncovered_breach(run_pass, policy, workspace_id, label_set, subject), [pk])
                continue
            run_pass.put(Breach(
                policy=policy, subject_key=subject, flow_id=flow_id, title=f"{flow_name}: run {name} has not started",
                cause=(f"Due at {_at(scheduled)}, not started {_ago(late)} later; the policy expects a start within "
                       f"{_ago(policy.threshold_seconds or 0)}."),
                details={"scheduled_start": scheduled.isoformat(), "threshold_seconds": policy.threshold_seconds},
            ), [pk])


def _uncovered_breach(run_pass: Pass, policy: SlaPolicy, workspace_id: Any, labels: tuple[str, ...],
                      subject: str) -> Breach:
    agents = _covering_agents(run_pass.agents_of(workspace_id), labels)
    what = f"the labels {_labels_text(labels)}" if labels else "runs without labels"
    return Breach(
        policy=policy, subject_key=subject, flow_id=None,
        title=f"{policy.name}: runs waiting for an agent ({_labels_text(labels) or 'no labels'})",
        cause=f"No live agent covers {what} ({_last_seen(agents, run_pass.now)}).",
        details={"labels": list(labels), "threshold_seconds": policy.threshold_seconds, "correlated": True},
    )


def _listed_subjects(run_pass: Pass, kind: str) -> dict[tuple[Any, Any], str]:
    """(policy id, run id) → subject, for the runs the kind's active incidents list."""
    return {(i.policy_id, run_id): i.subject_key for i in run_pass.active if i.kind == kind
            for run_id in run_pass.listed.get(i.pk, ())}


def _duration(run_pass: Pass) -> None:
    index = run_pass.index(PolicyKind.DURATION)
    if not index.policies:
        return
    now = run_pass.now
    runs = run_pass.runs().filter(state_type__in=[StateType.RUNNING, StateType.CANCELLING], start_time__isnull=False)
    if not any(p.predictive for p in index.policies):
        shortest = min(p.threshold_seconds or 0 for p in index.policies)
        runs = runs.filter(start_time__lt=now - timedelta(seconds=shortest))
    rows = list(runs.values_list("pk", "workspace_id", "flow_id", "flow__project_id", "flow__name", "name", "labels",
                                 "start_time", "state_type"))
    p95s = _p95s(index, rows)
    for pk, workspace_id, flow_id, project_id, flow_name, name, labels, started, state in rows:
        assert started is not None  # filtered on
        elapsed = (now - started).total_seconds()
        for policy in index.covering(workspace_id, flow_id, project_id, labels):
            limit = policy.threshold_seconds or 0
            if elapsed > limit:
                if not run_pass.seen(policy, f"run:{pk}", [pk]):
                    run_pass.put(Breach(
                        policy=policy, subject_key=f"run:{pk}", flow_id=flow_id,
                        title=f"{flow_name}: run {name} is running longer than {_ago(limit)}",
                        cause=(f"Started at {_at(started)} and still running after {_ago(elapsed)}; the limit is "
                               f"{_ago(limit)}."),
                        details={"start_time": started.isoformat(), "threshold_seconds": limit},
                    ), [pk])
                continue
            if not policy.predictive or state != StateType.RUNNING:
                continue
            p95, samples = p95s.get((workspace_id, policy.history_size), {}).get(flow_id, (None, 0))
            if p95 is None or samples < P95_MIN_SAMPLES or elapsed <= p95:
                continue
            if not run_pass.seen(policy, f"run:{pk}:p95", [pk]):
                run_pass.put(Breach(
                    policy=policy, subject_key=f"run:{pk}:p95", flow_id=flow_id, severity=Severity.WARNING, act=False,
                    title=f"{flow_name}: run {name} is slower than usual",
                    cause=(f"Running for {_ago(elapsed)}, past the p95 of {_ago(p95)} over the last {samples} "
                           f"successful runs; the limit is {_ago(limit)}."),
                    details={"p95_seconds": p95, "sample_size": samples, "threshold_seconds": limit,
                             "predictive": True},
                ), [pk])


def _p95s(index: PolicyIndex, rows: list[tuple[Any, ...]]) -> dict[tuple[Any, int], dict[Any, tuple[float, int]]]:
    """p95s of the flows with running runs, per (workspace, history size) a predictive policy asks for."""
    wanted: dict[tuple[Any, int], set[Any]] = defaultdict(set)
    for _pk, workspace_id, flow_id, project_id, _fn, _n, labels, _s, state in rows:
        if state != StateType.RUNNING:
            continue
        for policy in index.covering(workspace_id, flow_id, project_id, labels):
            if policy.predictive:
                wanted[(workspace_id, policy.history_size)].add(flow_id)
    return {key: duration_p95_seconds(key[0], flows, key[1]) for key, flows in wanted.items()}


def _settled(labels: tuple[str, ...]) -> QuerySet[FlowRun]:
    """The settled runs that count for streaks and successes, of the flow in the outer query."""
    runs = (FlowRun.objects.unscoped().filter(flow_id=OuterRef("pk"))
            .filter(state_type__in=[StateType.COMPLETED, *FAILED]).exclude(state_name=SKIPPED_NAME))
    return _has_labels(runs, list(labels))


def _failure(run_pass: Pass) -> None:
    index = run_pass.index(PolicyKind.FAILURE)
    if not index.policies:
        return
    for labels, policies in index.label_groups().items():
        group = PolicyIndex(policies)
        settled = _settled(labels)
        # Only flows whose newest settled run failed can be in a streak: one index probe per flow.
        flows = (run_pass.flows(group).filter(is_archived=False)
                 .annotate(last_state=Subquery(settled.order_by("-created_at").values("state_type")[:1]),
                           last_ok=Subquery(settled.filter(state_type=StateType.COMPLETED)
                                            .order_by("-created_at").values("created_at")[:1]))
                 .filter(last_state__in=FAILED)
                 .values_list("pk", "workspace_id", "project_id", "name", "last_ok"))
        for flow_id, workspace_id, project_id, flow_name, last_ok in flows:
            covering = group.for_flow(workspace_id, flow_id, project_id)
            if covering:
                _streak(run_pass, covering, labels, flow_id, flow_name, last_ok)


def _streak(run_pass: Pass, covering: list[SlaPolicy], labels: tuple[str, ...], flow_id: Any, flow_name: str,
            last_ok: datetime | None) -> None:
    """The failed runs of a flow since its last success (newest first), against each policy's N."""
    streak = _has_labels(FlowRun.objects.unscoped().filter(flow_id=flow_id, state_type__in=FAILED), list(labels))
    if last_ok is not None:
        streak = streak.filter(created_at__gt=last_ok)
    limit = max(STREAK_RUNS_LISTED, *(p.consecutive_failures for p in covering))
    runs = list(streak.order_by("-created_at").values_list("pk", "name", "state_message")[:limit])
    if not runs:
        return
    _, latest, error = runs[0]
    error = f": {error[:500]}" if error else "."
    run_ids = [pk for pk, _name, _message in reversed(runs)]
    for policy in covering:
        n = max(policy.consecutive_failures, 1)
        if len(runs) < n or run_pass.seen(policy, f"flow:{flow_id}", run_ids):
            continue
        run_pass.put(Breach(
            policy=policy, subject_key=f"flow:{flow_id}", flow_id=flow_id,
            title=f"{flow_name}: run {latest} failed" if n == 1 else f"{flow_name}: {n} runs failed in a row",
            cause=(f"Run {latest} failed{error}" if n == 1
                   else f"The last {n} runs of {flow_name} failed; the latest, {latest}{error}"),
            details={"consecutive_failures": n},
        ), run_ids)


def _freshness(run_pass: Pass) -> None:
    index = run_pass.index(PolicyKind.FRESHNESS)
    if not index.policies:
        return
    now = run_pass.now
    for labels, policies in index.label_groups().items():
        group = PolicyIndex(policies)
        successes = _settled(labels).filter(state_type=StateType.COMPLETED)
        flows = (run_pass.flows(group).filter(is_archived=False)
                 .annotate(last_success=Subquery(successes.order_by("-created_at").values("end_time")[:1]),
                           has_run=Exists(FlowRun.objects.unscoped().filter(flow_id=OuterRef("pk")),
                                          output_field=BooleanField()))
                 .values_list("pk", "workspace_id", "project_id", "name", "created_at", "last_success", "has_run"))
        for flow_id, workspace_id, project_id, flow_name, created_at, last_success, has_run in flows:
            for policy in group.for_flow(workspace_id, flow_id, project_id):
                window = timedelta(seconds=policy.threshold_seconds or 0)
                if not has_run and created_at >= now - window:
                    continue  # a new flow gets one window to run
                if last_success is not None and last_success >= now - window:
                    continue
                if run_pass.seen(policy, f"flow:{flow_id}"):
                    continue
                since = (f"the last one ended at {_at(last_success)}, {_ago((now - last_success).total_seconds())} ago"
                         if last_success else "there has been none yet")
                every = _ago(window.total_seconds())
                run_pass.put(Breach(
                    policy=policy, subject_key=f"flow:{flow_id}", flow_id=flow_id,
                    title=f"{flow_name}: no successful run in {every}",
                    cause=f"{flow_name} should succeed at least every {every}; {since}.",
                    details={"threshold_seconds": policy.threshold_seconds,
                             "last_success_at": last_success.isoformat() if last_success else None},
                ))


def _agent(run_pass: Pass) -> None:
    index = run_pass.index(PolicyKind.AGENT)
    if not index.policies or run_pass.flow_ids is not None:
        return  # about agents, not flows: a run's state change has nothing to say
    now = run_pass.now
    created = dict(SlaPolicy.objects.unscoped().filter(pk__in=[p.pk for p in index.policies])
                   .values_list("pk", "created_at"))
    for policy in index.policies:
        labels = sorted(set(policy.agent_labels or []))
        covering = _covering_agents(run_pass.agents_of(policy.workspace_id), labels)
        if any(agent_status(a, now) == HEALTHY for a in covering):
            continue
        # No covering agent at all: counted from the policy's creation.
        since = max((healthy_until(a) for a in covering), default=created[policy.pk])
        if (now - since).total_seconds() < (policy.threshold_seconds or 0):
            continue
        subject = agent_labels_subject(labels)
        what = f"the labels {_labels_text(labels)}" if labels else "this workspace's runs"
        run_pass.put(Breach(
            policy=policy, subject_key=subject, flow_id=None,
            title=f"No healthy agent for {_labels_text(labels) or 'any labels'}",
            cause=f"No healthy agent has covered {what} since {_at(since)} ({_last_seen(covering, now)}).",
            details={"agent_labels": labels, "since": since.isoformat(), "threshold_seconds": policy.threshold_seconds},
        ))


def _prestart(run_pass: Pass) -> None:
    index = run_pass.index(PolicyKind.PRESTART)
    if not index.policies:
        return
    now = run_pass.now
    listed = [i.subject_key.split(":", 1)[1] for i in run_pass.active
              if i.kind == PolicyKind.PRESTART and i.subject_key.startswith("run:")]
    recent = Q(state_timestamp__gte=now - PRESTART_LOOKBACK, created_at__gte=now - PRESTART_CREATED_LOOKBACK)
    later_start = FlowRun.objects.unscoped().filter(flow_id=OuterRef("flow_id"), start_time__gt=OuterRef("end_time"))
    runs = (run_pass.runs().filter(state_type__in=FAILED, start_time__isnull=True)
            .filter(recent | Q(pk__in=listed))
            .annotate(started_since=Exists(later_start, output_field=BooleanField()))
            .filter(started_since=False)
            .values_list("pk", "workspace_id", "flow_id", "flow__project_id", "flow__name", "name", "labels",
                         "state_message", "agent__name"))
    for pk, workspace_id, flow_id, project_id, flow_name, name, labels, message, agent in runs:
        for policy in index.covering(workspace_id, flow_id, project_id, labels):
            if run_pass.seen(policy, f"run:{pk}", [pk]):
                continue
            run_pass.put(Breach(
                policy=policy, subject_key=f"run:{pk}", flow_id=flow_id,
                title=f"{flow_name}: run {name} failed before its code started",
                cause=(message or "The agent reported a failure before the flow's code started.")[:4000],
                details={"error": message, "agent": agent},
            ), [pk])


KINDS: tuple[Callable[[Pass], None], ...] = (_start, _duration, _failure, _freshness, _agent, _prestart)


# --- why an incident cleared -----------------------------------------------------------------------------


def _run_of(subject: str) -> str | None:
    parts = subject.split(":")
    return parts[1] if len(parts) >= 2 and parts[0] == "run" else None


def _cleared_reason(incident: Incident, run_pass: Pass) -> str:
    """The timeline's words for a condition that cleared by itself."""
    run_id = _run_of(incident.subject_key)
    run = None
    if run_id is not None:
        run = (FlowRun.objects.unscoped().filter(pk=run_id)
               .values("state_type", "state_name", "start_time", "end_time").first())
    kind = incident.kind
    if incident.subject_key.endswith(":p95"):
        if run is not None and run["state_type"] in (StateType.RUNNING, StateType.CANCELLING):
            return "The run passed the hard limit; its incident takes over."
        return _ended(run)
    if kind == PolicyKind.START:
        if run_id is None:
            return "None of the listed runs is late any more: they started, ended or are no longer covered."
        if run is not None and run["start_time"] is not None:
            return f"The run started at {_at(run['start_time'])}."
        return _ended(run) if run is not None and run["end_time"] else "The run is no longer late or covered."
    if kind == PolicyKind.DURATION:
        return _ended(run)
    if kind in (PolicyKind.FAILURE, PolicyKind.FRESHNESS):
        success = (FlowRun.objects.unscoped().filter(flow_id=incident.flow_id, state_type=StateType.COMPLETED)
                   .exclude(state_name=SKIPPED_NAME).order_by("-created_at").values("name", "end_time").first())
        if success is not None and success["end_time"] is not None:
            return f"Run {success['name']} completed at {_at(success['end_time'])}."
        return "The flow is no longer covered by the policy."
    if kind == PolicyKind.AGENT:
        return "A healthy agent covers the labels again."
    if kind == PolicyKind.PRESTART:
        return "A later run of the flow started."
    return "The condition cleared."


def _ended(run: dict[str, Any] | None) -> str:
    if run is None:
        return "The run was deleted."
    if run["end_time"] is not None:
        took = ""
        if run["start_time"] is not None:
            took = f" after {_ago((run['end_time'] - run['start_time']).total_seconds())}"
        return f"The run ended {run['state_type']} ({run['state_name']}){took}."
    return f"The run is {run['state_type']} ({run['state_name']}) and no longer in breach."


# --- the pass ---------------------------------------------------------------------------------------------


def _load(run_pass: Pass) -> None:
    policies = SlaPolicy.objects.unscoped().filter(is_paused=False)
    if run_pass.workspace_ids is not None:
        policies = policies.filter(workspace_id__in=run_pass.workspace_ids)
    if run_pass.flow_ids is not None:
        flows = list(Flow.objects.unscoped().filter(pk__in=run_pass.flow_ids).values_list("pk", "project_id"))
        policies = policies.filter(Q(flow_id__in=[f for f, _ in flows])
                                   | Q(flow__isnull=True, project_id__in=[p for _, p in flows])
                                   | Q(flow__isnull=True, project__isnull=True))
    by_kind: dict[str, list[SlaPolicy]] = defaultdict(list)
    for policy in policies.order_by("workspace_id", "name").only(*POLICY_FIELDS):
        if policy.kind in NEEDS_THRESHOLD and not policy.threshold_seconds:
            continue  # validation refuses these; a row that slipped through would breach everything at once
        by_kind[policy.kind].append(policy)
    run_pass.indexes = {kind: PolicyIndex(items) for kind, items in by_kind.items()}
    if run_pass.flow_ids is not None:
        evaluated = Q(policy_id__in=[p.pk for items in by_kind.values() for p in items])
    else:  # every unpaused policy of the workspaces: a join, not an IN list of thousands of ids
        evaluated = Q(policy__is_paused=False)
        if run_pass.workspace_ids is not None:
            evaluated &= Q(workspace_id__in=run_pass.workspace_ids)
    run_pass.active = incidents.active_incidents(evaluated)
    run_pass.held = incidents.held_subjects(evaluated)
    run_pass.listed = incidents.listed_runs(evaluated)


def _in_reach(run_pass: Pass, incident_flow_id: Any) -> bool:
    """Whether this pass saw the whole of a subject (a flow's pass sees only that flow's)."""
    return run_pass.flow_ids is None or (incident_flow_id is not None and incident_flow_id in run_pass.flow_ids)


@contextlib.contextmanager
def _no_collector_pauses() -> Iterator[None]:
    """A full pass builds tens of thousands of objects (policies, flows, runs) that reference
    counting frees; the cyclic collector would walk them again and again meanwhile (a quarter of
    the pass with 10,000 policies). It is off for the read phase only, and back on after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run(run_pass: Pass) -> int:
    quiet = _no_collector_pauses() if run_pass.flow_ids is None else contextlib.nullcontext()
    with quiet, transaction.atomic(), rls_bypass():
        if settings.IS_POSTGRES:
            # The per-flow subqueries look costly to the planner, which then spends longer
            # JIT-compiling them (~200 ms) than running them.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        _load(run_pass)
        if not run_pass.indexes:
            return 0
        for kind in KINDS:
            kind(run_pass)
        # Reasons are read now, under the same bypass, for the incidents about to resolve.
        cleared = [i for i in run_pass.active
                   if (i.policy_id, i.subject_key) not in run_pass.breaches and _in_reach(run_pass, i.flow_id)]
        reasons = {i.pk: _cleared_reason(i, run_pass) for i in cleared}
        flows = {pk: flow for pk, flow in Incident.objects.unscoped().filter(
            pk__in=list(run_pass.held.values())).values_list("pk", "flow_id")}
    changed = 0
    is_open = {(i.policy_id, i.subject_key): i.pk for i in run_pass.active}
    # In a stable order, so two passes at once take the same rows in the same order.
    for key in sorted(run_pass.breaches, key=lambda k: (str(k[0]), k[1])):
        breach = run_pass.breaches[key]
        try:
            if key in is_open:
                if not set(breach.run_ids) <= run_pass.listed.get(is_open[key], set()):
                    incidents.add_runs(breach, now=run_pass.now)  # only an incident that gains runs is touched
            elif key in run_pass.held:
                continue  # resolved by hand while it held: not again until it clears
            elif incidents.open_or_update(breach, now=run_pass.now) == "opened":
                changed += 1
        except Exception:
            logger.exception("SLA evaluator: could not open or update the incident of %s %s", key[0], key[1])
    for incident in sorted(cleared, key=lambda i: str(i.pk)):
        try:
            changed += incidents.resolve_cleared(incident, reason=reasons[incident.pk], now=run_pass.now)
        except Exception:
            logger.exception("SLA evaluator: could not resolve incident %s", incident.pk)
    workspace_of = {p.pk: p.workspace_id for index in run_pass.indexes.values() for p in index.policies}
    for key, incident_id in run_pass.held.items():
        if key not in run_pass.breaches and _in_reach(run_pass, flows.get(incident_id)):
            incidents.release_hold(incident_id, workspace_of[key[0]])
    return changed


def evaluate_sla_policies(now: datetime | None = None) -> int:
    """The platform tick: evaluate every unpaused policy of every workspace, and end the snoozes
    that are over. Returns how many incidents it opened and resolved. Safe to run twice at once."""
    at = now or _clock()
    changed = _run(Pass(now=at, workspace_ids=None, flow_ids=None))
    incidents.unsnooze_due(now=at)
    return changed


def evaluate_workspace(workspace_id: Any, now: datetime | None = None) -> int:
    """One workspace's policies (and its snoozes that are over)."""
    at = now or _clock()
    changed = _run(Pass(now=at, workspace_ids=[workspace_id], flow_ids=None))
    incidents.unsnooze_due(now=at, workspace_ids=[workspace_id])
    return changed


def evaluate_flow_run(flow_run_id: Any, now: datetime | None = None) -> int:
    """A run changed state: evaluate the policies that cover its flow, for that flow only (open
    what it breaks, resolve what it clears). Incidents about a cause shared by many flows (agents,
    labels) are left to the tick. A run that no longer exists is nothing to evaluate."""
    with transaction.atomic(), rls_bypass():
        row = FlowRun.objects.unscoped().filter(pk=flow_run_id).values_list("workspace_id", "flow_id").first()
    if row is None:
        return 0
    workspace_id, flow_id = row
    return _run(Pass(now=now or _clock(), workspace_ids=[workspace_id], flow_ids=[flow_id]))


def _clock() -> datetime:
    with transaction.atomic():
        return db_now()
