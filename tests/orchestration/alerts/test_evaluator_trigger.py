"""The state-change trigger: a run that starts or ends through the engine is evaluated for its
flow once the change commits — no tick needed — once per flow and transaction; a dispatch that
fails (broker down) never fails the state change."""

from __future__ import annotations

import threading

import pytest

from core.tenancy import rls_bypass
from orchestration.alerts import triggers
from orchestration.alerts.evaluator import evaluate_flow_run
from orchestration.alerts.models import PolicyKind
from orchestration.engine import ProposedState, flow_run_set_state
from orchestration.models import StateType
from tests.orchestration.factories import FlowVersionFactory, ProjectFactory

from .evaluator_support import clock, incidents, minutes, only_incident, policy, reload, run, set_state

pytestmark = pytest.mark.postgres


def _flow(world):
    return FlowVersionFactory(flow__project=ProjectFactory(workspace=world.workspace),
                              flow__workspace=world.workspace).flow


def _published_runs(settings, monkeypatch) -> list[str]:
    """The run ids the trigger thread hands to Celery (a worker is assumed; nothing is sent)."""
    from orchestration.alerts.tasks_evaluate import evaluate_flow_run_task

    settings.CELERY_TASK_ALWAYS_EAGER = False
    published: list[str] = []
    monkeypatch.setattr(evaluate_flow_run_task, "apply_async", lambda *a, **k: published.append(k["args"][0]))
    return published


def _dispatches(callbacks) -> list[triggers._Dispatch]:
    return [c for c in callbacks if isinstance(c, triggers._Dispatch)]


def test_a_start_or_an_end_registers_one_evaluation_per_flow_and_transaction(world_a,
                                                                          django_capture_on_commit_callbacks):
    flow, other = _flow(world_a), _flow(world_a)
    a, b, c = run(flow), run(flow), run(other)
    with django_capture_on_commit_callbacks() as callbacks, rls_bypass():
        for flow_run in (a, b, c):
            flow_run_set_state(actor=None, flow_run_id=flow_run.pk, workspace_id=flow_run.workspace_id,
                               state=ProposedState(type=StateType.RUNNING))
        flow_run_set_state(actor=None, flow_run_id=a.pk, workspace_id=a.workspace_id,
                           state=ProposedState(type=StateType.FAILED))
    (dispatch,) = _dispatches(callbacks)
    assert dispatch.runs == {flow.pk: a.pk, other.pk: c.pk}


def test_a_rename_within_scheduled_triggers_nothing(world_a, django_capture_on_commit_callbacks):
    flow_run = run(_flow(world_a))
    with django_capture_on_commit_callbacks() as callbacks:
        set_state(flow_run, StateType.SCHEDULED, name="Late")
    assert _dispatches(callbacks) == []


def test_the_triggers_work_opens_the_failure_incident_of_a_run_failed_through_the_engine(
        world_a, django_capture_on_commit_callbacks):
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.FAILURE, flow=flow, consecutive_failures=1)
    flow_run = run(flow, state_type=StateType.RUNNING, start_time=clock() - minutes(1))
    with django_capture_on_commit_callbacks() as callbacks:
        set_state(flow_run, StateType.FAILED, message="ZeroDivisionError")
    (dispatch,) = _dispatches(callbacks)
    assert [evaluate_flow_run(run_id) for run_id in dispatch.runs.values()] == [1]
    assert "ZeroDivisionError" in only_incident(policy=sla).cause


