"""What the hot task-run statements read is bounded by the run, not by the workspace.

A prepared statement runs on a generic plan, which estimates a workspace's rows as the average
workspace's. For a big workspace among many small ones that plan intersected the workspace's
index with the run's, so a task-run batch or a run's end read every task run of the workspace
(seen in the HTTP bench: 1,300 index entries per batch and growing). Measured here with
PostgreSQL's own counters for the current transaction (index entries and rows the statements
read), on the plans the pool's connections use."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from accounts.models import Workspace
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import (
    ForcePolicy,
    ProposedState,
    SetStateStatus,
    TaskRunReport,
    flow_run_set_state,
    task_run_set_states,
)
from orchestration.models import StateType, TaskRun
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory
from tests.orchestration.plans import analyze_as_owner

from .conftest import drive

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = 5


@pytest.fixture
def big_workspace_among_small(world_a, world_b, flow_a):
    """World A holds thousands of task runs; 300 other workspaces hold one each, so the statistics
    (fresh, as autovacuum leaves them) say the average workspace is small."""
    version = FlowVersionFactory(flow=flow_a, workspace=flow_a.workspace, version=400_000,
                                 tasks=[{"key": f"t{i}", "name": f"t{i}", "tags": [], "retries": 0}
                                        for i in range(TASKS)])
    history = FlowRunFactory.create_batch(40, flow_version=version, state_type=StateType.COMPLETED)
    other_run = FlowRunFactory(workspace=world_b.workspace, flow_version__workspace=world_b.workspace,
                               flow_version__flow__workspace=world_b.workspace,
                               flow_version__flow__project__workspace=world_b.workspace)
    with rls_bypass():
        TaskRun.all_objects.bulk_create(
            TaskRun(workspace=world_a.workspace, flow_run=run, task_key=f"t{i % TASKS}", map_index=i,
                    state_type="COMPLETED")
            for run in history for i in range(100)
        )
        small = Workspace.objects.bulk_create(Workspace(name=f"small {i}", slug=f"small-{i}") for i in range(300))
        # Their task runs hang off one run elsewhere: only the workspace column matters to the planner.
        TaskRun.all_objects.bulk_create(TaskRun(workspace=ws, flow_run=other_run, task_key="x", map_index=i)
                                        for i, ws in enumerate(small))
    analyze_as_owner("orchestration_taskrun", "orchestration_flowrun", "orchestration_concurrencyslot")
    return version


def _read_by_statements(table: str) -> int:
    """Index entries plus sequentially read rows of ``table`` so far in this transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_returned(%s::regclass) + coalesce(("
            "SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid)) FROM pg_index WHERE indrelid = %s::regclass"
            "), 0)", [table, table])
        return int(cursor.fetchone()[0])


def _running(version: Any) -> Any:
    run = FlowRunFactory(flow_version=version)
    drive(run, "RUNNING")
    return run


def _batch(agent: Any, run: Any, state: str) -> list[Any]:
    return task_run_set_states(actor=agent, workspace_id=run.workspace_id, flow_run_id=run.pk, attempt=1,
                               reports=[TaskRunReport(f"t{i}", -1, ProposedState(type=state)) for i in range(TASKS)])


def _on_generic_plans(body: Any) -> int:
    """Run ``body`` in a transaction whose statements are prepared and planned generically (as the
    pool's connections run the hot ones); what it read of the task runs."""
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
    try:
        with transaction.atomic():
            before = _read_by_statements("orchestration_taskrun")
            body()
            return _read_by_statements("orchestration_taskrun") - before
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET plan_cache_mode")


def test_a_task_run_batch_reads_only_its_runs_task_runs(big_workspace_among_small, agent):
    version = big_workspace_among_small
    warm, run = _running(version), _running(version)
    with workspace_scope([run.workspace_id]):
        # the first run's batches prepare the statements (on their second use) …
        _batch(agent, warm, "RUNNING")
        _batch(agent, warm, "COMPLETED")
        # when: another run's task runs are created and then finish, on those prepared statements
        created = _on_generic_plans(lambda: _batch(agent, run, "RUNNING"))
        finished = _on_generic_plans(lambda: _batch(agent, run, "COMPLETED"))
    # then: each batch read a few entries per task of the run, not the workspace's 4,000 task runs
    assert created <= 6 * TASKS, created
    assert finished <= 6 * TASKS, finished
    with rls_bypass():
        states = set(TaskRun.all_objects.filter(flow_run=run).values_list("state_type", flat=True))
    assert states == {"COMPLETED"}


def test_a_run_that_ends_reads_only_its_own_task_runs(big_workspace_among_small, agent):
    """The end of a run closes its open task runs and releases their slots in the same statement."""
    version = big_workspace_among_small
    runs = [_running(version) for _ in range(3)]
    with workspace_scope([runs[0].workspace_id]):
        for run in runs:
            _batch(agent, run, "RUNNING")

        def complete(run: Any) -> None:
            result = flow_run_set_state(actor=None, workspace_id=run.workspace_id, flow_run_id=run.pk,
                                        state=ProposedState(type="CRASHED", message="lost"), policy=ForcePolicy())
            assert result.status is SetStateStatus.ACCEPT

        # the first two prepare the end's statements; the third is measured
        complete(runs[0])
        complete(runs[1])
        read = _on_generic_plans(lambda: complete(runs[2]))
    assert read <= 6 * TASKS, read
    with rls_bypass():
        states = set(TaskRun.all_objects.filter(flow_run=runs[2]).values_list("state_type", flat=True))
    assert states == {"CRASHED"}
