"""The run filter through the real adapters: the REST run list and the GraphQL ``flowRuns`` query
answer every filter field the same way. This module runs on the suite's PostgreSQL and, through
``test_run_filters_sqlite.py``, on the embedded default's SQLite (which has no JSON containment:
labels must still match exactly, all of them)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from orchestration.models import Flow, FlowRun
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.factories import (
    AgentFactory,
    FlowRunFactory,
    FlowVersionFactory,
    ProjectFactory,
    TaskRunFactory,
)

pytestmark = pytest.mark.django_db

BASE = timezone.now().replace(microsecond=0)

RUNS = """query($ws: String!, $filter: FlowRunFilter) { orchestration(workspace: $ws) {
  flowRuns(filter: $filter, first: 100) { edges { node { name } } } } }"""


def five_runs(world) -> dict[str, Flow]:  # type: ignore[no-untyped-def]
    """Five runs of two flows ("nightly": r1-r3, "hourly": r4-r5) with distinct states, labels
    (r5's differ from "etl" only in case or by a suffix), start times around BASE, origins and task
    tags; a healthy agent covers r1's labels ("etl", "gpu") but not r4's, and the one agent that
    would cover r4 is offline."""
    project = ProjectFactory(workspace=world.workspace)
    nightly = FlowVersionFactory(flow__project=project, flow__workspace=world.workspace, flow__name="nightly")
    hourly = FlowVersionFactory(flow__project=project, flow__workspace=world.workspace, flow__name="hourly")
    rows = [
        ("r1", nightly, "SCHEDULED", "Scheduled", ["etl", "gpu"], -2, FlowRun.CreatedBy.API),
        ("r2", nightly, "FAILED", "Failed", ["etl"], -1, FlowRun.CreatedBy.USER),
        ("r3", nightly, "RUNNING", "Running", ["gpu"], 0, FlowRun.CreatedBy.SCHEDULE),
        ("r4", hourly, "SCHEDULED", "Late", ["etl", "gpu", "big"], 1, FlowRun.CreatedBy.API),
        ("r5", hourly, "COMPLETED", "Completed", ["ETL", "etl-old", 'say "etl"'], 2, FlowRun.CreatedBy.USER),
    ]
    tags = {"r1": [["db", "heavy"], []], "r2": [["db"]], "r3": [["HEAVY"], ["db-old"]]}
    for name, version, state_type, state_name, labels, hours, created_by in rows:
        run = FlowRunFactory(flow_version=version, name=name, state_type=state_type, state_name=state_name,
                             labels=labels, scheduled_start=BASE + timedelta(hours=hours), created_by_kind=created_by)
        for task_tags in tags.get(name, []):
            TaskRunFactory(flow_run=run, tags=task_tags)
    now = timezone.now()
    AgentFactory(workspace=world.workspace, labels=["gpu", "etl", "spare"], last_heartbeat_at=now, last_poll_at=now)
    AgentFactory(workspace=world.workspace, labels=["etl", "gpu", "big"], last_heartbeat_at=now - timedelta(hours=1),
                 last_poll_at=now - timedelta(hours=1))
    return {"nightly": nightly.flow, "hourly": hourly.flow}


@pytest.fixture
def flows(world_a) -> dict[str, Flow]:  # type: ignore[no-untyped-def]
    return five_runs(world_a)


def _at(hours: int) -> str:
    return (BASE + timedelta(hours=hours)).isoformat()


# (REST query parameters, GraphQL filter, expected run names); "{nightly}" is the flow's id.
CASES = {
    "flow": ({"flow": "{nightly}"}, {"flowId": "{nightly}"}, ["r1", "r2", "r3"]),
    "state_type": ({"state_type": "FAILED,RUNNING"}, {"stateTypes": ["FAILED", "RUNNING"]}, ["r2", "r3"]),
    "state_name": ({"state_name": "Late"}, {"stateName": "Late"}, ["r4"]),
    "one_label": ({"labels": "etl"}, {"labels": ["etl"]}, ["r1", "r2", "r4"]),
    "two_labels": ({"labels": "etl,gpu"}, {"labels": ["etl", "gpu"]}, ["r1", "r4"]),
    "three_labels": ({"labels": "gpu,big,etl"}, {"labels": ["gpu", "big", "etl"]}, ["r4"]),
    "label_case": ({"labels": "ETL"}, {"labels": ["ETL"]}, ["r5"]),
    "label_part": ({"labels": "et"}, {"labels": ["et"]}, []),
    "scheduled_before": ({"scheduled_before": _at(0)}, {"scheduledBefore": _at(0)}, ["r1", "r2"]),
    "scheduled_after": ({"scheduled_after": _at(0)}, {"scheduledAfter": _at(0)}, ["r3", "r4", "r5"]),
    "created_by": ({"created_by": "user"}, {"createdBy": "user"}, ["r2", "r5"]),
    "one_tag": ({"tags": "db"}, {"tags": ["db"]}, ["r1", "r2"]),
    "two_tags": ({"tags": "db,heavy"}, {"tags": ["db", "heavy"]}, ["r1"]),
    "tag_case": ({"tags": "heavy"}, {"tags": ["heavy"]}, ["r1"]),
    "tag_part": ({"tags": "db-"}, {"tags": ["db-"]}, []),
    "without_live_agent": ({"without_live_agent": "true"}, {"withoutLiveAgent": True}, ["r4"]),
    "combined": ({"flow": "{hourly}", "labels": "etl", "state_type": "SCHEDULED"},
                 {"flowId": "{hourly}", "labels": ["etl"], "stateTypes": ["SCHEDULED"]}, ["r4"]),
}


def _ids(value, flows):  # type: ignore[no-untyped-def]
    if isinstance(value, str):
        return value.format(**{name: flow.pk for name, flow in flows.items()})
    return [_ids(v, flows) for v in value] if isinstance(value, list) else value


# One test per adapter walks every case (one world, one set of runs): the SQLite run stays fast.


def test_rest_run_list_filters(world_a, flows):
    client = world_a.client(Role.VIEWER)
    wrong = {}
    for case, (params, _graphql, expected) in CASES.items():
        response = client.get(world_a.url("flow-runs/"), {k: _ids(v, flows) for k, v in params.items()})
        assert response.status_code == 200, (case, response.content)
        got = sorted(run["name"] for run in response.json()["results"])
        if got != expected:
            wrong[case] = (got, expected)
    assert wrong == {}


def test_graphql_flow_runs_filters(world_a, flows):
    client = login(world_a.users[Role.VIEWER])
    wrong = {}
    for case, (_rest, given, expected) in CASES.items():
        variables = {"ws": world_a.workspace.slug, "filter": {k: _ids(v, flows) for k, v in given.items()}}
        body = gql(client, RUNS, variables)
        got = sorted(edge["node"]["name"] for edge in ok(body)["orchestration"]["flowRuns"]["edges"])
        if got != expected:
            wrong[case] = (got, expected)
    assert wrong == {}