@pytest.mark.django_db(transaction=True)
def test_embedded_mode_evaluates_in_a_thread_after_commit_without_a_tick(world_a, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # embedded mode: no worker
    flow = _flow(world_a)
    sla = policy(world_a.workspace, PolicyKind.FAILURE, flow=flow, consecutive_failures=1)
    flow_run = run(flow, state_type=StateType.RUNNING, start_time=clock() - minutes(1))
    set_state(flow_run, StateType.CRASHED, message="OOMKilled")  # its own transaction, committed
    triggers.wait_idle()  # the trigger thread has handled it (no sleep: a join on its queue)
    incident = only_incident(policy=sla)
    assert incident.subject_key == f"flow:{flow.pk}" and "OOMKilled" in incident.cause


def test_a_dispatch_that_fails_never_fails_the_state_change(world_a, settings, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    from orchestration.alerts.tasks_evaluate import evaluate_flow_run_task

    settings.CELERY_TASK_ALWAYS_EAGER = False

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(evaluate_flow_run_task, "apply_async", broker_down)
    flow = _flow(world_a)
    policy(world_a.workspace, PolicyKind.FAILURE, flow=flow)
    flow_run = run(flow, state_type=StateType.RUNNING, start_time=clock())
    with django_capture_on_commit_callbacks(execute=True):
        set_state(flow_run, StateType.FAILED)
    assert reload(flow_run).state_type == StateType.FAILED
    assert incidents() == []  # the next tick catches up


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_is_down_never_holds_up_the_commit(world_a, settings, monkeypatch):
    from orchestration.alerts.tasks_evaluate import evaluate_flow_run_task

    settings.CELERY_TASK_ALWAYS_EAGER = False
    release = threading.Event()
    published: list[str] = []

    def stuck_broker(*args, **kwargs):
        release.wait(timeout=60)  # a broker that takes its time to refuse
        published.append(kwargs["args"][0])
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(evaluate_flow_run_task, "apply_async", stuck_broker)
    flow = _flow(world_a)
    policy(world_a.workspace, PolicyKind.FAILURE, flow=flow)
    flow_run = run(flow, state_type=StateType.RUNNING, start_time=clock())
    set_state(flow_run, StateType.FAILED)  # returns while the publish is still stuck
    assert published == [] and reload(flow_run).state_type == StateType.FAILED
    release.set()
    triggers.wait_idle()
    assert published == [str(flow_run.pk)]


@pytest.mark.django_db(transaction=True)
def test_runs_of_a_workspace_without_policies_are_not_dispatched(world_a, settings, monkeypatch):
    published = _published_runs(settings, monkeypatch)
    flow_run = run(_flow(world_a), state_type=StateType.RUNNING, start_time=clock())
    set_state(flow_run, StateType.COMPLETED)
    triggers.wait_idle()
    assert published == []


def test_a_run_that_is_gone_is_nothing_to_evaluate(db):
    import uuid

    assert evaluate_flow_run(uuid.uuid4()) == 0


@pytest.mark.django_db(transaction=True)
def test_a_workspace_found_without_policies_costs_its_state_changes_nothing(world_a, settings, monkeypatch,
                                                                           django_capture_on_commit_callbacks):
    published = _published_runs(settings, monkeypatch)
    flow = _flow(world_a)
    first = run(flow, state_type=StateType.RUNNING, start_time=clock())
    set_state(first, StateType.COMPLETED)
    triggers.wait_idle()  # the thread looked, found no policy, and remembers that
    second = run(flow, state_type=StateType.RUNNING, start_time=clock())
    with django_capture_on_commit_callbacks() as callbacks:
        set_state(second, StateType.FAILED)
    assert _dispatches(callbacks) == [] and published == []  # nothing registered, nothing queried

    # A new policy is seen by the very next state change (its save clears what was remembered).
    policy(world_a.workspace, PolicyKind.FAILURE, flow=flow)
    third = run(flow, state_type=StateType.RUNNING, start_time=clock())
    set_state(third, StateType.FAILED)
    triggers.wait_idle()
    assert published == [str(third.pk)]


@pytest.mark.django_db(transaction=True)
def test_what_was_remembered_expires(world_a, settings, monkeypatch):
    published = _published_runs(settings, monkeypatch)
    flow = _flow(world_a)
    first = run(flow, state_type=StateType.RUNNING, start_time=clock())
    set_state(first, StateType.COMPLETED)
    triggers.wait_idle()
    assert triggers._without_policies.holds(world_a.workspace.pk)
    # A policy written by another process (no receiver here): simulated by writing it and dropping
    # this process's after-commit hook, then letting the memory age past NO_POLICY_SECONDS.
    monkeypatch.setattr(triggers._without_policies, "forget", lambda workspace_id: None)
    policy(world_a.workspace, PolicyKind.FAILURE, flow=flow)
    seen_at = triggers._without_policies.seen[world_a.workspace.pk]
    triggers._without_policies.seen[world_a.workspace.pk] = seen_at - triggers.NO_POLICY_SECONDS
    second = run(flow, state_type=StateType.RUNNING, start_time=clock())
    set_state(second, StateType.FAILED)
    triggers.wait_idle()
    assert published == [str(second.pk)]
