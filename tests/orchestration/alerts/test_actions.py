"""Actions on breach: cancel the run, mark it failed, pause the flow's schedules — through the
existing entry points, once per opening (run actions also for runs added later), each written on
the incident's timeline; an action that has nothing to act on never stops the evaluator."""

from __future__ import annotations

import pytest

from accounts.models import AuditLogEntry
from core.tenancy import rls_bypass
from orchestration.alerts.evaluator import evaluate_sla_policies
from orchestration.alerts.models import BreachAction, PolicyKind
from orchestration.models import FlowRunState, Schedule, StateType
from tests.orchestration.factories import FlowVersionFactory, ProjectFactory
from tests.orchestration.schedules.factories import ScheduleFactory

from .evaluator_support import agent, clock, minutes, only_incident, policy, reload, run, timeline

pytestmark = pytest.mark.postgres


def _flow(world):
    return FlowVersionFactory(flow__project=ProjectFactory(workspace=world.workspace),
                              flow__workspace=world.workspace).flow


def _actions(incident) -> list[str]:
    return [message for kind, message in timeline(incident) if kind == "action"]


def test_cancel_run_cancels_a_late_run_and_the_incident_resolves_once_it_is_cancelled(world_a):
    now = clock()
    flow = _flow(world_a)
    agent(world_a.workspace, [], seen=now)
    sla = policy(world_a.workspace, PolicyKind.START, flow=flow, threshold_seconds=60, action=BreachAction.CANCEL_RUN)
    late = run(flow, scheduled_start=now - minutes(5), name="nightly-1")
    evaluate_sla_policies(now=now)
    incident = only_incident(policy=sla)
    assert reload(late).state_type == StateType.CANCELLED
    assert _actions(incident) == ["Cancelled run nightly-1."]
    evaluate_sla_policies(now=now)  # no second action for the same opening
    assert _actions(incident) == ["Cancelled run nightly-1."]
    assert reload(incident).status == "resolved"
    assert "The run ended CANCELLED" in timeline(incident)[-1][1]


def test_fail_run_marks_a_run_over_its_duration_failed_through_the_engine(world_a):
    now = clock()
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=60,
                 action=BreachAction.FAIL_RUN, name="ten minutes")
    slow = run(flow, state_type=StateType.RUNNING, start_time=now - minutes(5), name="slow-1")
    evaluate_sla_policies(now=now)
    incident = only_incident(policy=sla)
    slow = reload(slow)
    assert slow.state_type == StateType.FAILED
    assert slow.state_message.startswith("SLA policy 'ten minutes' breached:")
    with rls_bypass():
        assert list(FlowRunState.all_objects.filter(flow_run=slow).values_list("type", flat=True)) == ["FAILED"]
    assert _actions(incident) == ["Marked failed run slow-1."]


def test_pause_schedules_pauses_the_flows_schedules_once_as_the_system(world_a):
    now = clock()
    flow, other = _flow(world_a), _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.FAILURE, flow=flow, action=BreachAction.PAUSE_SCHEDULES)
    schedules = [ScheduleFactory(flow=flow, workspace=world_a.workspace) for _ in range(2)]
    untouched = ScheduleFactory(flow=other, workspace=world_a.workspace)
    run(flow, state_type=StateType.FAILED, end_time=now - minutes(1), start_time=now - minutes(2))
    evaluate_sla_policies(now=now)
    incident = only_incident(policy=sla)
    with rls_bypass():
        active = dict(Schedule.all_objects.values_list("pk", "is_active"))
        audit = list(AuditLogEntry.objects.unscoped().filter(action="schedule.paused").values_list("actor_label",
                                                                                                   flat=True))
    assert [active[s.pk] for s in schedules] == [False, False] and active[untouched.pk] is True
    assert audit == ["system", "system"]
    assert _actions(incident) == [f"Paused 2 schedule(s) of {flow.name}."]


def test_a_run_action_on_runs_that_already_ended_is_written_down_and_nothing_breaks(world_a):
    now = clock()
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.PRESTART, flow=flow, action=BreachAction.CANCEL_RUN)
    run(flow, state_type=StateType.FAILED, end_time=now - minutes(1), state_message="image pull failed")
    assert evaluate_sla_policies(now=now) == 1
    incident = only_incident(policy=sla)
    assert _actions(incident) == ["Nothing to cancel: the runs have already ended."]


def test_a_predictive_warning_takes_no_action(world_a):
    now = clock()
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=3600, predictive=True,
                 action=BreachAction.FAIL_RUN)
    for i in range(5):
        run(flow, state_type=StateType.COMPLETED, start_time=now - minutes(60 + i), end_time=now - minutes(59 + i))
    running = run(flow, state_type=StateType.RUNNING, start_time=now - minutes(5))
    evaluate_sla_policies(now=now)
    assert only_incident(policy=sla).severity == "warning"
    assert reload(running).state_type == StateType.RUNNING
