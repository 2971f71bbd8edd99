"""Deduplication under concurrent evaluators on PostgreSQL: eight passes at once, each on its own
connection, open each incident once, queue its notification once, and add a late run once."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from orchestration.alerts.evaluator import evaluate_flow_run, evaluate_sla_policies
from orchestration.alerts.models import PolicyKind
from orchestration.models import StateType
from tests.orchestration.factories import FlowVersionFactory, ProjectFactory

from .evaluator_support import agent, clock, deliveries, incidents, kinds, minutes, policy, run, run_ids

pytestmark = pytest.mark.postgres

WORKERS = 8


def _at_once(work) -> list[BaseException]:
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_eight_evaluators_at_once_open_each_incident_once_and_notify_once(world_a):
    now = clock()
    project = ProjectFactory(workspace=world_a.workspace)
    flow = FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace).flow
    agent(world_a.workspace, [], seen=now)
    policy(world_a.workspace, PolicyKind.START, threshold_seconds=60)
    policy(world_a.workspace, PolicyKind.FAILURE, flow=flow, consecutive_failures=1)
    policy(world_a.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=60)
    run(flow, scheduled_start=now - minutes(5))  # covered by a healthy agent: its own incident
    for _ in range(20):
        run(flow, scheduled_start=now - minutes(5), labels=["gpu"])  # one correlated incident
    run(flow, state_type=StateType.FAILED, end_time=now - minutes(1), start_time=now - minutes(2))
    run(flow, state_type=StateType.RUNNING, start_time=now - minutes(10))

    opened: list[int] = []
    errors = _at_once(lambda i: opened.append(evaluate_sla_policies(now=now) if i % 2 else
                                               evaluate_flow_run(_any_run(flow), now=now)
                                               + evaluate_sla_policies(now=now)))
    assert errors == []
    found = incidents()
    assert len(found) == 4
    assert len({(i.policy_id, i.subject_key) for i in found}) == 4
    assert sum(opened) == 4  # each opening counted by exactly one evaluator
    for incident in found:
        assert kinds(incident).count("opened") == 1
        assert deliveries(incident) == ["opened"]
    correlated = next(i for i in found if i.subject_key == "labels:gpu")
    assert len(run_ids(correlated)) == 20

    # A late run joins the open incident once, however many evaluators see it.
    run(flow, scheduled_start=now - minutes(3), labels=["gpu"])
    errors = _at_once(lambda i: evaluate_sla_policies(now=now + minutes(1)))
    assert errors == []
    assert len(run_ids(correlated)) == 21
    assert kinds(correlated) == ["opened", "runs_added"]
    assert len(incidents()) == 4


def _any_run(flow):
    from core.tenancy import rls_bypass

    with rls_bypass():
        return type(flow).all_objects.get(pk=flow.pk).runs.values_list("pk", flat=True).first()
