"""Agents: registration with a service-account key (idempotent upsert), liveness
(healthy/unhealthy/offline from heartbeats and claim-loop polls) and live-agent coverage of a run."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.authz import PermissionDenied, principal_for_user
from accounts.models import Role
from core.errors import Forbidden, InvalidInput
from core.tenancy import rls_bypass, workspace_scope
from orchestration.models import Agent
from orchestration.services.agents import (
    HEALTHY,
    OFFLINE,
    UNHEALTHY,
    agent_heartbeat,
    agent_register,
    agent_status,
    announce_silent_agents,
    run_has_live_agent,
)
from tests.orchestration.agents.conftest import due_runs
from tests.orchestration.factories import AgentFactory

pytestmark = pytest.mark.django_db


def test_register_creates_an_agent_owned_by_the_service_account(world_a, actor_a, django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        agent = agent_register(actor=actor_a, name="k8s-1", type="kubernetes", labels=["prod", "gpu"], version="1.2")
    # then
    with rls_bypass():
        stored = Agent.objects.for_workspace(world_a.workspace).get()
    assert stored == agent
    assert (stored.type, stored.labels, stored.version) == ("kubernetes", ["gpu", "prod"], "1.2")
    assert stored.service_account_id == world_a.agent.pk
    assert stored.last_heartbeat_at is not None
    assert len(callbacks) == 1


def test_registering_the_same_name_again_updates_the_same_agent(world_a, actor_a):
    # given
    first = agent_register(actor=actor_a, name="k8s-1", type="process", labels=["a"], version="1.0")
    # when
    second = agent_register(actor=actor_a, name="k8s-1", type="docker", labels=["b"], version="1.1",
                            poll_interval_seconds=5)
    # then
    assert second.pk == first.pk
    with rls_bypass():
        stored = Agent.objects.for_workspace(world_a.workspace).get()
    assert (stored.type, stored.labels, stored.version, stored.poll_interval_seconds) == ("docker", ["b"], "1.1", 5)


def test_a_users_credentials_cannot_register_an_agent(world_a):
    # given: a developer may do agent actions by role, but is not a service account
    actor = principal_for_user(world_a.users[Role.DEVELOPER], world_a.workspace)
    # when / then
    with pytest.raises(Forbidden) as excinfo:
        agent_register(actor=actor, name="laptop", type="process", labels=[])
    assert excinfo.value.code == "service_account_required"


def test_a_viewer_key_is_refused_by_role(world_a):
    # given
    from accounts.services.api_keys import api_key_authenticate

    actor = api_key_authenticate(world_a.keys[Role.VIEWER])
    # when / then
    with pytest.raises(PermissionDenied):
        agent_register(actor=actor, name="laptop", type="process", labels=[])


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", ""), ("type", "lambda"), ("labels", "prod"), ("labels", [""]), ("poll_interval_seconds", 0)],
)
def test_registration_rejects_bad_input_clearly(actor_a, field, value):
    # given
    data = {"name": "a", "type": "process", "labels": [], "poll_interval_seconds": 10, field: value}
    # when / then
    with pytest.raises(InvalidInput) as excinfo:
        agent_register(actor=actor_a, **data)
    assert field in excinfo.value.details


@pytest.mark.parametrize(
    ("heartbeat_ago", "poll_ago", "expected"),
    [
        (5, 5, HEALTHY),
        (5, 29, HEALTHY),          # within 3 × 10 s... and the 60 s floor
        (5, 61, UNHEALTHY),        # heartbeats, but the claim loop stopped
        (61, 5, OFFLINE),          # no heartbeat for longer than the window
        (200, 200, OFFLINE),
    ],
)
def test_status_from_heartbeat_and_poll_ages(world_a, heartbeat_ago, poll_ago, expected):
    # given
    with time_machine.travel(timezone.now(), tick=False):
        now = timezone.now()
        agent = AgentFactory(workspace=world_a.workspace, poll_interval_seconds=10,
                             last_heartbeat_at=now - timedelta(seconds=heartbeat_ago),
                             last_poll_at=now - timedelta(seconds=poll_ago))
        # when / then
        assert agent_status(agent, timezone.now()) == expected


def test_status_follows_the_clock_as_time_passes(world_a):
    # given: an agent polling every 60 s that just heartbeat and polled
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        now = timezone.now()
        agent = AgentFactory(workspace=world_a.workspace, poll_interval_seconds=60, last_heartbeat_at=now,
                             last_poll_at=now - timedelta(seconds=100))
        assert agent_status(agent, timezone.now()) == HEALTHY
        # when: 3 poll intervals pass without a poll, though it still heartbeats
        traveller.shift(timedelta(seconds=90))
        agent.last_heartbeat_at = timezone.now()
        # then
        assert agent_status(agent, timezone.now()) == UNHEALTHY
        # when: heartbeats stop too
        traveller.shift(timedelta(seconds=181))
        assert agent_status(agent, timezone.now()) == OFFLINE


def test_a_never_polled_agent_gets_one_window_from_registration(world_a):
    # given
    now = timezone.now()
    fresh = AgentFactory(workspace=world_a.workspace, created_at=now, last_heartbeat_at=now, last_poll_at=None)
    stale = AgentFactory(workspace=world_a.workspace, created_at=now - timedelta(minutes=5), last_heartbeat_at=now,
                         last_poll_at=None)
    # when / then
    assert agent_status(fresh, now) == HEALTHY
    assert agent_status(stale, now) == UNHEALTHY


def test_heartbeat_uses_the_db_clock_and_publishes_a_status_change(
    world_a, actor_a, django_capture_on_commit_callbacks
):
    # given: an agent last seen 10 minutes ago (offline)
    old = timezone.now() - timedelta(minutes=10)
    agent = AgentFactory(workspace=world_a.workspace, service_account=world_a.agent, last_heartbeat_at=old,
                         last_poll_at=old)
    # when: it heartbeats with a claim-loop cycle, while this process's clock is a day off (D6)
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            reply = agent_heartbeat(actor=actor_a, agent=agent, polled=True)
    # then
    assert reply["status"] == HEALTHY
    assert abs(agent.last_heartbeat_at - timezone.now()) < timedelta(seconds=30)
    assert agent.last_poll_at == agent.last_heartbeat_at
    assert len(callbacks) == 1  # agent.status_changed offline → healthy


def test_heartbeat_without_a_status_change_publishes_nothing(agent_a, actor_a, django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reply = agent_heartbeat(actor=actor_a, agent=agent_a, polled=True)
    # then
    assert reply["status"] == HEALTHY
    assert callbacks == []


def test_heartbeat_of_another_workspaces_agent_is_not_found(world_b, actor_a):
    # given
    from accounts.authz import NotFound

    agent_b = AgentFactory(workspace=world_b.workspace)
    # when / then
    with pytest.raises(NotFound):
        agent_heartbeat(actor=actor_a, agent=agent_b)


def test_a_run_is_live_only_when_a_healthy_agent_covers_its_labels(world_a, world_b, version_a):
    # given
    now = timezone.now()
    (gpu_run,) = due_runs(version_a, 1, labels=["gpu"])
    (tpu_run,) = due_runs(version_a, 1, labels=["tpu"])
    (plain_run,) = due_runs(version_a, 1)
    AgentFactory(workspace=world_a.workspace, labels=["gpu", "prod"], last_heartbeat_at=now, last_poll_at=now)
    AgentFactory(workspace=world_a.workspace, labels=["tpu"], last_heartbeat_at=now - timedelta(hours=1),
                 last_poll_at=now - timedelta(hours=1))  # offline
    AgentFactory(workspace=world_b.workspace, labels=["tpu"], last_heartbeat_at=now, last_poll_at=now)  # not ours
    # when / then
    assert run_has_live_agent(gpu_run) is True
    assert run_has_live_agent(tpu_run) is False
    assert run_has_live_agent(plain_run) is True  # no labels: any healthy agent covers it


def test_an_unhealthy_agent_does_not_make_a_run_live(world_a, version_a):
    # given
    now = timezone.now()
    (run,) = due_runs(version_a, 1, labels=["gpu"])
    AgentFactory(workspace=world_a.workspace, labels=["gpu"], last_heartbeat_at=now,
                 last_poll_at=now - timedelta(minutes=10))
    # when / then
    assert run_has_live_agent(run) is False


def test_the_heartbeat_reply_lists_the_agents_runs_to_cancel(world_a, actor_a, agent_a, version_a):
    # given: the agent holds two runs, and a developer cancels one of them
    from orchestration.engine import ProposedState, flow_run_set_state
    from orchestration.services.claims import flow_runs_claim
    from orchestration.services.runs import flow_run_cancel

    due_runs(version_a, 2)
    kept, cancelled = flow_runs_claim(actor=actor_a, agent=agent_a, limit=2)
    for run in (kept, cancelled):
        with workspace_scope([run.workspace_id]):
            flow_run_set_state(actor=actor_a, flow_run_id=run.pk, state=ProposedState(type="RUNNING"),
                               workspace_id=run.workspace_id, attempt=1)
    developer = principal_for_user(world_a.users[Role.DEVELOPER], world_a.workspace)
    with rls_bypass():
        fresh = cancelled.__class__.objects.unscoped().get(pk=cancelled.pk)
    flow_run_cancel(actor=developer, flow_run=fresh)
    # when
    reply = agent_heartbeat(actor=actor_a, agent=agent_a)
    # then
    assert reply["cancel_flow_run_ids"] == [str(cancelled.pk)]


def test_silent_agents_are_announced_once_by_the_sweep(world_a, world_b, monkeypatch,
                                                       django_capture_on_commit_callbacks):
    # given: one agent that stopped heartbeating, one whose claim loop froze, one healthy, all
    # last announced healthy, and another workspace's silent agent
    sent: list[dict] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: sent.append({"groups": groups, **event}))
    now, long_ago = timezone.now(), timezone.now() - timedelta(minutes=10)

    def agent(world, name, heartbeat, poll):  # type: ignore[no-untyped-def]
        return AgentFactory(workspace=world.workspace, service_account=world.agent, name=name,
                            last_heartbeat_at=heartbeat, last_poll_at=poll, announced_status=HEALTHY)

    gone = agent(world_a, "gone", long_ago, long_ago)
    frozen = agent(world_a, "frozen", now, long_ago)
    agent(world_a, "fine", now, now)
    theirs = agent(world_b, "theirs", long_ago, long_ago)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        announced = announce_silent_agents()
    # then: each silent agent is announced once, to its own workspace only
    assert announced == 3
    by_agent = {e["data"]["name"]: e for e in sent}
    assert set(by_agent) == {"gone", "frozen", "theirs"}
    assert (by_agent["gone"]["data"]["previous"], by_agent["gone"]["data"]["status"]) == (HEALTHY, "offline")
    assert by_agent["frozen"]["data"]["status"] == "unhealthy"
    assert by_agent["gone"]["groups"] == [f"ws.{world_a.workspace.pk}"]
    assert by_agent["theirs"]["groups"] == [f"ws.{world_b.workspace.pk}"]
    with rls_bypass():
        assert Agent.all_objects.get(pk=gone.pk).announced_status == "offline"
        assert Agent.all_objects.get(pk=frozen.pk).announced_status == "unhealthy"
        assert Agent.all_objects.get(pk=theirs.pk).announced_status == "offline"
    # and: a second sweep has nothing new to say
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert announce_silent_agents() == 0
    assert sent == []


def test_recovery_is_recorded_by_the_sweep_without_a_second_announcement(world_a, actor_a, monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    # given: an agent announced offline that heartbeats again (the heartbeat announces it)
    sent: list[dict] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: sent.append(event))
    agent = AgentFactory(workspace=world_a.workspace, service_account=world_a.agent,
                         last_heartbeat_at=timezone.now() - timedelta(minutes=10), announced_status="offline")
    with django_capture_on_commit_callbacks(execute=True):
        agent_heartbeat(actor=actor_a, agent=agent, polled=True)
    assert [e["data"]["status"] for e in sent] == [HEALTHY]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        assert announce_silent_agents() == 0
    # then
    assert [e["data"]["status"] for e in sent] == [HEALTHY]
    with rls_bypass():
        assert Agent.all_objects.get(pk=agent.pk).announced_status == HEALTHY
