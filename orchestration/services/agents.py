"""Agents: the customer-side processes that claim and run flow runs (hybrid model).

An agent registers with a service-account API key (idempotent upsert by name), heartbeats, and
reports each cycle of its claim loop. Liveness is about the claim loop, not just the process: an
agent that heartbeats but has stopped polling is *unhealthy*; one that stopped heartbeating is
*offline*; one that said it stopped (a clean shutdown: SIGTERM, Ctrl-C) is *stopped* at once,
until it registers or heartbeats again. All times are the database clock's (D6).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from accounts.authz import Principal, authorize
from core.errors import Forbidden, InvalidInput
from core.tenancy import rls_bypass, workspace_scope
from orchestration import events
from orchestration.engine import db_now
from orchestration.models import Agent, FlowRun, StateType
from orchestration.selectors import agents_covering_labels

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
OFFLINE = "offline"
STOPPED = "stopped"

# An agent is offline after this many missed heartbeats, and unhealthy after this many missed polls.
MISSED_INTERVALS = 3
# ...but never sooner than this, so a 1-second poll interval does not flap on a GC pause.
LIVENESS_FLOOR_SECONDS = 60
MAX_LABELS = 50
MAX_LABEL_LENGTH = 100


def _window(agent: Agent) -> timedelta:
    return timedelta(seconds=max(agent.poll_interval_seconds * MISSED_INTERVALS, LIVENESS_FLOOR_SECONDS))


def healthy_until(agent: Agent) -> datetime:
    """The last moment the agent counts as healthy by :func:`agent_status`'s rule (the SLA agent
    policy measures how long no healthy agent covered a label set from here)."""
    if agent.last_heartbeat_at is None:
        return agent.created_at
    if agent.stopped_at is not None:
        return agent.stopped_at
    return min(agent.last_heartbeat_at, agent.last_poll_at or agent.created_at) + _window(agent)


def agent_status(agent: Agent, now: datetime) -> str:
    """``stopped`` after a clean shutdown, ``offline`` with no heartbeat within the window,
    ``unhealthy`` when it heartbeats but its claim loop has not polled within the window (a
    never-polled agent gets one window from registration), ``healthy`` otherwise."""
    if agent.stopped_at is not None:
        return STOPPED
    window = _window(agent)
    if agent.last_heartbeat_at is None or agent.last_heartbeat_at < now - window:
        return OFFLINE
    last_poll = agent.last_poll_at or agent.created_at
    if last_poll < now - window:
        return UNHEALTHY
    return HEALTHY


def _validate_labels(labels: Any) -> list[str]:
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise InvalidInput("labels must be a list of strings.", details={"labels": ["Invalid."]})
    if len(labels) > MAX_LABELS or any(not label or len(label) > MAX_LABEL_LENGTH for label in labels):
        raise InvalidInput(
            f"An agent has at most {MAX_LABELS} labels of 1–{MAX_LABEL_LENGTH} characters.",
            details={"labels": ["Invalid."]},
        )
    return sorted(set(labels))


def _validate(name: str, type: str, version: str, poll_interval_seconds: int) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("An agent needs a name of 1–100 characters.", details={"name": ["Invalid."]})
    if type not in Agent.Type.values:
        raise InvalidInput(
            f"'{type}' is not an agent type; use one of {', '.join(Agent.Type.values)}.",
            code="invalid_agent_type",
            details={"type": ["Invalid."]},
        )
    if len(version or "") > 64:
        raise InvalidInput("version is at most 64 characters.", details={"version": ["Invalid."]})
    if not isinstance(poll_interval_seconds, int) or not 1 <= poll_interval_seconds <= 3600:
        raise InvalidInput(
            "poll_interval_seconds must be between 1 and 3600.", details={"poll_interval_seconds": ["Invalid."]}
        )
    return name


@transaction.atomic
def agent_register(
    *,
    actor: Principal,
    name: str,
    type: str,
    labels: list[str],
    version: str = "",
    poll_interval_seconds: int = 10,
) -> Agent:
    """Create or update the workspace's agent called ``name`` (re-registering after a restart
    returns the same agent). Only a service account's API key may register an agent."""
    authorize(actor, "agent:register", actor.workspace)
    if actor.service_account is None:
        raise Forbidden(
            "Agents register with a service account's API key, not a user's credentials.",
            code="service_account_required",
        )
    name = _validate(name, type, version, poll_interval_seconds)
    labels = _validate_labels(labels)
    fields = {
        "type": type, "labels": labels, "version": version or "", "poll_interval_seconds": poll_interval_seconds,
        "service_account": actor.service_account, "stopped_at": None,
    }
    with workspace_scope([actor.workspace.pk]):
        agents = Agent.objects.for_workspace(actor.workspace).select_for_update()
        agent = agents.filter(name=name).first()
        created = agent is None
        if agent is None:
            try:
                with transaction.atomic():
                    agent = Agent.objects.unscoped().create(
                        workspace=actor.workspace, name=name, last_heartbeat_at=Now(), **fields
                    )
            except IntegrityError:
                # A concurrent registration of the same name won; update that one instead.
                created = False
                agent = agents.get(name=name)
        if not created:
            for attr, value in fields.items():
                setattr(agent, attr, value)
            agent.last_heartbeat_at = Now()
            agent.save(update_fields=[*fields, "last_heartbeat_at"])
        agent.refresh_from_db(fields=["last_heartbeat_at"])
        events.agent_registered(agent, created=created)
    return agent


