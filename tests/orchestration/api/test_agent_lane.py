"""orchestration/api/agent_lane.py: the agents' plain POSTs skip DRF's dispatch and get the DRF
views' answers exactly (status, headers, body); everything else, refusals included, is answered by
the DRF view, and a refused request leaves nothing of the lane's attempt behind.

Each request is sent twice on the same database state, once with the lane and once without
(``FLOWDECK_AGENT_LANE``), each inside a savepoint rolled back afterwards; the answers are compared
with only the database clock's instants masked (the two sends are a moment apart)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from rest_framework.views import APIView

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import FlowRun, LogEntry
from tests.conftest import WorkspaceWorld, build_world
from tests.orchestration.api.conftest import METADATA, register

pytestmark = pytest.mark.django_db

_INSTANT = re.compile(rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"')
VOLATILE = {"date", "x-request-id"}


class Agent:
    """A workspace with a registered flow, a developer key that creates runs and an agent (its key
    already verified once, so in the key cache, as an agent's key is after its first request)."""

    def __init__(self, world: WorkspaceWorld) -> None:
        self.world = world
        self.developer = world.client(Role.DEVELOPER, key=True)
        self.flow = register(self.developer, world, copy.deepcopy(METADATA)).json()["flow"]
        self.client = world.client(Role.AGENT)
        response = self.client.post(world.url("agents/"), {"name": "a1", "type": "process", "labels": ["prod"]},
                                    format="json")
        assert response.status_code == 201, response.content
        self.agent = response.json()

    def running_run(self) -> dict[str, Any]:
        created = self.developer.post(self.world.url("flow-runs/"), {"flow": self.flow["id"]}, format="json")
        assert created.status_code == 201, created.content
        claimed = self.post(f"agents/{self.agent['id']}/claim/", {"limit": 1})
        [run] = claimed.json()["results"]
        assert self.post(f"flow-runs/{run['id']}/set-state/",
                         {"state": {"type": "RUNNING"}, "attempt": run["attempt"]}).status_code == 200
        return dict(run)

    def post(self, path: str, body: Any, key: str | None = None, client: Any = None, **extra: Any) -> Any:
        return (client or self.client).post(self.world.url(path), body, format="json",
                                            HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()), **extra)


@pytest.fixture
def agent() -> Agent:
    return Agent(build_world("acme"))


def _answer(response: Any, mask: Any = None) -> tuple[int, dict[str, str], bytes]:
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in VOLATILE}
    content = _INSTANT.sub(b'"<instant>"', response.content)
    return response.status_code, headers, mask(content) if mask else content


