"""The late-run policy at the claim: agents that come back seconds after a scheduled start claim
only what the flow's catch-up policy lets run, in the claim's own transaction, whether or not the
catch-up tick ran since (issue: ``catchup="latest"`` ran two missed runs)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from core.tenancy import rls_bypass
from orchestration.models import Catchup, FlowRun, FlowRunState, StateType
from orchestration.services.claims import flow_runs_claim
from tests.orchestration.agents.conftest import agent_principal
from tests.orchestration.factories import AgentFactory, FlowRunFactory, FlowVersionFactory
from tests.orchestration.schedules.factories import ScheduleFactory


def _version(world, catchup: str, max_lateness: int | None = None):  # type: ignore[no-untyped-def]
    return FlowVersionFactory(flow__workspace=world.workspace, flow__project__workspace=world.workspace,
                              flow__catchup=catchup, flow__max_lateness_seconds=max_lateness)


def _scheduled_runs(version, *seconds_ago: int, schedule=None) -> list[FlowRun]:  # type: ignore[no-untyped-def]
    """Runs a schedule of the version's flow created, due ``seconds_ago`` (oldest first as given)."""
    schedule = schedule or ScheduleFactory(flow=version.flow, interval_seconds=10)
    now = timezone.now()
    return [
        FlowRunFactory(flow_version=version, schedule=schedule, created_by_kind=FlowRun.CreatedBy.SCHEDULE,
                       scheduled_start=now - timedelta(seconds=ago))
        for ago in seconds_ago
    ]


def _stored(run: FlowRun) -> FlowRun:
    with rls_bypass():
        return FlowRun.objects.unscoped().get(pk=run.pk)


def _history(run: FlowRun) -> list[tuple[str, str]]:
    with rls_bypass():
        return list(FlowRunState.objects.unscoped().filter(flow_run=run).values_list("type", "name"))


@pytest.fixture
def agent(world_a):  # type: ignore[no-untyped-def]
    return AgentFactory(workspace=world_a.workspace, service_account=world_a.agent, labels=[])


@pytest.mark.django_db
@pytest.mark.parametrize("limit", [1, 10])
def test_agents_back_seconds_after_a_start_claim_only_the_newest_run_under_latest(world_a, actor_a, agent, limit):
    # given: a "latest" flow whose schedule's run 19 s ago was missed (Late) and whose next one
    # started 9 s ago; the catch-up tick has not run since
    version = _version(world_a, Catchup.LATEST)
    missed, newest = _scheduled_runs(version, 19, 9)
    # when: an agent comes back and claims
    claimed = flow_runs_claim(actor=actor_a, agent=agent, limit=limit)
    # then: it gets the newest run only; the missed one ended Skipped, with the tick's reason
    assert [run.pk for run in claimed] == [newest.pk]
    skipped = _stored(missed)
    assert (skipped.state_type, skipped.state_name, skipped.agent_id) == (StateType.COMPLETED, "Skipped", None)
    assert "catch-up policy 'latest': a newer run is due" in skipped.state_message
    assert _history(skipped) == [(StateType.COMPLETED, "Skipped")]
    assert flow_runs_claim(actor=actor_a, agent=agent, limit=10) == []


@pytest.mark.django_db
def test_one_claim_clears_a_whole_backlog_of_stale_runs_of_the_schedule(world_a, actor_a, agent):
    # given: half an hour of missed one-minute runs
    version = _version(world_a, Catchup.LATEST)
    runs = _scheduled_runs(version, *range(1800, 0, -60))
    # when
    claimed = flow_runs_claim(actor=actor_a, agent=agent, limit=1)
    # then: the newest runs; every older one is Skipped
    assert [run.pk for run in claimed] == [runs[-1].pk]
    assert {(_stored(r).state_type, _stored(r).state_name) for r in runs[:-1]} == {(StateType.COMPLETED, "Skipped")}


