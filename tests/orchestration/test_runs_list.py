"""The web app's runs list over GraphQL: numbered pages (``offset`` and ``totalCount``), and runs
no live agent can take — which ones, why (``noLiveAgentReason``), and that only the run's own
workspace's agents count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Role
from tests.accounts.test_graphql import error_codes, gql, login, ok
from tests.orchestration.factories import AgentFactory, FlowRunFactory, FlowVersionFactory, ProjectFactory

pytestmark = pytest.mark.django_db

PAGE = """query($ws: String!, $filter: FlowRunFilter, $first: Int, $offset: Int, $after: String) {
  orchestration(workspace: $ws) { flowRuns(filter: $filter, first: $first, offset: $offset, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage } edges { node { name stateName noLiveAgentReason } } } } }"""


def _version(world):  # type: ignore[no-untyped-def]
    project = ProjectFactory(workspace=world.workspace)
    return FlowVersionFactory(flow__project=project, flow__workspace=world.workspace)


def _page(world, **variables):  # type: ignore[no-untyped-def]
    body = gql(login(world.users[Role.VIEWER]), PAGE, {"ws": world.workspace.slug, **variables})
    return ok(body)["orchestration"]["flowRuns"]


def _healthy(world, labels):  # type: ignore[no-untyped-def]
    now = timezone.now()
    return AgentFactory(workspace=world.workspace, labels=labels, last_heartbeat_at=now, last_poll_at=now)


def test_numbered_pages_cover_every_run_once_and_count_them(world_a, world_b):
    version = _version(world_a)
    start = timezone.now()
    for i in range(7):
        FlowRunFactory(flow_version=version, name=f"r{i}", created_at=start + timedelta(seconds=i))
    FlowRunFactory(flow_version=_version(world_b), name="theirs")

    pages = [_page(world_a, first=3, offset=offset) for offset in (0, 3, 6)]

    assert [[e["node"]["name"] for e in p["edges"]] for p in pages] == [
        ["r6", "r5", "r4"], ["r3", "r2", "r1"], ["r0"]]
    assert [p["totalCount"] for p in pages] == [7, 7, 7]  # another workspace's run is never counted
    assert [p["pageInfo"]["hasNextPage"] for p in pages] == [True, True, False]
    assert [p["pageInfo"]["hasPreviousPage"] for p in pages] == [False, True, True]
    assert _page(world_a, first=3, offset=0, filter={"stateTypes": ["FAILED"]})["totalCount"] == 0


@pytest.mark.parametrize(("variables", "message"), [
    ({"offset": -1}, "'offset' must be between 0 and 10000"),
    ({"offset": 10_001}, "'offset' must be between 0 and 10000"),
    ({"offset": 3, "after": "x"}, "Give 'after' or 'offset', not both."),
    ({"filter": {"tags": ["t"] * 51}}, "At most 50 tags"),
])
def test_bad_paging_and_tags_are_refused_plainly(world_a, variables, message):
    body = gql(login(world_a.users[Role.VIEWER]), PAGE, {"ws": world_a.workspace.slug, **variables})
    assert error_codes(body) == ["invalid_argument"]
    assert message in body["errors"][0]["message"]


def test_a_nul_in_a_tag_is_refused_before_the_query_runs(world_a):
    body = gql(login(world_a.users[Role.VIEWER]), PAGE, {"ws": world_a.workspace.slug,
                                                          "filter": {"tags": ["a\x00b"]}}, status=400)
    assert error_codes(body) == ["invalid_text"]  # core.text_guard, before any resolver


def test_a_run_no_live_agent_can_take_says_why(world_a):
    version = _version(world_a)
    FlowRunFactory(flow_version=version, name="retrying", state_type="SCHEDULED", state_name="AwaitingRetry",
                   labels=["gpu", "eu"])
    FlowRunFactory(flow_version=version, name="plain", state_type="SCHEDULED", labels=[])
    FlowRunFactory(flow_version=version, name="done", state_type="COMPLETED", labels=["gpu", "eu"])

    reasons = {e["node"]["name"]: e["node"]["noLiveAgentReason"] for e in _page(world_a)["edges"]}
    assert reasons["retrying"] == reasons["plain"] == (
        "No healthy agent is connected to this workspace: start one with `flowdeck agent start`.")
    assert reasons["done"] is None  # not waiting for an agent

    _healthy(world_a, ["gpu"])  # covers the unlabelled run, not the one that also needs "eu"
    reasons = {e["node"]["name"]: e["node"]["noLiveAgentReason"] for e in _page(world_a)["edges"]}
    assert reasons["plain"] is None
    assert reasons["retrying"] == ("No healthy agent carries all of this run's labels (eu, gpu): "
                                   "start one with `flowdeck agent start --label eu --label gpu`.")
    waiting = _page(world_a, filter={"withoutLiveAgent": True})
    assert [e["node"]["name"] for e in waiting["edges"]] == ["retrying"]
    assert waiting["totalCount"] == 1

    _healthy(world_a, ["eu", "gpu", "more"])
    assert _page(world_a, filter={"withoutLiveAgent": True})["edges"] == []
    assert {e["node"]["noLiveAgentReason"] for e in _page(world_a)["edges"]} == {None}


def test_another_workspaces_agents_never_make_a_run_claimable(world_a, world_b):
    FlowRunFactory(flow_version=_version(world_a), name="needs-gpu", state_type="SCHEDULED", labels=["gpu"])
    _healthy(world_b, ["gpu"])  # healthy, covering, but not the run's workspace's

    page = _page(world_a, filter={"withoutLiveAgent": True})
    assert [e["node"]["name"] for e in page["edges"]] == ["needs-gpu"]
    assert page["edges"][0]["node"]["noLiveAgentReason"].startswith("No healthy agent is connected")
    # ...and the other workspace's viewer sees none of it.
    assert _page(world_b, filter={"withoutLiveAgent": True})["totalCount"] == 0


def test_the_reason_costs_one_agent_read_per_page(world_a):
    version = _version(world_a)
    for i in range(20):
        FlowRunFactory(flow_version=version, name=f"r{i}", state_type="SCHEDULED", labels=[f"l{i % 3}"])
    _healthy(world_a, ["l0"])
    client = login(world_a.users[Role.VIEWER])
    gql(client, PAGE, {"ws": world_a.workspace.slug})  # warm the session and caches
    with CaptureQueriesContext(connection) as queries:
        body = gql(client, PAGE, {"ws": world_a.workspace.slug, "first": 20})
    reasons = [e["node"]["noLiveAgentReason"] for e in ok(body)["orchestration"]["flowRuns"]["edges"]]
    assert reasons.count(None) == 7  # l0 runs: 0, 3, …, 18
    agent_reads = [q for q in queries.captured_queries if "orchestration_agent" in q["sql"]
                   and "orchestration_flowrun" not in q["sql"]]
    assert len(agent_reads) == 1, [q["sql"] for q in agent_reads]
