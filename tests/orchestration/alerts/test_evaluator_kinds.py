"""The evaluator, one kind at a time: each opens its incident once when its promise breaks (one
"opened" notification however often it ticks) and resolves it by itself when the condition clears
(one "resolved"), with time driven by an explicit ``now``."""

from __future__ import annotations

import pytest

from orchestration.alerts.evaluator import evaluate_sla_policies, evaluate_workspace
from orchestration.alerts.models import Incident, PolicyKind, Severity
from orchestration.models import StateType
from tests.orchestration.factories import FlowVersionFactory, ProjectFactory

from .evaluator_support import (
    agent,
    clock,
    deliveries,
    incidents,
    kinds,
    minutes,
    only_incident,
    policy,
    reload,
    run,
    run_ids,
    set_state,
    timeline,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def now():
    return clock()


def _flow(world, name="etl"):
    project = ProjectFactory(workspace=world.workspace)
    return FlowVersionFactory(flow__project=project, flow__name=name, flow__workspace=world.workspace).flow


# --- start -----------------------------------------------------------------------------------------------


def test_start_opens_once_for_a_late_run_an_agent_covers_and_resolves_when_it_starts(world_a, now):
    flow = _flow(world_a)
    agent(world_a.workspace, [], seen=now)
    sla = policy(world_a.workspace, PolicyKind.START, flow=flow, threshold_seconds=300)
    late = run(flow, scheduled_start=now - minutes(10))
    run(flow, scheduled_start=now - minutes(2))  # within the threshold
    run(flow, scheduled_start=now - minutes(20), state_type=StateType.RUNNING, start_time=now - minutes(19))

    assert evaluate_sla_policies(now=now) == 1
    assert evaluate_sla_policies(now=now + minutes(1)) == 0  # deduplicated while open
    incident = only_incident(policy=sla)
    assert (incident.subject_key, incident.status, incident.flow_id) == (f"run:{late.pk}", "open", flow.pk)
    assert run_ids(incident) == {late.pk}
    assert "not started 10 min later" in incident.cause
    assert kinds(incident) == ["opened"]

    set_state(late, StateType.RUNNING)
    assert evaluate_sla_policies(now=now + minutes(2)) == 1
    incident = reload(incident)
    assert incident.status == "resolved" and incident.resolved_by == ""
    assert kinds(incident) == ["opened", "resolved"]
    assert "The run started" in timeline(incident)[-1][1]
    assert deliveries(incident) == ["opened", "resolved"]
    assert evaluate_sla_policies(now=now + minutes(3)) == 0


def test_start_respects_scope_and_labels(world_a, now):
    flow, other = _flow(world_a, "a"), _flow(world_a, "b")
    agent(world_a.workspace, ["gpu", "x"], seen=now)
    policy(world_a.workspace, PolicyKind.START, project=flow.project, labels=["gpu"], threshold_seconds=60)
    run(flow, scheduled_start=now - minutes(5))  # no gpu label: not covered
    run(other, scheduled_start=now - minutes(5), labels=["gpu"])  # another project
    covered = run(flow, scheduled_start=now - minutes(5), labels=["gpu", "x"])
    evaluate_sla_policies(now=now)
    assert [i.subject_key for i in incidents()] == [f"run:{covered.pk}"]


# --- duration ------------------------------------------------------------------------------------------


def test_duration_opens_past_the_limit_and_the_timeline_says_how_the_run_ended(world_a, now):
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=600)
    slow = run(flow, state_type=StateType.RUNNING, start_time=now - minutes(11))
    run(flow, state_type=StateType.RUNNING, start_time=now - minutes(5))
    assert evaluate_sla_policies(now=now) == 1
    incident = only_incident(policy=sla)
    assert incident.subject_key == f"run:{slow.pk}" and incident.severity == Severity.CRITICAL

    set_state(slow, StateType.FAILED, message="boom")
    assert evaluate_sla_policies(now=now + minutes(1)) == 1
    assert reload(incident).status == "resolved"
    assert "The run ended FAILED" in timeline(incident)[-1][1]


def test_predictive_warning_past_p95_is_replaced_by_the_hard_breach(world_a, now):
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=3600, predictive=True,
                 history_size=20)
    for i in range(6):  # successes of 1..6 minutes: the p95 is 6 minutes
        run(flow, state_type=StateType.COMPLETED, start_time=now - minutes(100 + i * 10),
            end_time=now - minutes(100 + i * 10) + minutes(i + 1))
    running = run(flow, state_type=StateType.RUNNING, start_time=now - minutes(7))
    evaluate_sla_policies(now=now)
    warning = only_incident(policy=sla)
    assert (warning.subject_key, warning.severity) == (f"run:{running.pk}:p95", Severity.WARNING)
    assert "past the p95 of 6 min over the last 6 successful runs" in warning.cause

    # Past the hard limit: the hard breach opens and the warning resolves, saying why.
    evaluate_sla_policies(now=now + minutes(60))
    hard = only_incident(policy=sla, status="open")
    assert hard.subject_key == f"run:{running.pk}" and hard.severity == Severity.CRITICAL
    assert reload(warning).status == "resolved"
    assert "hard limit" in timeline(warning)[-1][1]


