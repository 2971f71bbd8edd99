"""Late runs and the late-run (catch-up) policy, on the database clock (D6): due, unstarted runs are
marked Late; after an outage a flow's catch-up policy leaves exactly the runs it allows claimable and
ends the others COMPLETED "Skipped" with a reason — through the engine, idempotently, concurrently."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections

from core.tenancy import rls_bypass
from orchestration.engine import ProposedState
from orchestration.models import Catchup, FlowRun, FlowRunState, StateType
from orchestration.services.late_runs import _apply, apply_catchup_policy, mark_late_runs
from orchestration.services.scheduler import schedule_due_runs
from tests.orchestration.factories import AgentFactory, FlowRunFactory, FlowVersionFactory

from .factories import ScheduleFactory


def _reload(run: FlowRun) -> FlowRun:
    with rls_bypass():
        return FlowRun.objects.unscoped().get(pk=run.pk)


def _flow_runs(flow) -> list[FlowRun]:
    with rls_bypass():
        return list(FlowRun.objects.unscoped().filter(flow=flow).order_by("scheduled_start"))


def _history(run: FlowRun) -> list[tuple[str, str]]:
    with rls_bypass():
        return list(FlowRunState.objects.unscoped().filter(flow_run=run).values_list("type", "name"))


def _run(version, start, **kwargs) -> FlowRun:
    kwargs.setdefault("created_by_kind", FlowRun.CreatedBy.SCHEDULE)
    return FlowRunFactory(flow_version=version, flow=version.flow, workspace=version.workspace,
                          scheduled_start=start, **kwargs)


def _claimable(flow, now) -> list[FlowRun]:
    return [r for r in _flow_runs(flow)
            if r.state_type == StateType.SCHEDULED and r.agent_id is None and r.scheduled_start <= now]


# --- mark_late_runs --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_due_unstarted_runs_are_marked_late_through_the_engine(clock):
    # given a run due a minute ago, one due within the grace, one in the future and one running
    version = FlowVersionFactory()
    now = clock()
    late = _run(version, now - timedelta(minutes=1))
    in_grace = _run(version, now - timedelta(seconds=2))
    future = _run(version, now + timedelta(minutes=1))
    running = _run(version, now - timedelta(minutes=5), state_type=StateType.RUNNING, state_name="Running",
                   start_time=now - timedelta(minutes=4))
    # when the late marker ticks
    marked = mark_late_runs()
    # then only the due, unstarted run is SCHEDULED "Late", with a history row and a reason
    assert marked == 1
    late = _reload(late)
    assert (late.state_type, late.state_name) == (StateType.SCHEDULED, "Late")
    assert "was due at" in late.state_message
    assert late.state_version == 1
    assert _history(late) == [(StateType.SCHEDULED, "Late")]
    assert [_reload(r).state_name for r in (in_grace, future, running)] == ["Scheduled", "Scheduled", "Running"]


@pytest.mark.django_db
def test_a_run_awaiting_retry_keeps_its_name(clock):
    version = FlowVersionFactory()
    retry = _run(version, clock() - timedelta(minutes=1), state_name="AwaitingRetry")
    assert mark_late_runs() == 0
    assert _reload(retry).state_name == "AwaitingRetry"


@pytest.mark.django_db
def test_marking_late_twice_changes_nothing_the_second_time(clock):
    version = FlowVersionFactory()
    run = _run(version, clock() - timedelta(minutes=1))
    assert mark_late_runs() == 1
    assert mark_late_runs() == 0
    assert _history(run) == [(StateType.SCHEDULED, "Late")]


@pytest.mark.django_db
def test_late_marking_covers_every_workspace(world_a, world_b, clock):
    now = clock()
    in_a = _run(FlowVersionFactory(flow__workspace=world_a.workspace, flow__project__workspace=world_a.workspace),
                now - timedelta(minutes=2))
    in_b = _run(FlowVersionFactory(flow__workspace=world_b.workspace, flow__project__workspace=world_b.workspace),
                now - timedelta(minutes=2))
    assert mark_late_runs() == 2
    assert {_reload(in_a).state_name, _reload(in_b).state_name} == {"Late"}


# --- the catch-up policy ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_acceptance_one_minute_schedule_agent_down_for_an_hour_with_latest(clock):
    # given a one-minute schedule of a flow with catchup="latest", ticking every minute for an hour
    # while no agent claims anything
    version = FlowVersionFactory(flow__catchup=Catchup.LATEST)
    now = clock()
    ScheduleFactory(flow=version.flow, interval_seconds=60, anchor_date=now - timedelta(seconds=5))
    for minutes_ago in range(60, -1, -1):
        schedule_due_runs(now=now - timedelta(minutes=minutes_ago))
    due = [r for r in _flow_runs(version.flow) if r.scheduled_start <= now]
    assert len(due) == 61
    # when the late marker and the catch-up pass run
    mark_late_runs()
    skipped = apply_catchup_policy()
    # then exactly one run is claimable — the newest — and every other due run ended Skipped with a reason
    claimable = _claimable(version.flow, now)
    assert [r.scheduled_start for r in claimable] == [now - timedelta(seconds=5)]
    others = [r for r in _flow_runs(version.flow) if r.scheduled_start < now - timedelta(seconds=5)]
    assert skipped == len(others) == 60
    assert {(r.state_type, r.state_name) for r in others} == {(StateType.COMPLETED, "Skipped")}
    assert all("catch-up policy 'latest': a newer run is due" in r.state_message for r in others)
    # the runs ahead are untouched
    assert {r.state_name for r in _flow_runs(version.flow) if r.scheduled_start > now} == {"Scheduled"}
    # and a second pass does nothing
    assert apply_catchup_policy() == 0


@pytest.mark.django_db
def test_catchup_none_skips_every_run_due_more_than_the_grace_ago(clock):
    version = FlowVersionFactory(flow__catchup=Catchup.NONE)
    now = clock()
    old = [_run(version, now - timedelta(minutes=m)) for m in (30, 20, 10, 1)]
    fresh = _run(version, now - timedelta(seconds=5))
    assert apply_catchup_policy() == 4
    assert {(_reload(r).state_name, _reload(r).state_type) for r in old} == {("Skipped", StateType.COMPLETED)}
    assert all("catch-up policy 'none'" in _reload(r).state_message for r in old)
    assert _reload(fresh).state_name == "Scheduled"


@pytest.mark.django_db
def test_catchup_all_leaves_every_missed_run_claimable(clock):
    version = FlowVersionFactory(flow__catchup=Catchup.ALL)
    now = clock()
    for m in (30, 20, 10, 1):
        _run(version, now - timedelta(minutes=m))
    assert apply_catchup_policy() == 0
    assert len(_claimable(version.flow, now)) == 4


@pytest.mark.django_db
def test_max_lateness_skips_runs_later_than_allowed_with_a_reason(clock):
    version = FlowVersionFactory(flow__catchup=Catchup.ALL, flow__max_lateness_seconds=600)
    now = clock()
    too_late = [_run(version, now - timedelta(minutes=m)) for m in (30, 20)]
    in_time = [_run(version, now - timedelta(minutes=m)) for m in (9, 1)]
    assert apply_catchup_policy() == 2
    assert all(_reload(r).state_name == "Skipped" for r in too_late)
    assert all("maximum lateness of 600 s" in _reload(r).state_message for r in too_late)
    assert [r.pk for r in _claimable(version.flow, now)] == [r.pk for r in in_time]


@pytest.mark.django_db
def test_latest_with_max_lateness_skips_all_when_even_the_newest_is_too_late(clock):
    version = FlowVersionFactory(flow__catchup=Catchup.LATEST, flow__max_lateness_seconds=60)
    now = clock()
    for m in (30, 20, 10):
        _run(version, now - timedelta(minutes=m))
    assert apply_catchup_policy() == 3
    assert _claimable(version.flow, now) == []


@pytest.mark.django_db
def test_a_run_started_by_hand_is_subject_only_to_max_lateness(clock):
    # given a flow that skips missed runs and allows 10 minutes of lateness, and two manual runs
    version = FlowVersionFactory(flow__catchup=Catchup.NONE, flow__max_lateness_seconds=600)
    now = clock()
    manual_recent = _run(version, now - timedelta(minutes=5), created_by_kind=FlowRun.CreatedBy.USER)
    manual_too_late = _run(version, now - timedelta(minutes=15), created_by_kind=FlowRun.CreatedBy.API)
    # when the catch-up pass runs
    assert apply_catchup_policy() == 1
    # then only the run later than max_lateness is skipped
    assert _reload(manual_recent).state_name == "Scheduled"
    assert _reload(manual_too_late).state_name == "Skipped"


@pytest.mark.django_db
def test_claimed_runs_are_left_to_their_agent(clock):
    version = FlowVersionFactory(flow__catchup=Catchup.NONE)
    now = clock()
    claimed = _run(version, now - timedelta(minutes=10), agent=AgentFactory(workspace=version.workspace))
    assert apply_catchup_policy() == 0
    assert _reload(claimed).state_name == "Scheduled"


@pytest.mark.django_db
def test_a_proposal_the_engine_refuses_is_counted_out_and_changes_nothing():
    # given a run that already ended (the engine's rules keep terminal states)
    version = FlowVersionFactory()
    run = _run(version, version.created_at, state_type=StateType.CANCELLED, state_name="Cancelled")
    # when the catch-up machinery proposes Skipped for it
    accepted = _apply([(run.pk, run.workspace_id, ProposedState(type="COMPLETED", name="Skipped", message="x"))])
    # then nothing is accepted and the run is unchanged
    assert accepted == 0
    assert (_reload(run).state_type, _history(run)) == (StateType.CANCELLED, [])


@pytest.mark.django_db(transaction=True)
def test_concurrent_catch_up_passes_skip_each_run_once(clock):
    # given two flows with an hour of missed one-minute runs each
    now = clock()
    versions = [FlowVersionFactory(flow__catchup=Catchup.LATEST) for _ in range(2)]
    for version in versions:
        for m in range(60, 0, -1):
            _run(version, now - timedelta(minutes=m))
    barrier = threading.Barrier(4)
    skipped: list[int] = []
    errors: list[BaseException] = []

    def catch_up() -> None:
        try:
            barrier.wait()
            skipped.append(apply_catchup_policy())
            mark_late_runs()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    # when four passes run at once on their own connections
    threads = [threading.Thread(target=catch_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then each flow keeps exactly one claimable run and every other run was skipped exactly once
    assert errors == []
    for version in versions:
        assert len(_claimable(version.flow, now)) == 1
        for run in _flow_runs(version.flow):
            names = [name for _, name in _history(run)]
            assert names.count("Skipped") <= 1
            assert names.count("Late") <= 1
    assert sum(skipped) == 2 * 59


@pytest.mark.django_db(transaction=True)
def test_a_pass_that_finds_due_runs_held_by_another_transaction_comes_back_for_them(clock, monkeypatch):
    """The pass holds the flow, so no other pass decides it: runs it skipped because another
    transaction held them (a late-marking batch, a claim) are looked at again once released."""
    from django.db import transaction

    import orchestration.services.late_runs as late_runs

    monkeypatch.setattr(late_runs, "CATCHUP_RETRIES", 200)  # 10 s: the holder below lets go long before
    now = clock()
    version = FlowVersionFactory(flow__catchup=Catchup.LATEST)
    runs = [_run(version, now - timedelta(minutes=m)) for m in range(10, 0, -1)]
    held, released = threading.Event(), threading.Event()

    def hold_the_oldest_five() -> None:
        try:
            with transaction.atomic(), rls_bypass():
                list(FlowRun.objects.unscoped().filter(pk__in=[r.pk for r in runs[:5]]).select_for_update())
                held.set()
                released.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_oldest_five)
    holder.start()
    assert held.wait(10)
    timer = threading.Timer(0.3, released.set)
    timer.start()
    try:
        skipped = apply_catchup_policy()
    finally:
        released.set()
        holder.join(10)
        timer.cancel()
    assert skipped == 9
    assert [r.pk for r in _claimable(version.flow, now)] == [runs[-1].pk]