@pytest.mark.django_db
def test_a_newer_run_already_held_by_an_agent_makes_an_older_one_stale(world_a, actor_a, agent):
    # given: the newest run is already claimed; an older run of the same schedule is still due
    version = _version(world_a, Catchup.LATEST)
    older, newer = _scheduled_runs(version, 30, 5)
    assert [r.pk for r in flow_runs_claim(actor=actor_a, agent=agent, limit=1)] == [newer.pk]
    # (older was skipped by that claim already; a stale run left over by a race is made here)
    stale = _scheduled_runs(version, 40, schedule=older.schedule)[0]
    # when
    claimed = flow_runs_claim(actor=actor_a, agent=agent, limit=5)
    # then
    assert claimed == []
    assert _stored(stale).state_name == "Skipped"
    assert _stored(older).state_name == "Skipped"


@pytest.mark.django_db
def test_each_schedule_of_a_latest_flow_keeps_its_own_newest_run(world_a, actor_a, agent):
    version = _version(world_a, Catchup.LATEST)
    first = _scheduled_runs(version, 20, 10)
    second = _scheduled_runs(version, 15, 5)
    claimed = flow_runs_claim(actor=actor_a, agent=agent, limit=10)
    assert {run.pk for run in claimed} == {first[1].pk, second[1].pk}
    assert {_stored(first[0]).state_name, _stored(second[0]).state_name} == {"Skipped"}


@pytest.mark.django_db
def test_catchup_all_claims_every_missed_run(world_a, actor_a, agent):
    version = _version(world_a, Catchup.ALL)
    runs = _scheduled_runs(version, 19, 9)
    claimed = flow_runs_claim(actor=actor_a, agent=agent, limit=10)
    assert [run.pk for run in claimed] == [run.pk for run in runs]
    assert {_stored(r).state_type for r in runs} == {StateType.PENDING}


@pytest.mark.django_db
def test_a_run_later_than_the_maximum_lateness_is_skipped_at_the_claim(world_a, actor_a, agent):
    # given: a flow allowing 60 s of lateness, a manual run due 5 minutes ago and one due now
    version = _version(world_a, Catchup.ALL, max_lateness=60)
    start = timezone.now()
    too_late = FlowRunFactory(flow_version=version, scheduled_start=start - timedelta(minutes=5))
    in_time = FlowRunFactory(flow_version=version, scheduled_start=start - timedelta(seconds=2))
    # when
    claimed = flow_runs_claim(actor=actor_a, agent=agent, limit=1)
    # then
    assert [run.pk for run in claimed] == [in_time.pk]
    skipped = _stored(too_late)
    assert (skipped.state_type, skipped.state_name) == (StateType.COMPLETED, "Skipped")
    assert "maximum lateness of 60 s" in skipped.state_message


@pytest.mark.django_db
def test_a_run_awaiting_retry_is_not_a_missed_run(world_a, actor_a, agent):
    version = _version(world_a, Catchup.LATEST)
    retry, newest = _scheduled_runs(version, 30, 5)
    with rls_bypass():
        FlowRun.objects.unscoped().filter(pk=retry.pk).update(state_name="AwaitingRetry")  # fixture state
    claimed = flow_runs_claim(actor=actor_a, agent=agent, limit=10)
    assert {run.pk for run in claimed} == {retry.pk, newest.pk}


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_never_both_run_two_due_runs_of_a_latest_schedule(world_a):
    # given: 20 "latest" flows, each with a missed run and a newer due one, and 8 claimers
    # holding one run at a time (each claimer may lock either run of a pair first)
    version = _version(world_a, Catchup.LATEST)
    pairs = [_scheduled_runs(version, 19, 9) for _ in range(20)]
    actor = agent_principal(world_a)
    agents = [AgentFactory(workspace=world_a.workspace, service_account=world_a.agent, labels=[]) for _ in range(8)]
    claims: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(agents))
    lock = threading.Lock()

    def claimer(index: int) -> None:
        try:
            barrier.wait()
            while True:
                runs = flow_runs_claim(actor=actor, agent=agents[index], limit=1)
                if not runs:
                    return
                with lock:
                    claims.extend(str(run.pk) for run in runs)
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
    # then: each newest run claimed exactly once, no missed run claimed, each missed one Skipped once
    assert errors == []
    assert sorted(claims) == sorted(str(newest.pk) for _, newest in pairs)
    for missed, _ in pairs:
        assert _history(missed) == [(StateType.COMPLETED, "Skipped")]