def test_no_predictive_warning_with_fewer_than_five_samples(world_a, now):
    flow = _flow(world_a)
    policy(world_a.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=3600, predictive=True)
    for i in range(4):
        run(flow, state_type=StateType.COMPLETED, start_time=now - minutes(60), end_time=now - minutes(59))
    run(flow, state_type=StateType.RUNNING, start_time=now - minutes(30))
    assert evaluate_sla_policies(now=now) == 0


# --- failure -------------------------------------------------------------------------------------------


def _ended(flow, state, at, **fields):
    return run(flow, state_type=state, created_at=at, end_time=at, start_time=at - minutes(1), **fields)


def test_failure_streak_of_n_opens_adds_runs_and_resolves_on_the_next_success(world_a, now):
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.FAILURE, flow=flow, consecutive_failures=3)
    _ended(flow, StateType.COMPLETED, now - minutes(60))
    first = _ended(flow, StateType.FAILED, now - minutes(50))
    _ended(flow, StateType.CANCELLED, now - minutes(45))  # ignored: neither a failure nor a success
    second = _ended(flow, StateType.CRASHED, now - minutes(40))
    assert evaluate_sla_policies(now=now) == 0  # two failures, N is 3
    third = _ended(flow, StateType.FAILED, now - minutes(30), state_message="exit code 3")
    assert evaluate_sla_policies(now=now) == 1
    incident = only_incident(policy=sla)
    assert incident.subject_key == f"flow:{flow.pk}"
    assert run_ids(incident) == {first.pk, second.pk, third.pk}
    assert "The last 3 runs" in incident.cause and "exit code 3" in incident.cause

    fourth = _ended(flow, StateType.FAILED, now - minutes(20))
    assert evaluate_sla_policies(now=now) == 0
    assert run_ids(incident) == {first.pk, second.pk, third.pk, fourth.pk}
    assert kinds(incident) == ["opened", "runs_added"]

    _ended(flow, StateType.COMPLETED, now - minutes(10), name="good-run")
    assert evaluate_sla_policies(now=now) == 1
    assert reload(incident).status == "resolved"
    assert "Run good-run completed" in timeline(incident)[-1][1]
    assert deliveries(incident) == ["opened", "resolved"]


def test_failure_n1_is_one_incident_per_streak_and_a_crash_the_engine_retries_is_not_a_failure(world_a, now):
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.FAILURE, flow=flow, consecutive_failures=1)
    crashing = run(flow, state_type=StateType.RUNNING, start_time=now - minutes(5))
    # The engine's own rules: a crash with retries left goes back to SCHEDULED (not settled).
    from core.tenancy import rls_bypass
    from orchestration.engine import ProposedState, flow_run_set_state

    with rls_bypass():
        flow_run_set_state(actor=None, flow_run_id=crashing.pk, workspace_id=crashing.workspace_id,
                           state=ProposedState(type=StateType.CRASHED, message="lost"))
    assert reload(crashing).state_name == "AwaitingRetry"
    assert evaluate_sla_policies(now=now) == 0

    a = _ended(flow, StateType.FAILED, now - minutes(3), name="run-a", state_message="ImportError")
    assert evaluate_sla_policies(now=now) == 1
    incident = only_incident(policy=sla)
    assert incident.title.endswith("run run-a failed") and "ImportError" in incident.cause
    b = _ended(flow, StateType.FAILED, now - minutes(2))
    assert evaluate_sla_policies(now=now) == 0
    assert run_ids(incident) == {a.pk, b.pk} and len(incidents(policy=sla)) == 1


# --- freshness -----------------------------------------------------------------------------------------


def test_freshness_opens_when_no_success_lands_within_x_and_resolves_when_one_does(world_a, now):
    stale, archived = _flow(world_a, "stale"), _flow(world_a, "archived")
    fresh_new = _flow(world_a, "brand-new")  # created just now, no run yet: one window to run
    sla = policy(world_a.workspace, PolicyKind.FRESHNESS, threshold_seconds=3600)
    _ended(stale, StateType.COMPLETED, now - minutes(120))
    _ended(stale, StateType.FAILED, now - minutes(5))
    _ended(archived, StateType.COMPLETED, now - minutes(120))
    from core.tenancy import rls_bypass

    with rls_bypass():
        type(archived).all_objects.filter(pk=archived.pk).update(is_archived=True)
    assert evaluate_sla_policies(now=now) == 1
    incident = only_incident(policy=sla)
    assert incident.subject_key == f"flow:{stale.pk}" and "2 h ago" in incident.cause
    assert fresh_new.pk not in {i.flow_id for i in incidents()}

    _ended(stale, StateType.COMPLETED, now - minutes(1))
    assert evaluate_sla_policies(now=now) == 1
    assert reload(incident).status == "resolved"


