"""Bulk actions work in small batches, each its own short transaction: a run is locked only if it
still matches the filter (a run that moved on meanwhile is skipped, never acted on by a stale
filter), a run another transaction holds is passed over and retried later, and every batch stores
and announces its progress (issue 9, point 8)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

import core.events
from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.models import BulkAction, FlowRun, StateType
from orchestration.services import bulk_actions
from orchestration.services.bulk_actions import bulk_action_create
from tests.orchestration.factories import FlowRunFactory

from .conftest import drive, principal, refresh


@pytest.fixture
def dev(world_a):  # type: ignore[no-untyped-def]
    return principal(world_a, Role.DEVELOPER)


@pytest.fixture
def published(monkeypatch):  # type: ignore[no-untyped-def]
    """The events sent after commit (``_send`` is the documented seam for capturing them)."""
    events: list[dict] = []
    monkeypatch.setattr(core.events, "_send", lambda groups, event: events.append(event))
    return events


def _runs(version, count: int) -> list[FlowRun]:  # type: ignore[no-untyped-def]
    """Scheduled runs in the order a bulk action takes them (newest scheduled start first)."""
    start = timezone.now() - timedelta(hours=1)
    return [FlowRunFactory(flow_version=version, scheduled_start=start - timedelta(seconds=i)) for i in range(count)]


def _states(runs: list[FlowRun]) -> list[str]:
    with rls_bypass():
        by_id = dict(FlowRun.objects.unscoped().filter(pk__in=[r.pk for r in runs]).values_list("pk", "state_type"))
    return [by_id[r.pk] for r in runs]


def _stored(bulk: BulkAction) -> BulkAction:
    with rls_bypass():
        return BulkAction.objects.unscoped().get(pk=bulk.pk)


@pytest.mark.django_db
def test_a_bulk_cancel_works_in_batches_and_announces_each_one(dev, version_a, published,
                                                                django_capture_on_commit_callbacks, monkeypatch):
    # given: 25 scheduled runs and batches of 10 (with no time box, so the batches are exact)
    monkeypatch.setattr(bulk_actions, "BATCH_SIZE", 10)
    monkeypatch.setattr(bulk_actions, "BATCH_SECONDS", 60)
    runs = _runs(version_a, 25)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        bulk = bulk_action_create(actor=dev, action="cancel", filters={"state_types": ["SCHEDULED"]},
                                  background=False)
    # then: every run is cancelled and the record says so
    assert set(_states(runs)) == {StateType.CANCELLED}
    stored = _stored(bulk)
    assert (stored.status, stored.matched, stored.done, stored.skipped, stored.failed) == ("finished", 25, 25, 0, 0)
    assert stored.finished_at is not None
    # and one progress event per batch (3) plus the final one, with growing counts
    progress = [e["data"] for e in published if e["type"] == "bulk_action.progress"]
    assert [p["done"] for p in progress] == [10, 20, 25, 25]
    assert progress[-1]["status"] == "finished"


@pytest.mark.django_db
def test_a_run_that_moved_to_running_meanwhile_is_not_cancelled_by_a_scheduled_filter(dev, version_a, agent_a,
                                                                                       monkeypatch):
    # given: six scheduled runs, batches of three; between the first and the second batch an agent
    # starts one of the second batch's runs
    monkeypatch.setattr(bulk_actions, "BATCH_SIZE", 3)
    monkeypatch.setattr(bulk_actions, "BATCH_SECONDS", 60)
    runs = _runs(version_a, 6)
    mover = runs[4]
    real_batch = bulk_actions._batch
    calls: list[int] = []

    def batch_then_start(actor, bulk, chunk, progress):  # type: ignore[no-untyped-def]
        result = real_batch(actor, bulk, chunk, progress)
        calls.append(len(chunk))
        if len(calls) == 1:
            drive(mover, "RUNNING", agent=agent_a)
        return result

    monkeypatch.setattr(bulk_actions, "_batch", batch_then_start)
    # when
    bulk = bulk_action_create(actor=dev, action="cancel", filters={"state_types": ["SCHEDULED"]}, background=False)
    # then: the run that started keeps running; the others were cancelled
    states = _states(runs)
    assert states[4] == StateType.RUNNING
    assert [s for i, s in enumerate(states) if i != 4] == [StateType.CANCELLED] * 5
    stored = _stored(bulk)
    assert (stored.matched, stored.done, stored.skipped, stored.failed) == (6, 5, 1, 0)


@pytest.mark.django_db
def test_a_running_run_the_filter_asks_for_goes_to_cancelling(dev, version_a, agent_a):
    # given
    (running,) = _runs(version_a, 1)
    drive(running, "RUNNING", agent=agent_a)
    # when
    bulk = bulk_action_create(actor=dev, action="cancel", filters={"state_types": ["RUNNING"]}, background=False)
    # then
    refresh(running)
    assert running.state_type == StateType.CANCELLING
    assert _stored(bulk).done == 1


@pytest.mark.django_db
def test_a_batch_commits_after_its_time_box_and_the_rest_goes_to_the_next_batch(dev, version_a, published,
                                                                                 django_capture_on_commit_callbacks,
                                                                                 monkeypatch):
    # given: a time box so small that each batch acts on one run only
    monkeypatch.setattr(bulk_actions, "BATCH_SECONDS", 0.0)
    runs = _runs(version_a, 4)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        bulk = bulk_action_create(actor=dev, action="cancel", filters={}, background=False)
    # then
    assert set(_states(runs)) == {StateType.CANCELLED}
    progress = [e["data"]["done"] for e in published if e["type"] == "bulk_action.progress"]
    assert progress == [1, 2, 3, 4, 4]
    assert _stored(bulk).done == 4


@pytest.mark.django_db(transaction=True)
def test_a_run_another_transaction_holds_is_passed_over_and_retried_later(world_a, version_a):
    # given: 30 scheduled runs, one of them locked by another transaction (an agent's report)
    dev = principal(world_a, Role.DEVELOPER)
    runs = _runs(version_a, 30)
    held = runs[0]
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        try:
            with transaction.atomic(), workspace_scope([held.workspace_id]):
                FlowRun.objects.for_workspace(held.workspace_id).select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(10)
    results: list[BulkAction] = []

    def bulk_cancel() -> None:
        try:
            results.append(bulk_action_create(actor=dev, action="cancel", filters={}, background=False))
        finally:
            connections.close_all()

    # when: a bulk cancel runs while the row is held
    worker = threading.Thread(target=bulk_cancel)
    worker.start()
    # then: every other run is cancelled without waiting for the held one
    deadline = time.monotonic() + 20
    while set(_states(runs[1:])) != {StateType.CANCELLED}:
        assert time.monotonic() < deadline, _states(runs)
        time.sleep(0.05)
    assert _states([held]) == [StateType.SCHEDULED]
    # and once the other transaction ends, the held run is cancelled too
    release.set()
    holder.join()
    worker.join(40)
    assert _states([held]) == [StateType.CANCELLED]
    (bulk,) = results
    assert (bulk.status, bulk.matched, bulk.done, bulk.skipped, bulk.failed) == ("finished", 30, 30, 0, 0)


@pytest.mark.django_db
def test_a_large_selection_is_queued_and_runs_once(dev, version_a, monkeypatch, django_capture_on_commit_callbacks):
    # given: more runs than a request handles itself
    monkeypatch.setattr(bulk_actions, "SYNC_MAX", 5)
    runs = _runs(version_a, 8)
    started: list[str] = []
    monkeypatch.setattr(bulk_actions, "_start_in_background", lambda pk: started.append(str(pk)))
    # when
    bulk = bulk_action_create(actor=dev, action="cancel", filters={})
    # then: it is queued, nothing changed yet
    assert (bulk.status, bulk.matched) == ("pending", 8)
    assert started == [str(bulk.pk)]
    assert set(_states(runs)) == {StateType.SCHEDULED}
    # when the task runs (twice: a re-delivered message)
    first = bulk_actions.bulk_action_run(bulk_action_id=bulk.pk)
    second = bulk_actions.bulk_action_run(bulk_action_id=bulk.pk)
    # then it ran once, as its creator
    assert first is not None and second is None
    assert set(_states(runs)) == {StateType.CANCELLED}
    assert (_stored(bulk).status, _stored(bulk).done) == ("finished", 8)
    with rls_bypass():
        message = FlowRun.objects.unscoped().get(pk=runs[0].pk).state_message
    assert dev.user.email in message


@pytest.mark.django_db
def test_a_bulk_action_acts_only_on_the_actors_workspace(dev, version_a, world_b):
    from tests.orchestration.factories import FlowVersionFactory

    other = FlowRunFactory(flow_version=FlowVersionFactory(flow__workspace=world_b.workspace,
                                                           flow__project__workspace=world_b.workspace))
    mine = _runs(version_a, 2)
    bulk = bulk_action_create(actor=dev, action="cancel", filters={}, background=False)
    assert _stored(bulk).matched == 2
    assert set(_states(mine)) == {StateType.CANCELLED}
    assert _states([other]) == [StateType.SCHEDULED]


@pytest.mark.django_db
def test_a_run_whose_change_raises_is_counted_failed_and_the_rest_of_its_batch_still_changes(dev, version_a,
                                                                                             monkeypatch):
    # given: five runs, the change of the third one raising (as a rule refusing it loudly would)
    from core.errors import Conflict
    from orchestration.services import runs as run_services

    runs = _runs(version_a, 5)
    real_cancel = run_services._cancel_locked

    def cancel(actor, run):  # type: ignore[no-untyped-def]
        result = real_cancel(actor, run)
        if run.pk == runs[2].pk:
            raise Conflict("refused", code="transition_refused")  # after its writes: they must roll back
        return result

    monkeypatch.setattr(run_services, "_cancel_locked", cancel)
    # when
    bulk = bulk_action_create(actor=dev, action="cancel", filters={}, background=False)
    # then
    assert _states(runs) == [StateType.CANCELLED, StateType.CANCELLED, StateType.SCHEDULED, StateType.CANCELLED,
                             StateType.CANCELLED]
    stored = _stored(bulk)
    assert (stored.matched, stored.done, stored.skipped, stored.failed) == (5, 4, 0, 1)
