"""Leases: the flow-run process heartbeats to extend its run's lease (D2, D6), and the reaper
crashes runs whose lease ended — retried while crash retries remain, then FAILED — releasing their
concurrency slots in the same transaction (D5)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db import connections
from django.utils import timezone

from accounts.authz import NotFound, principal_for_user
from accounts.models import Role
from core.errors import Conflict, InvalidInput
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, db_now, flow_run_set_state, task_run_set_state
from orchestration.models import ConcurrencySlot, FlowRun, FlowRunState, StateType
from orchestration.services.claims import flow_runs_claim
from orchestration.services.concurrency import concurrency_limit_set
from orchestration.services.heartbeats import HEARTBEAT_LEASE_SECONDS, flow_run_heartbeat
from orchestration.services.reaper import reap_lost_runs
from orchestration.services.runs import flow_run_cancel
from tests.orchestration.agents.conftest import agent_principal, due_runs
from tests.orchestration.factories import AgentFactory, TaskRunFactory


def _fetch(run: FlowRun) -> FlowRun:
    with rls_bypass():
        return FlowRun.objects.unscoped().get(pk=run.pk)


def _start(actor, run: FlowRun) -> None:  # type: ignore[no-untyped-def]
    with workspace_scope([run.workspace_id]):
        result = flow_run_set_state(actor=actor, flow_run_id=run.pk, state=ProposedState(type=StateType.RUNNING),
                                    workspace_id=run.workspace_id, attempt=run.attempt)
    assert result.status is SetStateStatus.ACCEPT, result.reason


def _after_lease() -> object:
    """A reaper clock just past any lease handed out now."""
    with rls_bypass():
        return db_now() + timedelta(seconds=HEARTBEAT_LEASE_SECONDS + 5)


# --- heartbeats (D2, D6) -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_heartbeat_extends_the_lease_from_the_db_clock(actor_a, agent_a, version_a):
    # given: a claimed, started run, heartbeating from a host whose clock is a day behind
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a, lease_seconds=10)
    _start(actor_a, run)
    # when
    with time_machine.travel(timezone.now() - timedelta(days=1)):
        reply = flow_run_heartbeat(actor=actor_a, flow_run_id=run.pk, attempt=1)
    # then
    stored = _fetch(run)
    with rls_bypass():
        now = db_now()
    assert abs(stored.lease_expires_at - now - timedelta(seconds=HEARTBEAT_LEASE_SECONDS)) < timedelta(seconds=5)
    assert reply == {"cancellation_requested": False, "lease_expires_at": stored.lease_expires_at.isoformat(),
                     "state_type": StateType.RUNNING, "attempt": 1}


@pytest.mark.django_db
def test_a_heartbeat_may_ask_for_a_shorter_or_longer_lease_within_bounds(actor_a, agent_a, version_a):
    # given
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a, lease_seconds=10)
    _start(actor_a, run)
    # when
    flow_run_heartbeat(actor=actor_a, flow_run_id=run.pk, attempt=1, lease_seconds=15)
    # then
    with rls_bypass():
        now = db_now()
    assert abs(_fetch(run).lease_expires_at - now - timedelta(seconds=15)) < timedelta(seconds=3)
    for bad in (9, 3601, True, "60"):
        with pytest.raises(InvalidInput):
            flow_run_heartbeat(actor=actor_a, flow_run_id=run.pk, attempt=1, lease_seconds=bad)


@pytest.mark.django_db
def test_the_heartbeat_reply_says_when_cancellation_was_requested(world_a, actor_a, agent_a, version_a):
    # given: a running run that a developer cancels
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a)
    _start(actor_a, run)
    developer = principal_for_user(world_a.users[Role.DEVELOPER], world_a.workspace)
    flow_run_cancel(actor=developer, flow_run=_fetch(run))
    # when
    reply = flow_run_heartbeat(actor=actor_a, flow_run_id=run.pk, attempt=1)
    # then
    assert reply["cancellation_requested"] is True
    assert reply["state_type"] == StateType.CANCELLING


@pytest.mark.django_db
def test_d2_a_heartbeat_for_a_stale_attempt_is_409_and_changes_nothing(actor_a, agent_a, version_a):
    # given: attempt 1 lost its lease, was crashed by the reaper and rescheduled as attempt 2
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a)
    _start(actor_a, run)
    assert reap_lost_runs(now=_after_lease()) == 1
    before = _fetch(run)
    assert (before.attempt, before.state_name) == (2, "AwaitingRetry")
    # when: attempt 1's process, still alive, heartbeats
    with pytest.raises(Conflict) as excinfo:
        flow_run_heartbeat(actor=actor_a, flow_run_id=run.pk, attempt=1)
    # then: 409 stale_attempt (the agent stops the process), and the run is untouched
    assert excinfo.value.status_code == 409
    assert excinfo.value.code == "stale_attempt"
    assert excinfo.value.details["attempt"] == 2
    after = _fetch(run)
    assert (after.state_version, after.lease_expires_at, after.attempt) == (
        before.state_version, before.lease_expires_at, before.attempt)


@pytest.mark.django_db
def test_a_heartbeat_for_another_workspaces_run_or_no_run_is_not_found_and_changes_nothing(
        actor_a, actor_b, agent_a, version_a):
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a)
    _start(actor_a, run)
    before = _fetch(run)
    # when: workspace b's key names a's run, and a's key names a run that does not exist
    for actor, run_id in ((actor_b, run.pk), (actor_a, uuid.uuid4())):
        with pytest.raises(NotFound):
            flow_run_heartbeat(actor=actor, flow_run_id=run_id, attempt=1)
    # then: a's run is untouched
    after = _fetch(run)
    assert (after.lease_expires_at, after.state_version) == (before.lease_expires_at, before.state_version)


@pytest.mark.django_db
def test_d2_a_stale_attempts_state_report_is_refused_by_the_engine(actor_a, agent_a, version_a):
    # given
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a)
    _start(actor_a, run)
    reap_lost_runs(now=_after_lease())
    # when: attempt 1 reports COMPLETED
    with workspace_scope([run.workspace_id]):
        result = flow_run_set_state(actor=actor_a, flow_run_id=run.pk, state=ProposedState(type=StateType.COMPLETED),
                                    workspace_id=run.workspace_id, attempt=1)
    # then
    assert result.status is not SetStateStatus.ACCEPT
    assert result.details.get("code") == "stale_attempt"
    assert _fetch(run).state_name == "AwaitingRetry"


@pytest.mark.django_db
def test_a_heartbeat_for_a_finished_run_is_409_run_not_held(actor_a, agent_a, version_a):
    # given
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a)
    _start(actor_a, run)
    with workspace_scope([run.workspace_id]):
        flow_run_set_state(actor=actor_a, flow_run_id=run.pk, state=ProposedState(type=StateType.COMPLETED),
                           workspace_id=run.workspace_id, attempt=1)
    # when / then
    with pytest.raises(Conflict) as excinfo:
        flow_run_heartbeat(actor=actor_a, flow_run_id=run.pk, attempt=1)
    assert excinfo.value.code == "run_not_held"


# --- the reaper (D5) -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_d5_a_claimed_run_that_never_starts_is_crashed_with_a_reason_and_retried(actor_a, agent_a, version_a):
    # given
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a, lease_seconds=30)
    # when: the reaper ticks before the lease ends, then after
    assert reap_lost_runs() == 0
    reaped = reap_lost_runs(now=_after_lease())
    # then
    assert reaped == 1
    stored = _fetch(run)
    assert (stored.state_type, stored.state_name, stored.attempt) == (StateType.SCHEDULED, "AwaitingRetry", 2)
    assert (stored.agent_id, stored.lease_expires_at) == (None, None)
    assert "claimed but never started" in stored.state_message.lower()


@pytest.mark.django_db
def test_d5_a_running_run_without_heartbeats_is_crashed_until_retries_run_out_then_failed(
    actor_a, agent_a, version_a
):
    # given: the flow allows 2 crash retries (3 attempts)
    due_runs(version_a, 1)
    messages = []
    # when: three attempts in a row are claimed, started and lose their process
    for _ in range(3):
        (run,) = flow_runs_claim(actor=actor_a, agent=agent_a)
        _start(actor_a, run)
        assert reap_lost_runs(now=_after_lease()) == 1
        messages.append(_fetch(run).state_message)
    # then
    final = _fetch(run)
    assert (final.state_type, final.attempt) == (StateType.FAILED, 3)
    assert all("no heartbeat from the flow-run process" in message.lower() for message in messages)
    with rls_bypass():
        names = list(FlowRunState.objects.unscoped().filter(flow_run=run).values_list("name", flat=True))
    assert names.count("AwaitingRetry") == 2
    assert names[-1] == "Failed"
    assert flow_runs_claim(actor=actor_a, agent=agent_a) == []


@pytest.mark.django_db
def test_d5_a_crashed_run_releases_its_task_concurrency_slots_in_the_same_transaction(
    world_a, actor_a, agent_a, version_a
):
    # given: a running run whose task run holds a slot of the "db" limit
    admin = principal_for_user(world_a.users[Role.ADMIN], world_a.workspace)
    concurrency_limit_set(actor=admin, tag="db", limit=1)
    due_runs(version_a, 1)
    (run,) = flow_runs_claim(actor=actor_a, agent=agent_a)
    _start(actor_a, run)
    task_run = TaskRunFactory(flow_run=run, tags=["db"])
    with workspace_scope([run.workspace_id]):
        result = task_run_set_state(actor=actor_a, task_run_id=task_run.pk,
                                    state=ProposedState(type=StateType.RUNNING), workspace_id=run.workspace_id)
    assert result.status is SetStateStatus.ACCEPT
    with rls_bypass():
        assert ConcurrencySlot.objects.unscoped().filter(flow_run=run).count() == 1
    # when
    reap_lost_runs(now=_after_lease())
    # then
    with rls_bypass():
        assert ConcurrencySlot.objects.unscoped().filter(flow_run=run).count() == 0


@pytest.mark.django_db
def test_the_reaper_leaves_runs_whose_lease_is_alive_alone(actor_a, agent_a, version_a):
    # given: a running run that keeps heartbeating
    due_runs(version_a, 2)
    runs = flow_runs_claim(actor=actor_a, agent=agent_a, limit=2, lease_seconds=10)
    for run in runs:
        _start(actor_a, run)
    flow_run_heartbeat(actor=actor_a, flow_run_id=runs[0].pk, attempt=1)
    # when: a reaper tick just after the claim lease but before the heartbeat's lease ends
    with rls_bypass():
        cutoff = _fetch(runs[1]).lease_expires_at + timedelta(seconds=1)
    assert cutoff < _fetch(runs[0]).lease_expires_at
    reaped = reap_lost_runs(now=cutoff)
    # then
    assert reaped == 1
    assert _fetch(runs[0]).state_type == StateType.RUNNING
    assert _fetch(runs[1]).state_name == "AwaitingRetry"


@pytest.mark.django_db
def test_the_reaper_crosses_workspaces(world_a, world_b, actor_a, actor_b, agent_a, version_a):
    # given: a lost run in each workspace
    from tests.orchestration.factories import FlowVersionFactory

    version_b = FlowVersionFactory(flow__workspace=world_b.workspace, flow__project__workspace=world_b.workspace)
    agent_b = AgentFactory(workspace=world_b.workspace, service_account=world_b.agent)
    due_runs(version_a, 1)
    due_runs(version_b, 1)
    flow_runs_claim(actor=actor_a, agent=agent_a)
    flow_runs_claim(actor=actor_b, agent=agent_b)
    # when / then
    assert reap_lost_runs(now=_after_lease()) == 2


@pytest.mark.django_db(transaction=True)
def test_two_reapers_at_once_crash_each_lost_run_once(world_a, version_a):
    # given: 40 claimed runs whose leases are over
    actor = agent_principal(world_a)
    agent = AgentFactory(workspace=world_a.workspace, service_account=world_a.agent)
    due_runs(version_a, 40)
    flow_runs_claim(actor=actor, agent=agent, limit=40)
    cutoff = _after_lease()
    counts: list[int] = []
    errors: list[BaseException] = []

    def reaper() -> None:
        try:
            counts.append(reap_lost_runs(now=cutoff))
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reaper) for _ in range(2)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert errors == []
    assert sum(counts) == 40
    with rls_bypass():
        assert FlowRun.objects.unscoped().filter(state_name="AwaitingRetry", attempt=2).count() == 40
        assert FlowRunState.objects.unscoped().filter(name="AwaitingRetry").count() == 40


@pytest.mark.django_db
def test_a_run_marked_running_by_hand_without_a_lease_is_reaped_after_one_lease_period(world_a, version_a):
    # given: an admin marks a run RUNNING; no agent holds it, no process heartbeats
    from orchestration.services.runs import flow_run_mark

    (run,) = due_runs(version_a, 1)
    admin = principal_for_user(world_a.users[Role.ADMIN], world_a.workspace)
    flow_run_mark(actor=admin, flow_run=run, state_type=StateType.RUNNING)
    assert (_fetch(run).state_type, _fetch(run).lease_expires_at) == (StateType.RUNNING, None)
    with rls_bypass():
        soon = db_now() + timedelta(seconds=HEARTBEAT_LEASE_SECONDS / 2)
    # when / then: not within the grace period, but after it
    assert reap_lost_runs(now=soon) == 0
    assert reap_lost_runs(now=_after_lease()) == 1
    stored = _fetch(run)
    assert stored.state_name == "AwaitingRetry"
    assert "no lease" in stored.state_message.lower()