class Dispatches:
    """How many requests DRF's dispatch served."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = APIView.dispatch

        def counted(view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(view, request, *args, **kwargs)

        monkeypatch.setattr(APIView, "dispatch", counted)


def both_ways(send: Any, dispatches: Dispatches, mask: Any = None) -> tuple[Any, Any]:
    """``send()`` with the lane and without, on the same state; both answers, and the same (after
    ``mask``: what a new row gets anew each time, its id and generated name)."""
    answers = []
    for lane in (True, False):
        savepoint = transaction.savepoint()
        before = dispatches.count
        with override_settings(FLOWDECK_AGENT_LANE=lane):
            response = send()
        answers.append((response, dispatches.count - before))
        transaction.savepoint_rollback(savepoint)
    (with_lane, lane_dispatches), (without, drf_dispatches) = answers
    assert _answer(with_lane, mask) == _answer(without, mask)
    assert drf_dispatches == 1
    return with_lane, lane_dispatches


def _bodies(run: dict[str, Any], agent: Agent) -> list[tuple[str, dict[str, Any]]]:
    attempt = run["attempt"]
    line = {"sequence": 1, "level": "INFO", "timestamp": "2026-12-05T10:00:00Z", "message": "hello"}
    return [
        (f"flow-runs/{run['id']}/heartbeat/", {"attempt": attempt, "lease_seconds": 90}),
        (f"flow-runs/{run['id']}/task-runs/", {"attempt": attempt, "reports": [
            {"task_key": "extract", "state": {"type": "RUNNING"}},
            {"task_key": "load", "map_index": 2, "state": {"type": "COMPLETED", "result_ref": "s3://x"}}]}),
        (f"flow-runs/{run['id']}/logs/", {"lines": [line, {**line, "sequence": 2, "task_key": "extract"}]}),
        (f"flow-runs/{run['id']}/report/", {"attempt": attempt, "heartbeat": {}, "logs": [line],
                                             "task_runs": [{"task_key": "extract", "state": {"type": "COMPLETED"}}],
                                             "state": {"type": "COMPLETED"}}),
        (f"flow-runs/{run['id']}/set-state/", {"state": {"type": "COMPLETED"}, "attempt": attempt}),
        # a stale attempt: ABORT, answered 409 (a reply, not an error)
        (f"flow-runs/{run['id']}/set-state/", {"state": {"type": "RUNNING"}, "attempt": attempt + 1}),
        (f"agents/{agent.agent['id']}/heartbeat/", {"polled": True}),
        (f"agents/{agent.agent['id']}/claim/", {"limit": 2}),
    ]


def test_creating_a_run_takes_the_lane_too(agent, monkeypatch):
    dispatches = Dispatches(monkeypatch)
    body = {"flow": agent.flow["id"], "idempotency_key": "nightly-2026-12-05", "labels": ["prod"]}

    def new_run(content: bytes) -> bytes:
        return re.sub(rb'^\{"id":"[0-9a-f-]+"(.*)"name":"nightly-[0-9a-f]+"', rb'{"id":"<id>"\1"name":"<name>"',
                      content)

    created, lane_dispatches = both_ways(lambda: agent.post("flow-runs/", body, client=agent.developer), dispatches,
                                         new_run)
    assert created.status_code == 201 and lane_dispatches == 0
    first = agent.post("flow-runs/", body, client=agent.developer)
    replayed, lane_dispatches = both_ways(lambda: agent.post("flow-runs/", body, client=agent.developer), dispatches)
    assert replayed.status_code == 200 and replayed.json()["id"] == first.json()["id"] and lane_dispatches == 0
    listed, lane_dispatches = both_ways(lambda: agent.developer.get(agent.world.url("flow-runs/")), dispatches)
    assert listed.status_code == 200 and lane_dispatches == 1  # a GET: the DRF view


def test_the_lane_answers_the_plain_agent_requests_as_the_drf_views(agent, monkeypatch):
    dispatches = Dispatches(monkeypatch)
    run = agent.running_run()
    agent.developer.post(agent.world.url("flow-runs/"), {"flow": agent.flow["id"]}, format="json")  # to claim
    statuses = []
    for path, body in _bodies(run, agent):
        response, lane_dispatches = both_ways(lambda p=path, b=body: agent.post(p, b), dispatches)
        assert lane_dispatches == 0, (path, response.content)  # served by the lane
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 200, 409, 200, 200]


def test_a_replay_gets_the_stored_answer_either_way(agent, monkeypatch):
    dispatches = Dispatches(monkeypatch)
    run = agent.running_run()
    key = str(uuid.uuid4())
    body = {"attempt": run["attempt"], "lease_seconds": 90}
    first = agent.post(f"flow-runs/{run['id']}/heartbeat/", body, key)
    assert first.status_code == 200
    replay, lane_dispatches = both_ways(lambda: agent.post(f"flow-runs/{run['id']}/heartbeat/", body, key), dispatches)
    assert lane_dispatches == 0 and replay.json() == first.json()
    reused, lane_dispatches = both_ways(
        lambda: agent.post(f"flow-runs/{run['id']}/heartbeat/", {**body, "lease_seconds": 60}, key), dispatches)
    assert reused.status_code == 422 and lane_dispatches == 1  # a refusal: the DRF view's answer


def test_refusals_and_requests_not_plain_are_the_drf_views_answers(agent, monkeypatch):
    dispatches = Dispatches(monkeypatch)
    run = agent.running_run()
    other = build_world("globex")
    elsewhere = other.client(Role.AGENT)
    base = f"flow-runs/{run['id']}"
    cases = [
        (lambda: agent.post(base + "/heartbeat/", {"attempt": run["attempt"], "lease_seconds": 1}), 400),
        (lambda: agent.post(base + "/heartbeat/", {"attempt": run["attempt"] + 1}), 409),  # a stale attempt
        (lambda: agent.post(base + "/heartbeat/", [1, 2]), 400),  # not an object
        (lambda: agent.post(f"flow-runs/{uuid.uuid4()}/heartbeat/", {"attempt": 1}), 404),
        (lambda: agent.post(base + "/set-state/", {"state": {"type": "NOPE"}, "attempt": 1}), 400),
        (lambda: agent.post(base + "/logs/", {"lines": [{"sequence": 1, "level": "INFO", "message": "x",
                                                         "timestamp": "not a time"}]}), 400),
        (lambda: agent.post(f"agents/{uuid.uuid4()}/claim/", {"limit": 1}), 404),
        (lambda: agent.post(base + "/report/", {"attempt": run["attempt"]}), 400),  # no part
        (lambda: agent.post(base + "/heartbeat/", {"attempt": run["attempt"]}, HTTP_ACCEPT="text/html"), 406),
        # JSON in UTF-16: DRF's parser reads UTF-8 only (Python's json would take it)
        (lambda: agent.client.post(agent.world.url(base + "/heartbeat/"),
                                   json.dumps({"attempt": run["attempt"]}).encode("utf-16"),
                                   content_type="application/json"), 400),
        # not refusals, but not the plain case: a cookie (a browser's), a query string
        (lambda: agent.post(base + "/heartbeat/", {"attempt": run["attempt"]}, HTTP_COOKIE="flowdeck_session=x"),
         200),
        (lambda: agent.post(base + "/heartbeat/?verbose=1", {"attempt": run["attempt"]}), 200),
        # a role without the action: a developer's key may create runs, not claim them
        (lambda: agent.post(f"agents/{agent.agent['id']}/claim/", {"limit": 1}, client=agent.developer), 403),
        # another workspace's key on this workspace's run: 404, as for every key on another's URL
        (lambda: agent.post(base + "/heartbeat/", {"attempt": run["attempt"]}, client=elsewhere), 404),
    ]
    for send, status in cases:
        response, lane_dispatches = both_ways(send, dispatches)
        assert response.status_code == status, response.content
        assert lane_dispatches == 1  # the DRF view answered


def test_a_report_refused_halfway_leaves_nothing_of_the_lanes_attempt(agent, monkeypatch):
    run = agent.running_run()
    dispatches = Dispatches(monkeypatch)
    with rls_bypass():
        lease = FlowRun.objects.unscoped().get(pk=run["id"]).lease_expires_at
    # The lane applies the heartbeat part (a longer lease), then the log part refuses a line's task
    # run: the lane's transaction rolls back and the DRF view answers, from the start.
    line = {"sequence": 1, "level": "INFO", "timestamp": "2026-12-05T10:00:00Z", "message": "hello",
            "task_run_id": str(uuid.uuid4())}
    response = agent.post(f"flow-runs/{run['id']}/report/", {
        "attempt": run["attempt"], "heartbeat": {"lease_seconds": 3600}, "logs": [line]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_task_run"
    assert dispatches.count == 1
    with rls_bypass():
        assert FlowRun.objects.unscoped().get(pk=run["id"]).lease_expires_at == lease
        assert not LogEntry.objects.unscoped().filter(flow_run_id=run["id"]).exists()


def test_the_api_schema_still_documents_the_lanes_endpoints():
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    for suffix in ("set-state/", "heartbeat/", "task-runs/", "logs/", "report/", "claim/"):
        [path] = [p for p in paths if p.endswith(suffix) and "agents/{agent_id}/heartbeat" not in p]
        assert "post" in paths[path], path
