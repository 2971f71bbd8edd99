"""A run's state history over REST (``flow-runs/{id}/states/``): every state in the order the run
passed through it, paged with ``after``, including the short ones a poller of the run would miss
(a crash turned into AwaitingRetry); another workspace's run is 404."""

from __future__ import annotations

import pytest

from accounts.models import Role
from tests.orchestration.api.conftest import assert_error, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def crashed_and_retried(world_a, metadata):
    """A quick run claimed, RUNNING, crashed (the server retries it), claimed again, COMPLETED."""
    developer = world_a.client(Role.DEVELOPER)
    flow = register(developer, world_a, metadata).json()["flow"]
    run = developer.post(world_a.url("flow-runs/"), {"flow": flow["id"]}, format="json").json()
    agent = world_a.client(Role.AGENT)
    record = agent.post(world_a.url("agents/"), {"name": "a1", "type": "process", "labels": ["prod"],
                                                 "version": "1.0"}, format="json").json()
    set_state = world_a.url(f"flow-runs/{run['id']}/set-state/")
    claim = world_a.url(f"agents/{record['id']}/claim/")

    def propose(state: dict, attempt: int) -> None:
        response = agent.post(set_state, {"state": state, "attempt": attempt}, format="json")
        assert response.status_code == 200, response.content

    assert agent.post(claim, {"limit": 1}, format="json").json()["results"][0]["attempt"] == 1
    propose({"type": "RUNNING"}, 1)
    propose({"type": "CRASHED", "message": "killed by signal 9"}, 1)
    assert agent.post(claim, {"limit": 1}, format="json").json()["results"][0]["attempt"] == 2
    propose({"type": "RUNNING"}, 2)
    propose({"type": "COMPLETED"}, 2)
    return run


def test_the_history_lists_every_state_in_order(world_a, crashed_and_retried):
    response = world_a.client(Role.VIEWER).get(world_a.url(f"flow-runs/{crashed_and_retried['id']}/states/"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(s["type"], s["name"]) for s in body["results"]] == [
        ("SCHEDULED", "Scheduled"), ("PENDING", "Pending"), ("RUNNING", "Running"),
        ("SCHEDULED", "AwaitingRetry"), ("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Completed"),
    ]
    retry = body["results"][3]
    assert retry["details"]["crashed"] == "killed by signal 9"
    assert retry["details"]["retry_of_attempt"] == 1
    assert body["next_after"] == body["results"][-1]["id"]


def test_after_returns_only_the_states_that_came_since(world_a, crashed_and_retried):
    client = world_a.client(Role.VIEWER)
    url = world_a.url(f"flow-runs/{crashed_and_retried['id']}/states/")
    first = client.get(url, {"limit": 3}).json()
    assert [s["type"] for s in first["results"]] == ["SCHEDULED", "PENDING", "RUNNING"]
    rest = client.get(url, {"after": first["next_after"]}).json()
    assert [s["name"] for s in rest["results"]] == ["AwaitingRetry", "Pending", "Running", "Completed"]
    caught_up = client.get(url, {"after": rest["next_after"]}).json()
    assert caught_up == {"results": [], "next_after": rest["next_after"]}


@pytest.mark.parametrize("query", [{"after": "x"}, {"after": "-1"}, {"limit": "0"}, {"limit": "1001"}])
def test_bad_paging_is_a_400(world_a, crashed_and_retried, query):
    response = world_a.client(Role.VIEWER).get(world_a.url(f"flow-runs/{crashed_and_retried['id']}/states/"), query)
    assert_error(response, 400, "invalid")


def test_another_workspaces_run_is_404(world_a, world_b, crashed_and_retried):
    for role in (Role.OWNER, Role.VIEWER):
        response = world_b.client(role).get(f"/api/v1/workspaces/{world_a.workspace.slug}/flow-runs/"
                                            f"{crashed_and_retried['id']}/states/")
        assert_error(response, 404)
        # Its own workspace's URL with the other workspace's run id: 404 as well.
        response = world_b.client(role).get(world_b.url(f"flow-runs/{crashed_and_retried['id']}/states/"))
        assert_error(response, 404, "not_found")
