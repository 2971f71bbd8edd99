"""Claims: an agent asks for due runs whose labels its labels cover, and each run is handed to
exactly one agent (D1) with a lease (D2).

The due runs are read with ``SELECT … FOR UPDATE SKIP LOCKED`` in scheduled-start order, served by
the partial index ``flow_run_due_idx`` (D8), so concurrent claimers never wait on each other and
never get the same run. Each run then moves SCHEDULED → PENDING through the engine's entry point,
and in the same transaction gets its agent and a lease that ends at database ``now()`` + the lease
(D6). A claim that never turns into RUNNING, or a RUNNING run whose process stops heartbeating,
outlives its lease and is crashed by the reaper (``reaper.py``).

Before any run is taken, its flow's late-run policy is applied under the same locks
(:func:`~orchestration.services.late_runs.skip_stale_claims`): with ``catchup="latest"`` only the
newest due run of a schedule may be claimed and the older ones end Skipped in the claim's
transaction, as the catch-up tick would have done; runs later than ``max_lateness_seconds`` too.
Flows without a policy cost one small query.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, Value
from django.db.models.functions import Now

from accounts.authz import Principal
from core.errors import InvalidInput
from core.tenancy import workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state
from orchestration.models import Agent, FlowRun, StateType
from orchestration.services.agents import agent_record_poll, ensure_own_agent
from orchestration.services.late_runs import skip_stale_claims

DEFAULT_LEASE_SECONDS = 60
MAX_CLAIM_LIMIT = 100
MAX_LOOKAHEAD_SECONDS = 5
# A claim that skipped stale runs looks again for ones that may run, at most this many times.
MAX_POLICY_ROUNDS = 5


def lease_until(seconds: int) -> ExpressionWrapper:
    """``now() + seconds`` evaluated by the database (D6)."""
    return ExpressionWrapper(Now() + Value(timedelta(seconds=seconds)), output_field=DateTimeField())


def _due_before(lookahead_seconds: int) -> Any:
    return lease_until(lookahead_seconds) if lookahead_seconds else Now()


def due_runs_query(agent: Agent, limit: int, lookahead_seconds: int = 0, exclude: Any = ()) -> Any:
    """The claim query: due SCHEDULED runs of the agent's workspace whose labels the agent covers,
    oldest first, locked with SKIP LOCKED. Kept separate so the D8 test can EXPLAIN it."""
    runs = FlowRun.objects.for_workspace(agent.workspace_id).filter(
        state_type=StateType.SCHEDULED, scheduled_start__lte=_due_before(lookahead_seconds),
        labels__contained_by=list(agent.labels),
    )
    if exclude:
        runs = runs.exclude(pk__in=list(exclude))
    return (
        runs.order_by("scheduled_start")
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("pk", flat=True)[:limit]
    )


def _due_run_ids(agent: Agent, limit: int, lookahead_seconds: int = 0, exclude: set[Any] | None = None) -> list[Any]:
    exclude = exclude or set()
    if settings.IS_POSTGRES:
        return list(due_runs_query(agent, limit, lookahead_seconds, exclude))
    # Embedded SQLite: no JSON containment and no row locks (its writes are serialised anyway).
    covered = set(agent.labels)
    due = (
        FlowRun.objects.for_workspace(agent.workspace_id)
        .filter(state_type=StateType.SCHEDULED, scheduled_start__lte=_due_before(lookahead_seconds))
        .order_by("scheduled_start")
        .values_list("pk", "labels")
    )
    return [pk for pk, labels in due.iterator() if set(labels) <= covered and pk not in exclude][:limit]


def _hold(run_ids: list[Any], agent: Agent, lease_seconds: int) -> list[FlowRun]:
    """Give the runs to ``agent`` with a lease ending at the database's now + ``lease_seconds``;
    return them as stored (one ``UPDATE … RETURNING`` on PostgreSQL)."""
    if not settings.IS_POSTGRES:
        runs = FlowRun.objects.for_workspace(agent.workspace_id).filter(pk__in=run_ids)
        runs.update(agent=agent, lease_expires_at=lease_until(lease_seconds))
        return list(runs)
    table = FlowRun._meta.db_table
    return list(FlowRun.objects.unscoped().raw(
        f"""UPDATE {table} SET agent_id = %s, lease_expires_at = statement_timestamp() + %s
            WHERE workspace_id = %s AND id = ANY(%s) RETURNING *""",  # noqa: S608 (table name from the model)
        [agent.pk, timedelta(seconds=lease_seconds), agent.workspace_id, list(run_ids)],
    ))


def _claim_one(actor: Principal, agent: Agent, run_id: Any, lease_seconds: int) -> bool:
    result = flow_run_set_state(
        actor=actor,
        flow_run_id=run_id,
        state=ProposedState(
            type=StateType.PENDING, name="Pending", message=f"Claimed by agent {agent.name}",
            details={"agent_id": str(agent.pk), "agent_name": agent.name, "lease_seconds": lease_seconds},
        ),
        workspace_id=agent.workspace_id,
    )
    # Not accepted: a rule kept it (e.g. a flow concurrency limit); it stays for a later claim.
    return result.status is SetStateStatus.ACCEPT and result.state_type == StateType.PENDING


@transaction.atomic
def flow_runs_claim(
    *, actor: Principal, agent: Agent, limit: int = 1, lease_seconds: int = DEFAULT_LEASE_SECONDS,
    lookahead_seconds: int = 0,
) -> list[FlowRun]:
    """Claim up to ``limit`` due runs for ``agent``; each is PENDING, held by the agent, with a
    lease of ``lease_seconds`` from the database's now. Also records a claim-loop cycle."""
    ensure_own_agent(actor, agent, "flow_run:claim")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_CLAIM_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_CLAIM_LIMIT}.", details={"limit": ["Invalid."]})
    if not isinstance(lease_seconds, int) or not 10 <= lease_seconds <= 3600:
        raise InvalidInput("lease_seconds must be between 10 and 3600.", details={"lease_seconds": ["Invalid."]})
    # A run due within the next few seconds may be claimed now, so that its process is up when its
    # time comes (the flow-run process waits for the scheduled start before running the flow).
    if isinstance(lookahead_seconds, bool) or not isinstance(lookahead_seconds, int) or not (
        0 <= lookahead_seconds <= MAX_LOOKAHEAD_SECONDS
    ):
        raise InvalidInput(f"lookahead_seconds must be between 0 and {MAX_LOOKAHEAD_SECONDS}.",
                           details={"lookahead_seconds": ["Invalid."]})
    workspace_id = agent.workspace_id
    claimed: list[Any] = []
    seen: set[Any] = set()
    with workspace_scope([workspace_id]):
        for _ in range(MAX_POLICY_ROUNDS):
            run_ids = _due_run_ids(agent, limit - len(claimed), lookahead_seconds, seen)
            if not run_ids:
                break
            seen.update(run_ids)
            # The flow's late-run policy decides here too, under the same locks: the catch-up tick
            # may not have run since the agents came back.
            stale = skip_stale_claims(run_ids, workspace_id=workspace_id)
            for run_id in run_ids:
                if run_id not in stale and _claim_one(actor, agent, run_id, lease_seconds):
                    claimed.append(run_id)
            if not stale or len(claimed) >= limit:
                break  # skipped runs left room: look again for runs that may run
        agent_record_poll(agent)
        if not claimed:
            return []
        # Same transaction as the accepted transitions, with the run rows still locked.
        runs = {run.pk: run for run in _hold(claimed, agent, lease_seconds)}
    return [runs[pk] for pk in claimed]
