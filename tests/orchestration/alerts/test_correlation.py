"""Correlation: one cause is one incident. Fifty runs late because no live agent covers their
labels make exactly one incident naming the cause and listing the fifty runs, one "opened"
notification; more late runs join it without a page; when an agent comes back and the runs start,
one "resolved"."""

from __future__ import annotations

import pytest

from core.tenancy import rls_bypass
from orchestration.alerts.evaluator import evaluate_flow_run, evaluate_sla_policies
from orchestration.alerts.models import PolicyKind
from orchestration.models import Agent, StateType
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


def _flows(world, n):
    project = ProjectFactory(workspace=world.workspace)
    return [FlowVersionFactory(flow__project=project, flow__workspace=world.workspace).flow for _ in range(n)]


def test_fifty_late_runs_without_a_covering_agent_are_one_incident_one_open_and_one_resolve(world_a):
    now = clock()
    flows = _flows(world_a, 5)
    sla = policy(world_a.workspace, PolicyKind.START, threshold_seconds=120)
    agent(world_a.workspace, ["cpu"], seen=now)  # healthy, but not for these runs
    agent(world_a.workspace, ["gpu", "eu", "big"], seen=now - minutes(4), name="gpu-box")  # covers them, offline
    late = [run(flows[i % 5], scheduled_start=now - minutes(10), labels=["gpu", "eu"]) for i in range(50)]

    assert evaluate_sla_policies(now=now) == 1
    incident = only_incident(policy=sla)
    assert incident.subject_key == "labels:eu,gpu" and incident.flow_id is None
    assert incident.cause == "No live agent covers the labels eu, gpu (last seen: agent 'gpu-box' 4 min ago)."
    assert run_ids(incident) == {r.pk for r in late}
    assert deliveries(incident) == ["opened"]

    # More runs late for the same cause join it: a timeline row, no new incident, no new page.
    more = [run(flows[0], scheduled_start=now - minutes(5), labels=["eu", "gpu"]) for _ in range(3)]
    assert evaluate_sla_policies(now=now + minutes(1)) == 0
    assert len(run_ids(incident)) == 53
    assert kinds(incident) == ["opened", "runs_added"]
    assert deliveries(incident) == ["opened"]

    # The agent comes back: the runs are still late but stay with their cause (no fifty new incidents).
    with rls_bypass():
        Agent.all_objects.filter(name="gpu-box").update(last_heartbeat_at=now + minutes(2),
                                                         last_poll_at=now + minutes(2))
    assert evaluate_sla_policies(now=now + minutes(2)) == 0
    assert len(incidents()) == 1

    # They start (some through the engine's trigger path, for their flow only), then the tick resolves.
    for flow_run in [*late, *more]:
        set_state(flow_run, StateType.RUNNING)
    assert evaluate_flow_run(late[0].pk, now=now + minutes(3)) == 0  # a shared cause is the tick's
    assert evaluate_sla_policies(now=now + minutes(3)) == 1
    incident = reload(incident)
    assert incident.status == "resolved"
    assert kinds(incident) == ["opened", "runs_added", "resolved"]
    assert "None of the listed runs is late" in timeline(incident)[-1][1]
    assert deliveries(incident) == ["opened", "resolved"]
    assert len(incidents()) == 1


def test_late_runs_an_agent_covers_are_each_their_own_incident_and_causes_split_by_label_set(world_a):
    now = clock()
    (flow,) = _flows(world_a, 1)
    sla = policy(world_a.workspace, PolicyKind.START, threshold_seconds=60)
    agent(world_a.workspace, ["cpu"], seen=now)
    covered = run(flow, scheduled_start=now - minutes(5), labels=["cpu"])
    run(flow, scheduled_start=now - minutes(5), labels=["gpu"])
    run(flow, scheduled_start=now - minutes(5), labels=["tpu"])
    run(flow, scheduled_start=now - minutes(5), labels=["tpu"])
    evaluate_sla_policies(now=now)
    assert sorted(i.subject_key for i in incidents(policy=sla)) == sorted(
        [f"run:{covered.pk}", "labels:gpu", "labels:tpu"])
    assert len(run_ids(only_incident(subject_key="labels:tpu"))) == 2


def test_runs_without_labels_and_no_agent_at_all(world_a):
    now = clock()
    (flow,) = _flows(world_a, 1)
    policy(world_a.workspace, PolicyKind.START, threshold_seconds=60)
    run(flow, scheduled_start=now - minutes(5))
    evaluate_sla_policies(now=now)
    incident = only_incident()
    assert incident.subject_key == "labels:"
    assert incident.cause == "No live agent covers runs without labels (no agent has these labels)."
