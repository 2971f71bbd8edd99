"""A web outage is not the agents' death (issue 9, point 5).

Every server process beats into one platform row with the database clock; the reaper reaps only
while that beat is fresh, and the beat that ends a gap moves every held run's lease on by the gap,
so agents get back the time the outage took from them. Where no server ever beat, the reaper reaps
as before. (The fault suite proves it end to end: tests/faults/test_web_outage.py.)
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection, connections

from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state
from orchestration.models import FlowRun, StateType, WebTierBeat
from orchestration.services.claims import flow_runs_claim
from orchestration.services.reaper import reap_lost_runs
from orchestration.services.web_tier import GAP_SECONDS, web_tier_beat, web_tier_is_up
from tests.orchestration.agents.conftest import due_runs


def _clock() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def _fetch(run: FlowRun) -> FlowRun:
    with rls_bypass():
        return FlowRun.objects.unscoped().get(pk=run.pk)


def _running(actor, agent, version, count: int = 1) -> list[FlowRun]:  # type: ignore[no-untyped-def]
    due_runs(version, count)
    runs = flow_runs_claim(actor=actor, agent=agent, limit=count, lease_seconds=10)
    for run in runs:
        with workspace_scope([run.workspace_id]):
            result = flow_run_set_state(actor=actor, flow_run_id=run.pk, state=ProposedState(type=StateType.RUNNING),
                                        workspace_id=run.workspace_id, attempt=run.attempt)
        assert result.status is SetStateStatus.ACCEPT
    return [_fetch(run) for run in runs]


def _web_tier_seen(at: datetime) -> None:
    """The web tier's last beat was at ``at`` (as a beat would have written it)."""
    WebTierBeat.objects.update_or_create(pk=1, defaults={"up_since": at - timedelta(hours=1), "last_seen_at": at})


@pytest.mark.django_db
def test_with_no_server_ever_beating_the_reaper_reaps_as_before(actor_a, agent_a, version_a):
    (run,) = _running(actor_a, agent_a, version_a)
    assert not WebTierBeat.objects.exists()
    assert reap_lost_runs(now=run.lease_expires_at + timedelta(seconds=1)) == 1
    assert _fetch(run).state_name == "AwaitingRetry"


@pytest.mark.django_db
def test_while_the_web_tier_beats_a_lost_run_is_reaped(actor_a, agent_a, version_a):
    (run,) = _running(actor_a, agent_a, version_a)
    later = run.lease_expires_at + timedelta(seconds=1)
    _web_tier_seen(later - timedelta(seconds=1))
    assert reap_lost_runs(now=later) == 1


@pytest.mark.django_db
def test_while_the_web_tier_is_silent_nothing_is_reaped(actor_a, agent_a, version_a):
    # given: runs whose leases ran out while no server process beat for longer than the gap
    runs = _running(actor_a, agent_a, version_a, 3)
    later = max(run.lease_expires_at for run in runs) + timedelta(seconds=30)
    _web_tier_seen(later - timedelta(seconds=GAP_SECONDS + 1))
    # when
    reaped = reap_lost_runs(now=later)
    # then: the outage is not read as the agents' death
    assert reaped == 0
    assert {_fetch(run).state_type for run in runs} == {StateType.RUNNING}
    assert not web_tier_is_up(later) and web_tier_is_up(later - timedelta(seconds=GAP_SECONDS))


@pytest.mark.django_db
def test_the_beat_that_ends_a_gap_moves_every_held_lease_on_by_the_gap(actor_a, agent_a, version_a):
    # given: two held runs, one finished run, and a web tier silent for ~30 s
    held = _running(actor_a, agent_a, version_a, 2)
    _web_tier_seen(_clock() - timedelta(seconds=30))
    # when: a server process beats again
    gap = web_tier_beat()
    # then: each lease moved on by exactly the gap, and the row says when the web tier came back
    assert 30 <= gap < 40
    for before in held:
        after = _fetch(before)
        assert after.lease_expires_at - before.lease_expires_at == timedelta(seconds=gap)
    row = WebTierBeat.objects.get()
    assert row.up_since == row.last_seen_at == row.last_gap_ended_at and row.last_gap_seconds == gap
    # and: at the old expiry (+1 s) nothing is reaped; past the moved one the lost runs are
    old_expiry = max(run.lease_expires_at for run in held) + timedelta(seconds=1)
    _web_tier_seen(old_expiry)
    assert reap_lost_runs(now=old_expiry) == 0
    new_expiry = old_expiry + timedelta(seconds=gap)
    _web_tier_seen(new_expiry)
    assert reap_lost_runs(now=new_expiry) == 2


@pytest.mark.django_db
def test_a_beat_without_a_gap_moves_no_lease(actor_a, agent_a, version_a):
    (run,) = _running(actor_a, agent_a, version_a)
    _web_tier_seen(_clock() - timedelta(seconds=1))
    assert web_tier_beat() == 0.0
    assert _fetch(run).lease_expires_at == run.lease_expires_at
    assert WebTierBeat.objects.get().last_seen_at > run.lease_expires_at - timedelta(seconds=10)


@pytest.mark.django_db
def test_the_first_beat_ever_records_the_web_tier_without_moving_leases(actor_a, agent_a, version_a):
    (run,) = _running(actor_a, agent_a, version_a)
    assert web_tier_beat() == 0.0
    row = WebTierBeat.objects.get()
    assert row.up_since == row.last_seen_at and row.last_gap_ended_at is None
    assert _fetch(run).lease_expires_at == run.lease_expires_at


@pytest.mark.django_db(transaction=True)
def test_web_processes_coming_back_together_move_the_leases_once(actor_a, agent_a, version_a):
    # given: a held run and a web tier silent for ~30 s (committed: the beats below are other
    # connections, like other server processes)
    (run,) = _running(actor_a, agent_a, version_a)
    _web_tier_seen(_clock() - timedelta(seconds=30))
    # when: four server processes beat at once
    gaps: list[float] = []
    barrier = threading.Barrier(4)

    def beat() -> None:
        try:
            barrier.wait(timeout=10)
            gaps.append(web_tier_beat())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # then: one of them saw the gap and moved the lease on by it; the others saw a fresh beat
    moved = [g for g in gaps if g > 0]
    assert len(gaps) == 4 and len(moved) == 1
    assert _fetch(run).lease_expires_at - run.lease_expires_at == timedelta(seconds=moved[0])
