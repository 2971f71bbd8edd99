"""A clean agent shutdown (POST agents/{id}/stop/): the agent says it stops and shows ``stopped`` at
once, with an ``agent.status_changed`` event, instead of healthy until its liveness window runs
out. Only the agent's own key may say so; a heartbeat or a registration brings it back."""

from __future__ import annotations

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import Agent
from orchestration.services.agents import announce_silent_agents
from tests.orchestration.api.conftest import assert_error
from tests.orchestration.factories import AgentFactory

pytestmark = pytest.mark.django_db


def _register(world, client, name="a1"):  # type: ignore[no-untyped-def]
    response = client.post(world.url("agents/"), {"name": name, "type": "process", "labels": ["prod"]}, format="json")
    assert response.status_code == 201, response.content
    beat = client.post(world.url(f"agents/{response.json()['id']}/heartbeat/"), {"polled": True}, format="json")
    assert beat.status_code == 200 and beat.json()["status"] == "healthy", beat.content
    return response.json()


def _listed_status(world, agent_id):  # type: ignore[no-untyped-def]
    rows = world.client(Role.DEVELOPER).get(world.url("agents/")).json()["results"]
    return {row["id"]: row["status"] for row in rows}[agent_id]


def test_a_stopping_agent_shows_stopped_at_once_and_is_announced(world_a, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    # given: a healthy agent
    sent: list[dict] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: sent.append({"groups": groups, **event}))
    client = world_a.client(Role.AGENT)
    agent = _register(world_a, client)
    sent.clear()
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(world_a.url(f"agents/{agent['id']}/stop/"), {}, format="json")
    # then
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "stopped" and response.json()["stopped_at"]
    assert _listed_status(world_a, agent["id"]) == "stopped"
    assert [(e["type"], e["data"]["previous"], e["data"]["status"]) for e in sent] == [
        ("agent.status_changed", "healthy", "stopped")]
    assert sent[0]["groups"] == [f"ws.{world_a.workspace.pk}"]


def test_stopping_twice_changes_nothing_and_the_sweep_does_not_announce_it_again(
        world_a, monkeypatch, django_capture_on_commit_callbacks):
    # given: a stopped agent
    client = world_a.client(Role.AGENT)
    agent = _register(world_a, client)
    assert client.post(world_a.url(f"agents/{agent['id']}/stop/"), {}, format="json").status_code == 200
    sent: list[dict] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: sent.append(event))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(world_a.url(f"agents/{agent['id']}/stop/"), {}, format="json")
        announce_silent_agents()
    # then
    assert again.status_code == 200 and again.json()["status"] == "stopped"
    assert sent == []


@pytest.mark.parametrize("comeback", ["heartbeat", "register"])
def test_a_stopped_agent_that_calls_in_again_is_healthy(world_a, comeback):
    # given
    client = world_a.client(Role.AGENT)
    agent = _register(world_a, client)
    client.post(world_a.url(f"agents/{agent['id']}/stop/"), {}, format="json")
    # when
    if comeback == "heartbeat":
        client.post(world_a.url(f"agents/{agent['id']}/heartbeat/"), {"polled": True}, format="json")
    else:
        _register(world_a, client)
    # then
    assert _listed_status(world_a, agent["id"]) == "healthy"
    with rls_bypass():
        assert Agent.all_objects.get(pk=agent["id"]).stopped_at is None


def test_a_claim_also_brings_a_stopped_agent_back(world_a):
    # given
    client = world_a.client(Role.AGENT)
    agent = _register(world_a, client)
    client.post(world_a.url(f"agents/{agent['id']}/stop/"), {}, format="json")
    # when
    claim = client.post(world_a.url(f"agents/{agent['id']}/claim/"), {"limit": 1}, format="json")
    # then
    assert claim.status_code == 200, claim.content
    assert _listed_status(world_a, agent["id"]) == "healthy"


@pytest.mark.parametrize("role", [Role.OWNER, Role.DEVELOPER, Role.VIEWER])
def test_people_cannot_stop_an_agent(world_a, role):
    # given
    agent = _register(world_a, world_a.client(Role.AGENT))
    # when
    response = world_a.client(role).post(world_a.url(f"agents/{agent['id']}/stop/"), {}, format="json")
    # then
    assert_error(response, 403)
    assert _listed_status(world_a, agent["id"]) == "healthy"


def test_another_service_accounts_agent_cannot_be_stopped(world_a):
    # given: an agent of the workspace registered by another service account
    other = AgentFactory(workspace=world_a.workspace, name="someone-else")
    # when
    response = world_a.client(Role.AGENT).post(world_a.url(f"agents/{other.pk}/stop/"), {}, format="json")
    # then
    assert_error(response, 403, "not_agent_owner")
    with rls_bypass():
        assert Agent.all_objects.get(pk=other.pk).stopped_at is None


def test_another_workspaces_agent_key_gets_404_and_stops_nothing(world_a, world_b):
    # given
    agent = _register(world_a, world_a.client(Role.AGENT))
    # when: B's agent key names A's agent, under A's slug and under its own
    under_a = world_b.client(Role.AGENT).post(world_a.url(f"agents/{agent['id']}/stop/"), {}, format="json")
    under_b = world_b.client(Role.AGENT).post(world_b.url(f"agents/{agent['id']}/stop/"), {}, format="json")
    # then
    assert under_a.status_code in (403, 404)
    assert_error(under_b, 404)
    assert _listed_status(world_a, agent["id"]) == "healthy"


def test_a_body_with_fields_is_a_clear_400(world_a):
    # given
    client = world_a.client(Role.AGENT)
    agent = _register(world_a, client)
    # when
    response = client.post(world_a.url(f"agents/{agent['id']}/stop/"), {"status": "offline"}, format="json")
    # then
    assert_error(response, 400)
    assert _listed_status(world_a, agent["id"]) == "healthy"


def test_graphql_shows_a_stopped_agent_and_the_service_account_that_runs_it(world_a):
    # given: a stopped agent of the agent service account, and one registered by no one
    from tests.orchestration.graphql.test_queries import orchestration

    client = world_a.client(Role.AGENT)
    agent = _register(world_a, client)
    client.post(world_a.url(f"agents/{agent['id']}/stop/"), {}, format="json")
    AgentFactory(workspace=world_a.workspace, name="zz-nobody", service_account=None)
    # when
    data = orchestration(world_a, Role.VIEWER, "agents { name status serviceAccountId }")
    # then
    assert data["agents"] == [
        {"name": "a1", "status": "stopped", "serviceAccountId": str(world_a.agent.pk)},
        {"name": "zz-nobody", "status": "offline", "serviceAccountId": None},
    ]
