"""Races on real parallel connections (threads, each with its own PostgreSQL connection)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import close_old_connections, connection, transaction

from accounts.models import Role
from core.errors import Conflict
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state, task_run_set_state
from orchestration.models import ConcurrencySlot, Flow, FlowRun
from orchestration.services.runs import flow_run_create
from tests.orchestration.factories import FlowRunFactory, TaskRunFactory

from .conftest import ConcurrencyLimitFactory, drive, history, principal, refresh

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released together; return each outcome (value or error)."""
    barrier = threading.Barrier(n)
    outcomes: list[Any] = [None] * n

    def run(i: int) -> None:
        close_old_connections()
        try:
            barrier.wait()
            outcomes[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_two_writers_with_the_same_expected_version_one_wins_the_other_gets_409(version_a):
    """D3: given a RUNNING run at version v, when two writers propose different endings with
    expected_version v at once, then exactly one is accepted and the other is told 409 with the
    state the winner wrote."""
    run = FlowRunFactory(flow_version=version_a)
    drive(run, "RUNNING")
    version = run.state_version

    def write(i: int) -> Any:
        with transaction.atomic(), workspace_scope([run.workspace_id]):
            return flow_run_set_state(actor=None, flow_run_id=run.pk, workspace_id=run.workspace_id,
                                      expected_version=version,
                                      state=ProposedState(type=["COMPLETED", "FAILED"][i]))

    outcomes = race(2, write)
    wins = [o for o in outcomes if not isinstance(o, Exception)]
    losses = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(wins) == 1 and len(losses) == 1, outcomes
    assert wins[0].status is SetStateStatus.ACCEPT
    refresh(run)
    assert losses[0].code == "stale_state_version"
    assert losses[0].details == {"state_type": run.state_type, "state_name": run.state_name,
                                 "state_version": version + 1}
    assert run.state_type == wins[0].state_type and len(history(run)) == version + 1


def test_a_flow_concurrency_limit_holds_under_parallel_starts(version_a):
    with rls_bypass():
        Flow.objects.for_workspace(version_a.workspace_id).filter(pk=version_a.flow_id).update(concurrency_limit=2)
    runs = [FlowRunFactory(flow_version=version_a) for _ in range(8)]
    for run in runs:
        drive(run, "PENDING")

    def start(i: int) -> Any:
        with transaction.atomic(), workspace_scope([runs[i].workspace_id]):
            return flow_run_set_state(actor=None, flow_run_id=runs[i].pk, workspace_id=runs[i].workspace_id,
                                      state=ProposedState(type="RUNNING"))

    outcomes = race(8, start)
    assert sorted(o.status for o in outcomes) == ["ACCEPT"] * 2 + ["WAIT"] * 6
    with rls_bypass():
        assert FlowRun.objects.for_workspace(version_a.workspace_id).filter(state_type="RUNNING").count() == 2


def test_a_tag_limit_holds_under_parallel_task_starts(run_a):
    limit = ConcurrencyLimitFactory(workspace=run_a.workspace, tag="gpu", limit=3)
    task_runs = [TaskRunFactory(flow_run=run_a, task_key="extract", map_index=i, tags=["gpu"]) for i in range(10)]

    def start(i: int) -> Any:
        with transaction.atomic(), workspace_scope([run_a.workspace_id]):
            return task_run_set_state(actor=None, task_run_id=task_runs[i].pk, workspace_id=run_a.workspace_id,
                                      state=ProposedState(type="RUNNING"))

    outcomes = race(10, start)
    assert sorted(o.status for o in outcomes) == ["ACCEPT"] * 3 + ["WAIT"] * 7
    with rls_bypass():
        assert ConcurrencySlot.objects.for_workspace(run_a.workspace_id).filter(limit=limit).count() == 3


def test_five_concurrent_identical_creates_make_one_run(world_a, flow_a):
    actor = principal(world_a, Role.DEVELOPER)

    def create(i: int) -> Any:
        with transaction.atomic():
            return flow_run_create(actor=actor, flow=flow_a, idempotency_key="nightly-2030-01-01")

    outcomes = race(5, create)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert len({run.pk for run, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False, False, False, False, True]
    with rls_bypass():
        runs = FlowRun.objects.for_workspace(world_a.workspace)
        assert runs.filter(idempotency_key="nightly-2030-01-01").count() == 1
