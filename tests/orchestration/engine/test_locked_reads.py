"""The hand-written reads of the hot paths (``core/rows.py``, ``engine.locked_flow_runs``) give
what the ORM's queries gave: the same field values (JSON decoded, UUIDs, times), the related rows
the rules read already loaded, nothing from another workspace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.rows import by_id
from core.tenancy import workspace_scope
from orchestration.engine import lock_flow_runs, locked_flow_runs
from orchestration.models import Agent, Flow, FlowRun, Project
from tests.orchestration.engine.conftest import claimed_run
from tests.orchestration.factories import AgentFactory, FlowRunFactory, FlowVersionFactory, TaskRunFactory

pytestmark = pytest.mark.django_db

CONCRETE = [f.attname for f in FlowRun._meta.concrete_fields]


def _fields(obj: object, names: list[str]) -> dict[str, object]:
    return {name: getattr(obj, name) for name in names}


@pytest.fixture
def runs(version_a, agent_a):
    old = FlowRunFactory(flow_version=version_a, parameters={"n": [1, {"x": None}]}, labels=["prod", "gpu"],
                         scheduled_start=timezone.now() - timedelta(minutes=5))
    held = claimed_run(version_a, agent_a)
    TaskRunFactory(flow_run=held)
    return old, held


def test_locked_runs_have_the_orm_values_and_their_flow_agent_and_version_loaded(world_a, runs, agent_a):
    old, held = runs
    with workspace_scope([world_a.workspace.pk]):
        orm = {run.pk: run for run in lock_flow_runs(world_a.workspace.pk).filter(pk__in=[old.pk, held.pk])}
        read = locked_flow_runs(world_a.workspace.pk, [str(held.pk), old.pk], flow_fields=("catchup",),
                                version=True, has_task_runs=True)
        # then: the same rows, oldest scheduled start first, with every value as the ORM reads it
        assert [run.pk for run in read] == sorted([old.pk, held.pk], key=lambda pk: orm[pk].scheduled_start)
        for run in read:
            assert _fields(run, CONCRETE) == _fields(orm[run.pk], CONCRETE)
        assert read[0].parameters == {"n": [1, {"x": None}]} and read[0].labels == ["prod", "gpu"]
        # and what the rules and the claim read of the related rows costs no query
        with CaptureQueriesContext(connection) as captured:
            seen = [(run.flow.max_crash_retries, run.flow.concurrency_limit, run.flow.catchup,
                     run.agent and run.agent.service_account_id, run.flow_version.tasks, run.has_task_runs,
                     run.db_now) for run in read]
        assert captured.captured_queries == []
    by_pk = {run.pk: row for run, row in zip(read, seen, strict=True)}
    assert by_pk[held.pk][3] == agent_a.service_account_id and by_pk[old.pk][3] is None
    assert by_pk[held.pk][4] == old.flow_version.tasks
    assert by_pk[held.pk][5] is True and by_pk[old.pk][5] is False
    assert abs(by_pk[old.pk][6] - timezone.now()) < timedelta(minutes=1)


def test_locked_runs_of_another_workspace_are_not_read(world_a, world_b, runs):
    other = FlowRunFactory(flow_version=FlowVersionFactory(flow__workspace=world_b.workspace,
                                                           flow__project__workspace=world_b.workspace))
    with workspace_scope([world_a.workspace.pk]):
        assert [run.pk for run in locked_flow_runs(world_a.workspace.pk, [other.pk, runs[0].pk])] == [runs[0].pk]
    with workspace_scope([world_b.workspace.pk]):
        # the other workspace's own id with workspace A named: nothing, even where RLS would allow it
        assert locked_flow_runs(world_a.workspace.pk, [other.pk]) == []


def test_by_id_reads_a_row_of_the_workspace_as_the_orm_does(world_a, world_b, runs, agent_a):
    old, _ = runs
    with workspace_scope([world_a.workspace.pk]):
        run = by_id(FlowRun, world_a.workspace, old.pk)
        assert _fields(run, CONCRETE) == _fields(FlowRun.objects.for_workspace(world_a.workspace).get(pk=old.pk),
                                                 CONCRETE)
        assert run._state.adding is False and run._state.db == "default"
        agent = by_id(Agent, world_a.workspace.pk, agent_a.pk)
        assert (agent.pk, agent.labels, agent.name) == (agent_a.pk, agent_a.labels, agent_a.name)
        # a missing row, or one asked for with another workspace: None
        assert by_id(FlowRun, world_a.workspace, AgentFactory(workspace=world_a.workspace).pk) is None
        assert by_id(FlowRun, world_b.workspace, old.pk) is None


def test_by_id_with_a_related_row_loads_it_as_select_related_does(world_a, world_b, version_a):
    flow = version_a.flow
    with workspace_scope([world_a.workspace.pk]):
        orm = Flow.objects.for_workspace(world_a.workspace).select_related("project").get(pk=flow.pk)
    with workspace_scope([world_a.workspace.pk]), CaptureQueriesContext(connection) as queries:
        read = by_id(Flow, world_a.workspace, flow.pk, related="project")
        # the project came in the same statement: reading it costs no query
        project = read.project
    assert len(queries) == 1
    assert _fields(read, [f.attname for f in Flow._meta.concrete_fields]) == _fields(
        orm, [f.attname for f in Flow._meta.concrete_fields])
    assert _fields(project, [f.attname for f in Project._meta.concrete_fields]) == _fields(
        orm.project, [f.attname for f in Project._meta.concrete_fields])
    with workspace_scope([world_b.workspace.pk]):
        assert by_id(Flow, world_b.workspace, flow.pk, related="project") is None


def test_by_id_with_only_reads_those_fields_and_defers_the_rest_as_only_does(world_a, world_b, runs):
    old, _ = runs
    with workspace_scope([world_a.workspace.pk]), CaptureQueriesContext(connection) as queries:
        run = by_id(FlowRun, world_a.workspace, old.pk, only=("workspace",))
    assert len(queries) == 1 and '"parameters"' not in queries[0]["sql"]
    assert (run.pk, run.workspace_id) == (old.pk, old.workspace_id)
    assert run.get_deferred_fields() == {a for a in CONCRETE if a not in ("id", "workspace_id")}
    with workspace_scope([world_a.workspace.pk]):
        assert run.parameters == old.parameters  # a deferred field is read when used, as with .only()
        assert by_id(FlowRun, world_b.workspace, old.pk, only=("workspace",)) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("count", [1, 3])
def test_the_locked_read_finds_its_runs_by_primary_key_on_a_generic_plan(world_a, version_a, count):
    """A prepared statement runs on a generic plan after a few executions (the pool's connections
    prepare the hot statements): that plan must still read each run by its key, not every run of
    the flow (as ``id = ANY(array)`` did), whose number only grows."""
    from tests.orchestration.plans import analyze_as_owner, finished_history, generic_plan

    # given: a flow with thousands of runs, and fresh planner statistics
    history = finished_history(version_a, 3000)
    analyze_as_owner()
    wanted = [run.pk for run in history[:count]]
    sent: list[str] = []

    def capture(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        sent.append(sql)
        return execute(sql, params, many, context)

    with workspace_scope([world_a.workspace.pk]):
        with connection.execute_wrapper(capture):
            assert {run.pk for run in locked_flow_runs(world_a.workspace.pk, wanted)} == set(wanted)
        # when: the same statement, prepared and planned generically
        (sql,) = sent
        ids = f"'{wanted[0]}'::uuid" if count == 1 else "ARRAY[" + ",".join(f"'{pk}'" for pk in wanted) + "]::uuid[]"
        plan = generic_plan(sql, [f"'{world_a.workspace.pk}'::uuid", ids])
    # then: the runs are found through the primary key
    assert "orchestration_flowrun_pkey" in plan, plan