def test_freshness_skipped_runs_are_not_successes(world_a, now):
    flow = _flow(world_a)
    policy(world_a.workspace, PolicyKind.FRESHNESS, flow=flow, threshold_seconds=600)
    _ended(flow, StateType.COMPLETED, now - minutes(30))
    _ended(flow, StateType.COMPLETED, now - minutes(1), state_name="Skipped")
    assert evaluate_sla_policies(now=now) == 1


# --- agent ----------------------------------------------------------------------------------------------


def test_agent_opens_after_x_without_a_healthy_covering_agent_and_resolves_when_one_is_back(world_a, now):
    sla = policy(world_a.workspace, PolicyKind.AGENT, agent_labels=["gpu"], threshold_seconds=300)
    agent(world_a.workspace, ["cpu"], seen=now)  # healthy, but does not cover gpu
    gpu = agent(world_a.workspace, ["gpu", "eu"], seen=now - minutes(3), name="gpu-1", created=now - minutes(60))
    # Last healthy about 2 minutes ago (one minute's liveness window): not yet X.
    assert evaluate_sla_policies(now=now) == 0
    assert evaluate_sla_policies(now=now + minutes(4)) == 1
    incident = only_incident(policy=sla)
    assert incident.subject_key == "agent-labels:gpu" and incident.flow_id is None
    assert "agent 'gpu-1' 7 min ago" in incident.cause

    from core.tenancy import rls_bypass

    with rls_bypass():
        back = now + minutes(5)
        type(gpu).all_objects.filter(pk=gpu.pk).update(last_heartbeat_at=back, last_poll_at=back)
    assert evaluate_sla_policies(now=now + minutes(5)) == 1
    assert reload(incident).status == "resolved"


def test_agent_with_no_covering_agent_at_all_counts_from_the_policy(world_a, now):
    sla = policy(world_a.workspace, PolicyKind.AGENT, agent_labels=["tpu"], threshold_seconds=600,
                 created_at=now - minutes(5))
    assert evaluate_sla_policies(now=now) == 0
    assert evaluate_sla_policies(now=now + minutes(6)) == 1
    assert "no agent has these labels" in only_incident(policy=sla).cause


# --- prestart ------------------------------------------------------------------------------------------


def test_prestart_opens_with_the_agents_error_and_resolves_when_the_flow_next_starts_a_run(world_a, now):
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.PRESTART, flow=flow)
    error = "Could not pull image registry.example/etl:3: manifest unknown"
    failed = run(flow, state_type=StateType.FAILED, end_time=now - minutes(2), state_timestamp=now - minutes(2),
                 state_message=error)
    run(flow, state_type=StateType.FAILED, start_time=now - minutes(9), end_time=now - minutes(8))  # its code ran
    assert evaluate_sla_policies(now=now) == 1
    incident = only_incident(policy=sla)
    assert (incident.subject_key, incident.cause) == (f"run:{failed.pk}", error)
    assert incident.details["error"] == error

    later = run(flow, scheduled_start=now)
    set_state(later, StateType.RUNNING)  # the database clock: after the failure's end
    assert evaluate_sla_policies(now=now + minutes(1)) == 1
    assert reload(incident).status == "resolved"
    # The failed run is still FAILED without a start: it never opens again.
    assert evaluate_sla_policies(now=now + minutes(2)) == 0
    assert len(incidents(policy=sla)) == 1


# --- paused policies, workspaces ------------------------------------------------------------------


def test_a_paused_policy_evaluates_nothing_and_leaves_its_open_incidents_alone(world_a, now):
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=60)
    slow = run(flow, state_type=StateType.RUNNING, start_time=now - minutes(5))
    evaluate_sla_policies(now=now)
    incident = only_incident(policy=sla)
    from core.tenancy import rls_bypass

    with rls_bypass():
        type(sla).all_objects.filter(pk=sla.pk).update(is_paused=True)
    set_state(slow, StateType.COMPLETED)
    run(flow, state_type=StateType.RUNNING, start_time=now - minutes(5))
    assert evaluate_sla_policies(now=now + minutes(1)) == 0
    assert reload(incident).status == Incident.Status.OPEN and len(incidents()) == 1
    with rls_bypass():
        type(sla).all_objects.filter(pk=sla.pk).update(is_paused=False)
    evaluate_sla_policies(now=now + minutes(1))
    assert reload(incident).status == "resolved" and len(incidents(status="open")) == 1


def test_evaluate_workspace_leaves_other_workspaces_alone(world_a, world_b, now):
    flows = [_flow(world_a), _flow(world_b)]
    for flow in flows:
        policy(flow.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=60)
        run(flow, state_type=StateType.RUNNING, start_time=now - minutes(5))
    assert evaluate_workspace(world_b.workspace.pk, now=now) == 1
    assert [i.workspace_id for i in incidents()] == [world_b.workspace.pk]
