"""Claims: an agent asks for due runs whose labels its labels cover, and each run is handed to
exactly one agent (D1) with a lease (D2).

The due runs are read with ``SELECT … FOR UPDATE SKIP LOCKED`` in scheduled-start order, served by
the partial index ``flow_run_due_idx`` (D8), so concurrent claimers never wait on each other and
never get the same run. The locked runs are read once, whole (with their flow's late-run policy
and their version), and each moves SCHEDULED → PENDING through the engine's entry point, which
writes its agent and a lease that ends at database ``now()`` + the lease (D6) with the state, in
one statement. A claim that never turns into RUNNING, or a RUNNING run whose process stops heartbeating,
outlives its lease and is crashed by the reaper (``reaper.py``).

Before any run is taken, its flow's late-run policy is applied under the same locks
(:func:`~orchestration.services.late_runs.skip_stale_claims`): with ``catchup="latest"`` only the
newest due run of a schedule may be claimed and the older ones end Skipped in the claim's
transaction, as the catch-up tick would have done; runs later than ``max_lateness_seconds`` too.
Flows without a policy cost no query.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, ExpressionWrapper, Value
from django.db.models.functions import Now

from accounts.authz import Principal
from core.errors import InvalidInput
from core.tenancy import workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state, locked_flow_runs
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


def due_runs_sql(agent: Agent, limit: int, lookahead_seconds: int = 0, exclude: Any = ()) -> tuple[str, list[Any]]:
    """The claim query on PostgreSQL: the ids of due SCHEDULED runs of the agent's workspace whose
    labels the agent covers, oldest first, locked with SKIP LOCKED. Hand-written (compiling it
    with the ORM cost more CPU than running it) and kept separate so the D8 test can EXPLAIN it:
    the partial ``flow_run_due_idx`` serves it."""
    due = "statement_timestamp() + make_interval(secs => %s)" if lookahead_seconds else "statement_timestamp()"
    # The state is written into the statement, not bound: only then may a generic plan (a prepared
    # statement's) use the partial index, whose condition names that state.
    where = ['r."workspace_id" = %s', f"r.\"state_type\" = '{StateType.SCHEDULED.value}'",
             'r."scheduled_start" <= ' + due, 'r."labels" <@ %s::jsonb',
             *(['NOT (r."id" = ANY(%s))'] if exclude else [])]
    sql = ('SELECT r."id" FROM "orchestration_flowrun" r WHERE ' + " AND ".join(where)  # noqa: S608 (no input)
           + ' ORDER BY r."scheduled_start" LIMIT %s FOR UPDATE OF r SKIP LOCKED')
    params: list[Any] = [agent.workspace_id, *([lookahead_seconds] if lookahead_seconds else []),
                         json.dumps(list(agent.labels)), *([list(exclude)] if exclude else []), limit]
    return sql, params


def _due_run_ids(agent: Agent, limit: int, lookahead_seconds: int, exclude: set[Any]) -> list[Any]:
    """The ids of the due runs to claim, locked (SKIP LOCKED) on PostgreSQL until the claim commits.

    A statement of its own rather than a subquery of :func:`_due_runs`: read as ``id IN (…)`` the
    planner may join every run of the flow with its version and agent before filtering, a cost
    that grows with the flow's history. As a materialized CTE of that read (one round trip less)
    the prepared statement's generic plan did the same (docs/performance.md, "Eighth round")."""
    if settings.IS_POSTGRES:
        sql, params = due_runs_sql(agent, limit, lookahead_seconds, exclude)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [row[0] for row in cursor.fetchall()]
    # Embedded SQLite: no JSON containment and no row locks (its writes are serialised anyway).
    covered = set(agent.labels)
    due = (
        FlowRun.objects.for_workspace(agent.workspace_id)
        .filter(state_type=StateType.SCHEDULED, scheduled_start__lte=_due_before(lookahead_seconds))
        .order_by("scheduled_start")
        .values_list("pk", "labels")
    )
    return [pk for pk, labels in due.iterator() if set(labels) <= covered and pk not in exclude][:limit]


def _due_runs(agent: Agent, limit: int, lookahead_seconds: int, exclude: set[Any]) -> list[FlowRun]:
    """The due runs, locked, oldest first, read once for the whole claim: as the engine's
    transition needs them (:func:`~orchestration.engine.locked_flow_runs`), with their flow's
    late-run policy (``skip_stale_claims``), their registered version (the agent starts the run from
    it) and whether they have task runs (the reply lists them; a new run has none)."""
    run_ids = _due_run_ids(agent, limit, lookahead_seconds, exclude)
    if not run_ids:
        return []
    return locked_flow_runs(agent.workspace_id, run_ids, flow_fields=("catchup", "max_lateness_seconds"),
                            version=True, has_task_runs=True)


def _claim_one(actor: Principal, agent: Agent, run: FlowRun, lease_seconds: int) -> bool:
    """SCHEDULED → PENDING through the engine, with the agent and a lease ending at the database's
    now + ``lease_seconds`` (D6) in the same write."""
    assert run.db_now is not None  # type: ignore[attr-defined]  # read by locked_flow_runs
    result = flow_run_set_state(
        actor=actor,
        flow_run_id=run.pk,
        state=ProposedState(
            type=StateType.PENDING, name="Pending", message=f"Claimed by agent {agent.name}",
            details={"agent_id": str(agent.pk), "agent_name": agent.name, "lease_seconds": lease_seconds},
        ),
        workspace_id=agent.workspace_id,
        locked=run,
        also={"agent_id": agent.pk, "lease_expires_at": run.db_now + timedelta(seconds=lease_seconds)},  # type: ignore[attr-defined]
    )
    # Not accepted: a rule kept it (e.g. a flow concurrency limit); it stays for a later claim.
    return result.status is SetStateStatus.ACCEPT and result.state_type == StateType.PENDING


def flow_runs_claim(
    *, actor: Principal, agent: Agent, limit: int = 1, lease_seconds: int = DEFAULT_LEASE_SECONDS,
    lookahead_seconds: int = 0,
) -> list[FlowRun]:
    """Claim up to ``limit`` due runs for ``agent``; each is PENDING, held by the agent, with a
    lease of ``lease_seconds`` from the database's now. Also records a claim-loop cycle. The runs
    come back as stored, with their version (and task runs, see
    :func:`~orchestration.selectors.claimed_runs`). Refusals are raised before anything is read;
    the claim runs in the caller's transaction (a new one when there is none), no savepoint."""
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
    claimed: list[FlowRun] = []
    seen: set[Any] = set()
    now = None
    with workspace_scope([workspace_id]):  # opens the transaction if need be
        for _ in range(MAX_POLICY_ROUNDS):
            runs = _due_runs(agent, limit - len(claimed), lookahead_seconds, seen)
            if not runs:
                break
            seen.update(run.pk for run in runs)
            now = now or runs[0].db_now  # type: ignore[attr-defined]
            # The flow's late-run policy decides here too, under the same locks: the catch-up tick
            # may not have run since the agents came back.
            stale = skip_stale_claims(runs, workspace_id=workspace_id)
            for run in runs:
                if run.pk not in stale and _claim_one(actor, agent, run, lease_seconds):
                    claimed.append(run)
            if not stale or len(claimed) >= limit:
                break  # skipped runs left room: look again for runs that may run
        agent_record_poll(agent, now=now)
    return claimed
