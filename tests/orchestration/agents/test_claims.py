"""Claims: due runs whose labels the agent covers are handed to exactly one agent (D1), with a
lease on the database clock (D6), by a query served by the partial index flow_run_due_idx (D8)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.utils import timezone

from core.errors import InvalidInput
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import db_now
from orchestration.models import FlowRun, FlowRunState, StateType
from orchestration.services.claims import due_runs_sql, flow_runs_claim
from tests.orchestration.agents.conftest import agent_principal, due_runs
from tests.orchestration.factories import AgentFactory, FlowRunFactory
from tests.orchestration.plans import analyze_as_owner, finished_history, generic_plan


def _fetch(run: FlowRun) -> FlowRun:
    with rls_bypass():
        return FlowRun.objects.unscoped().get(pk=run.pk)


@pytest.mark.django_db
def test_a_claim_moves_the_oldest_due_run_to_pending_with_agent_and_lease(actor_a, agent_a, version_a):
    # given
    older, newer = due_runs(version_a, 1, minutes_ago=10) + due_runs(version_a, 1, minutes_ago=5)
    # when
    (claimed,) = flow_runs_claim(actor=actor_a, agent=agent_a, limit=1, lease_seconds=60)
    # then
    assert claimed.pk == older.pk
    stored = _fetch(older)
    assert (stored.state_type, stored.agent_id) == (StateType.PENDING, agent_a.pk)
    with rls_bypass():
        now = db_now()
        history = list(FlowRunState.objects.unscoped().filter(flow_run=older).values_list("type", "details"))
    assert abs(stored.lease_expires_at - now - timedelta(seconds=60)) < timedelta(seconds=5)
    assert history[-1][0] == StateType.PENDING and history[-1][1]["agent_id"] == str(agent_a.pk)
    assert _fetch(newer).state_type == StateType.SCHEDULED


@pytest.mark.django_db
def test_runs_not_due_yet_and_runs_in_other_states_are_not_claimed(actor_a, agent_a, version_a):
    # given
    FlowRunFactory(flow_version=version_a, scheduled_start=timezone.now() + timedelta(hours=1))
    (running,) = due_runs(version_a, 1)
    with rls_bypass():
        FlowRun.objects.unscoped().filter(pk=running.pk).update(state_type=StateType.COMPLETED)  # fixture state
    # when
    claimed = flow_runs_claim(actor=actor_a, agent=agent_a, limit=10)
    # then
    assert claimed == []


@pytest.mark.django_db
def test_late_and_awaiting_retry_runs_are_claimed_too(actor_a, agent_a, version_a):
    # given
    late = FlowRunFactory(flow_version=version_a, scheduled_start=timezone.now() - timedelta(hours=1),
                          state_name="Late")
    retry = FlowRunFactory(flow_version=version_a, scheduled_start=timezone.now() - timedelta(minutes=1),
                           state_name="AwaitingRetry")
    # when
    claimed = flow_runs_claim(actor=actor_a, agent=agent_a, limit=10)
    # then
    assert [run.pk for run in claimed] == [late.pk, retry.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("run_labels", "agent_labels", "claimed"),
    [
        ([], [], True),
        ([], ["prod"], True),
        (["prod"], ["prod", "gpu"], True),
        (["prod", "gpu"], ["gpu", "prod"], True),
        (["prod"], [], False),
        (["prod", "gpu"], ["prod"], False),
        (["tpu"], ["prod", "gpu"], False),
    ],
)
def test_an_agent_claims_only_runs_whose_labels_it_covers(world_a, actor_a, version_a, run_labels, agent_labels,
                                                          claimed):
    # given
    agent = AgentFactory(workspace=world_a.workspace, service_account=world_a.agent, labels=agent_labels)
    due_runs(version_a, 1, labels=run_labels)
    # when
    result = flow_runs_claim(actor=actor_a, agent=agent, limit=5)
    # then
    assert bool(result) is claimed


@pytest.mark.django_db
def test_an_agent_of_workspace_b_never_claims_runs_of_workspace_a(world_b, actor_b, version_a):
    # given
    due_runs(version_a, 3)
    agent_b = AgentFactory(workspace=world_b.workspace, service_account=world_b.agent, labels=[])
    # when
    claimed = flow_runs_claim(actor=actor_b, agent=agent_b, limit=10)
    # then
    assert claimed == []
    with rls_bypass():
        assert FlowRun.objects.unscoped().filter(state_type=StateType.SCHEDULED).count() == 3


@pytest.mark.django_db
def test_claiming_with_another_workspaces_agent_is_not_found(actor_a, world_b):
    # given
    from accounts.authz import NotFound

    agent_b = AgentFactory(workspace=world_b.workspace)
    # when / then
    with pytest.raises(NotFound):
        flow_runs_claim(actor=actor_a, agent=agent_b)


@pytest.mark.django_db
def test_a_lookahead_claims_runs_due_within_it_and_no_later(actor_a, agent_a, version_a):
    # given: runs due in 2 s and in 30 s
    soon = FlowRunFactory(flow_version=version_a, scheduled_start=timezone.now() + timedelta(seconds=2))
    FlowRunFactory(flow_version=version_a, scheduled_start=timezone.now() + timedelta(seconds=30))
    # when / then: without a lookahead neither is due; with 5 s only the first
    assert flow_runs_claim(actor=actor_a, agent=agent_a, limit=10) == []
    claimed = flow_runs_claim(actor=actor_a, agent=agent_a, limit=10, lookahead_seconds=5)
    assert [run.pk for run in claimed] == [soon.pk]
    for bad in (-1, 6, True):
        with pytest.raises(InvalidInput):
            flow_runs_claim(actor=actor_a, agent=agent_a, lookahead_seconds=bad)


@pytest.mark.django_db
@pytest.mark.parametrize(("limit", "lease_seconds"), [(0, 60), (101, 60), (1, 5), (1, 7200)])
def test_claim_bounds_are_clear_errors(actor_a, agent_a, limit, lease_seconds):
    with pytest.raises(InvalidInput):
        flow_runs_claim(actor=actor_a, agent=agent_a, limit=limit, lease_seconds=lease_seconds)


@pytest.mark.django_db
def test_a_claim_records_a_claim_loop_cycle(actor_a, agent_a):
    # given
    with rls_bypass():
        agent_a.__class__.objects.unscoped().filter(pk=agent_a.pk).update(last_poll_at=None)
    # when
    flow_runs_claim(actor=actor_a, agent=agent_a)
    # then
    with rls_bypass():
        assert agent_a.__class__.objects.unscoped().get(pk=agent_a.pk).last_poll_at is not None


@pytest.mark.django_db
def test_a_claim_by_an_unhealthy_agent_announces_it_healthy_again(world_a, actor_a,
                                                                    django_capture_on_commit_callbacks):
    # given: an agent that heartbeats but whose claim loop stalled 10 minutes ago
    from orchestration.services.agents import HEALTHY, UNHEALTHY, agent_status

    now = timezone.now()
    agent = AgentFactory(workspace=world_a.workspace, service_account=world_a.agent, last_heartbeat_at=now,
                         last_poll_at=now - timedelta(minutes=10))
    assert agent_status(agent, now) == UNHEALTHY
    # when: its claim loop polls again (nothing is due)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        flow_runs_claim(actor=actor_a, agent=agent)
    # then: one agent.status_changed event, and it is healthy
    assert len(callbacks) == 1
    with rls_bypass():
        stored = agent.__class__.objects.unscoped().get(pk=agent.pk)
        assert agent_status(stored, db_now()) == HEALTHY


@pytest.mark.django_db
def test_d6_the_agent_hosts_clock_skew_does_not_change_the_lease(actor_a, agent_a, version_a):
    # given: this process's clock is two hours ahead (a skewed agent host)
    (run,) = due_runs(version_a, 1)
    # when
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        flow_runs_claim(actor=actor_a, agent=agent_a, lease_seconds=60)
    # then: the lease is 60 s from the database's now, not from the skewed clock
    with rls_bypass():
        now = db_now()
    assert abs(_fetch(run).lease_expires_at - (now + timedelta(seconds=60))) < timedelta(seconds=10)


@pytest.mark.django_db
def test_d6_a_run_due_by_the_skewed_clock_but_not_by_the_database_is_not_claimed(actor_a, agent_a, version_a):
    # given: a run due in an hour
    FlowRunFactory(flow_version=version_a, scheduled_start=timezone.now() + timedelta(hours=1))
    # when: the agent's clock says it is two hours later
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        claimed = flow_runs_claim(actor=actor_a, agent=agent_a, limit=5)
    # then
    assert claimed == []


@pytest.mark.django_db(transaction=True)
def test_d8_the_claim_query_is_served_by_the_partial_due_index(world_a, agent_a, version_a):
    # given: many historical runs and some due ones, with fresh statistics
    finished_history(version_a, 5000)
    due_runs(version_a, 100)
    analyze_as_owner()
    # when
    with workspace_scope([world_a.workspace.pk]):
        sql, params = due_runs_sql(agent_a, 1)
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    # then
    assert "flow_run_due_idx" in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.django_db(transaction=True)
def test_d8_the_claim_query_uses_the_partial_due_index_on_a_generic_plan_too(world_a, agent_a, version_a):
    """The pool's connections prepare the claim query, and a prepared statement runs on a generic
    plan: one that cannot prove the run's state is the index's could read every run of the
    workspace (it did while the state was a bound parameter)."""
    finished_history(version_a, 3000)
    due_runs(version_a, 10)
    analyze_as_owner()
    sql, params = due_runs_sql(agent_a, 1)
    # Each parameter written as a literal of the type PREPARE inferred for it.
    literals = [str(p) if isinstance(p, int) else "'" + str(p).replace("'", "''") + "'" for p in params]
    with workspace_scope([world_a.workspace.pk]):
        plan = generic_plan(sql, literals)
    assert "flow_run_due_idx" in plan, plan


@pytest.mark.django_db(transaction=True)
def test_d1_eight_parallel_claimers_claim_each_of_500_due_runs_exactly_once(world_a, version_a):
    # given
    due_runs(version_a, 500)
    actor = agent_principal(world_a)
    agents = [AgentFactory(workspace=world_a.workspace, service_account=world_a.agent, labels=[]) for _ in range(8)]
    claims: list[list[str]] = [[] for _ in agents]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(agents))

    def claimer(index: int) -> None:
        try:
            barrier.wait()
            while True:
                runs = flow_runs_claim(actor=actor, agent=agents[index], limit=1)
                if not runs:
                    return
                claims[index].extend(str(run.pk) for run in runs)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(agents))]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert errors == []
    every_claim = [run_id for claimed in claims for run_id in claimed]
    assert len(every_claim) == 500
    assert len(set(every_claim)) == 500
    assert sum(1 for claimed in claims if claimed) > 1  # the claimers really ran side by side
    with rls_bypass():
        pending = FlowRun.objects.unscoped().filter(state_type=StateType.PENDING)
        assert pending.count() == 500
        assert FlowRunState.objects.unscoped().filter(type=StateType.PENDING).count() == 500
        holders = {str(run.pk): str(run.agent_id) for run in pending}
    by_agent = {str(run_id): str(agents[i].pk) for i, claimed in enumerate(claims) for run_id in claimed}
    assert holders == by_agent


@pytest.mark.django_db
def test_a_service_account_cannot_claim_as_another_accounts_agent(world_a, actor_a):
    # given: an agent registered by another service account of the same workspace
    from core.errors import Forbidden
    from tests.factories import ServiceAccountFactory

    other = AgentFactory(
        workspace=world_a.workspace, service_account=ServiceAccountFactory(workspace=world_a.workspace)
    )
    # when / then
    with pytest.raises(Forbidden) as excinfo:
        flow_runs_claim(actor=actor_a, agent=other)
    assert excinfo.value.code == "not_agent_owner"