def ensure_own_agent(actor: Principal, agent: Agent, action: str) -> None:
    """Authorize ``action`` on ``agent`` and check the actor is the agent's own service account
    (one agent's key cannot heartbeat or claim as another agent of the workspace)."""
    authorize(actor, action, agent)
    if actor.service_account is None or agent.service_account_id != actor.service_account.pk:
        raise Forbidden(
            f"Only the service account that registered agent '{agent.name}' may act as it.",
            code="not_agent_owner",
        )


@transaction.atomic
def agent_heartbeat(
    *, actor: Principal, agent: Agent, polled: bool = False, flow_runs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Record a sign of life (and, with ``polled``, a claim-loop cycle) on the database clock.
    Returns what the agent should know: its status, the server time, its poll interval, the runs it
    holds whose cancellation was requested, and which of ``flow_runs`` (``{"id", "attempt"}``: the
    runs whose processes it runs) it no longer holds — another attempt, another agent, or gone — so
    it stops their processes (D2)."""
    ensure_own_agent(actor, agent, "agent:heartbeat")
    with workspace_scope([agent.workspace_id]):
        locked, now = _record_sign_of_life(agent, polled=polled)
        status = agent_status(locked, now)
        cancel_ids = list(
            FlowRun.objects.for_workspace(agent.workspace_id)
            .filter(agent=locked, state_type=StateType.CANCELLING)
            .values_list("pk", flat=True)
        )
        lost = _lost_flow_runs(locked, flow_runs or [])
    agent.last_heartbeat_at, agent.last_poll_at = locked.last_heartbeat_at, locked.last_poll_at
    return {
        "agent_id": str(locked.pk),
        "status": status,
        "server_time": now.isoformat(),
        "poll_interval_seconds": locked.poll_interval_seconds,
        "cancel_flow_run_ids": [str(pk) for pk in cancel_ids],
        "lost_flow_run_ids": lost,
    }


def _lost_flow_runs(agent: Agent, flow_runs: list[dict[str, Any]]) -> list[str]:
    """Of the runs an agent says it runs, those it no longer holds: missing, on another attempt, or
    claimed by another agent. A run its own attempt finished is still its own (its process may be
    sending its last logs)."""
    if not flow_runs:
        return []
    held = {
        str(pk): (attempt, agent_id)
        for pk, attempt, agent_id in FlowRun.objects.for_workspace(agent.workspace_id)
        .filter(pk__in=[run["id"] for run in flow_runs])
        .values_list("pk", "attempt", "agent_id")
    }
    return sorted(
        str(run["id"]) for run in flow_runs
        if held.get(str(run["id"])) != (run["attempt"], agent.pk)
    )


def _record_sign_of_life(agent: Agent, *, polled: bool) -> tuple[Agent, datetime]:
    """Lock the agent, stamp a heartbeat (and a poll) with the database clock, and publish
    ``agent.status_changed`` when that changes its status. The caller scopes the transaction."""
    locked = (
        Agent.objects.for_workspace(agent.workspace_id).select_for_update().annotate(db_now=Now()).get(pk=agent.pk)
    )
    now: datetime = locked.db_now
    previous = agent_status(locked, now)
    locked.last_heartbeat_at = now
    locked.stopped_at = None
    update = ["last_heartbeat_at", "stopped_at"]
    if polled:
        locked.last_poll_at = now
        update.append("last_poll_at")
    locked.save(update_fields=update)
    status = agent_status(locked, now)
    if status != previous:
        events.agent_status_changed(locked, previous=previous, status=status)
    return locked, now


@transaction.atomic
def agent_stop(*, actor: Principal, agent: Agent) -> dict[str, Any]:
    """The agent says it is shutting down cleanly (its runs are finished or handed back): it is
    ``stopped`` at once, rather than healthy until its liveness window runs out, and
    ``agent.status_changed`` tells open pages. Idempotent: stopping a stopped agent changes nothing.
    Only the agent's own key may stop it."""
    ensure_own_agent(actor, agent, "agent:heartbeat")
    with workspace_scope([agent.workspace_id]):
        locked = (
            Agent.objects.for_workspace(agent.workspace_id).select_for_update().annotate(db_now=Now()).get(pk=agent.pk)
        )
        now: datetime = locked.db_now
        previous = agent_status(locked, now)
        if locked.stopped_at is None:
            locked.stopped_at = now
            # Recorded as announced so the silence sweep does not announce the stop a second time.
            locked.announced_status = STOPPED
            locked.save(update_fields=["stopped_at", "announced_status"])
            events.agent_status_changed(locked, previous=previous, status=STOPPED)
    agent.stopped_at = locked.stopped_at
    return {"agent_id": str(locked.pk), "status": STOPPED, "stopped_at": locked.stopped_at.isoformat()}


# A claim-loop cycle is stamped at most this often: agents claiming in a tight loop (one claim per
# run) would otherwise write their row on every claim, for liveness windows of a minute or more.
POLL_STAMP_EVERY = timedelta(seconds=1)


def agent_record_poll(agent: Agent, *, now: datetime | None = None) -> None:
    """A claim-loop cycle (a claim is also a sign of life), on the claim's hot path, at most once
    per :data:`POLL_STAMP_EVERY`: nothing when ``agent`` as the caller read it was stamped less
    than that before ``now`` (the claim's database clock, when it has one), else one statement on
    PostgreSQL (lock, read the previous stamps, write the new ones — unless a concurrent claim just
    did)."""
    # A stopped agent that claims is running again: always stamp it, so it leaves ``stopped``.
    if (now is not None and agent.last_poll_at is not None and agent.last_poll_at > now - POLL_STAMP_EVERY
            and agent.stopped_at is None):
        return
    if not settings.IS_POSTGRES:
        if (agent.last_poll_at is None or agent.last_poll_at <= timezone.now() - POLL_STAMP_EVERY
                or agent.stopped_at is not None):
            _record_sign_of_life(agent, polled=True)
        return
    table = Agent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {table} AS a SET last_poll_at = clock.ts, last_heartbeat_at = clock.ts, stopped_at = NULL
                FROM (SELECT statement_timestamp() AS ts) AS clock,
                     (SELECT last_poll_at, last_heartbeat_at, stopped_at FROM {table}
                      WHERE id = %s AND workspace_id = %s
                        AND (last_poll_at IS NULL OR stopped_at IS NOT NULL
                             OR last_poll_at <= statement_timestamp() - make_interval(secs => %s))
                      FOR UPDATE) AS old
                WHERE a.id = %s
                RETURNING old.last_heartbeat_at, old.last_poll_at, a.created_at, a.poll_interval_seconds, clock.ts,
                          old.stopped_at""",  # noqa: S608 (table name from the model)
            [agent.pk, agent.workspace_id, POLL_STAMP_EVERY.total_seconds(), agent.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return
    old_heartbeat, old_poll, created_at, interval, now, old_stopped = row
    snapshot = Agent(pk=agent.pk, workspace_id=agent.workspace_id, name=agent.name, created_at=created_at,
                     poll_interval_seconds=interval, last_heartbeat_at=old_heartbeat, last_poll_at=old_poll,
                     stopped_at=old_stopped)
    previous = agent_status(snapshot, now)
    snapshot.last_heartbeat_at = snapshot.last_poll_at = now
    snapshot.stopped_at = None
    status = agent_status(snapshot, now)
    if status != previous:
        events.agent_status_changed(snapshot, previous=previous, status=status)


def announce_silent_agents() -> int:
    """Periodic sweep: announce agents that went unhealthy or offline by *not* calling in (a
    killed host, a frozen claim loop) with ``agent.status_changed``; returns how many. Recovery is
    announced by the heartbeat that ends the silence, so here it is only recorded. Safe to run
    concurrently: each agent row is taken with SKIP LOCKED."""
    announced = 0
    with transaction.atomic(), rls_bypass():
        now = db_now()
        agents = list(Agent.objects.unscoped().select_for_update(skip_locked=True)
                      .only("pk", "workspace_id", "name", "created_at", "poll_interval_seconds", "last_heartbeat_at",
                            "last_poll_at", "stopped_at", "announced_status"))
        for agent in agents:
            status = agent_status(agent, now)
            if status == agent.announced_status:
                continue
            if status != HEALTHY:
                events.agent_status_changed(agent, previous=agent.announced_status, status=status)
                announced += 1
            Agent.objects.unscoped().filter(pk=agent.pk).update(announced_status=status)
    return announced


def run_has_live_agent(flow_run: FlowRun) -> bool:
    """Whether some healthy agent of the run's workspace covers its labels (run ⊆ agent)."""
    with workspace_scope([flow_run.workspace_id]):
        now = db_now()
        candidates = agents_covering_labels(workspace=flow_run.workspace_id, labels=flow_run.labels)
        return any(agent_status(agent, now) == HEALTHY for agent in candidates)
