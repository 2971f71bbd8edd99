"""Flow runs, schedules and concurrency limits over REST: quick runs (idempotent), bulk create and
bulk actions, filters with a cursor, manual actions, body limits (A1), bad input, query counts."""

from __future__ import annotations

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import FlowRun, FlowVersion, Schedule, StateType
from tests.orchestration.api.conftest import assert_error, register
from tests.orchestration.factories import FlowRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def flow(world_a, metadata):
    return register(world_a.client(Role.DEVELOPER), world_a, metadata).json()["flow"]


def _run(world, flow, **body):
    return world.client(Role.DEVELOPER).post(world.url("flow-runs/"), {"flow": flow["id"], **body}, format="json")


# --- quick run ----------------------------------------------------------------------------------


def test_quick_run_is_created_and_a_retried_create_returns_the_same_run(world_a, flow):
    first = _run(world_a, flow, parameters={"limit": 5}, labels=["prod"], idempotency_key="nightly-2026-01-01")
    assert first.status_code == 201, first.content
    assert first.json()["state_type"] == "SCHEDULED" and first.json()["parameters"]["limit"] == 5
    assert first.json()["created_by_kind"] == "user"
    replay = _run(world_a, flow, parameters={"limit": 5}, labels=["prod"], idempotency_key="nightly-2026-01-01")
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    with rls_bypass():
        assert FlowRun.all_objects.filter(workspace=world_a.workspace).count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"parameters": {"limit": "ten"}},  # wrong type
        {"parameters": {"nope": 1}},  # unknown parameter
        {"parameters": [1]},
        {"labels": "prod"},
        {"scheduled_start": "yesterday"},
        {"state_type": "COMPLETED"},  # a client never sets state
    ],
)
def test_bad_quick_run_bodies_are_400(world_a, flow, body):
    assert_error(_run(world_a, flow, **body), 400)


@pytest.mark.parametrize("flow_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", None])
def test_quick_run_of_an_unknown_flow_is_400(world_a, flow_id):
    response = world_a.client(Role.DEVELOPER).post(world_a.url("flow-runs/"), {"flow": flow_id}, format="json")
    assert "flow" in assert_error(response, 400)["details"]


def test_parameters_over_512_kb_are_refused_with_a_clear_message(world_a, flow):
    error = assert_error(_run(world_a, flow, parameters={"day": "x" * (513 * 1024)}), 400)
    assert "512 KB" in error["message"]


def test_a_body_over_5_mib_is_413(world_a, flow):
    response = _run(world_a, flow, parameters={"day": "x" * (6 * 1024 * 1024)})
    assert response.status_code == 413


def test_viewer_and_agent_cannot_create_runs(world_a, flow):
    for role in (Role.VIEWER, Role.AGENT):
        response = world_a.client(role, key=True).post(world_a.url("flow-runs/"), {"flow": flow["id"]}, format="json")
        assert_error(response, 403, "permission_denied")


# --- bulk ---------------------------------------------------------------------------------------


def test_bulk_create_and_bulk_cancel(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    created = client.post(world_a.url("flow-runs/bulk/"),
                          {"flow": flow["id"], "runs": [{"parameters": {"limit": i}} for i in range(3)]}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["count"] == 3
    cancelled = client.post(world_a.url("flow-runs/bulk-action/"),
                            {"action": "cancel", "filters": {"flow": flow["id"], "state_type": ["SCHEDULED"]}},
                            format="json")
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["count"] == 3
    with rls_bypass():
        assert set(FlowRun.all_objects.filter(flow_id=flow["id"]).values_list("state_type", flat=True)) == {"CANCELLED"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("flow-runs/bulk/", {"flow": None, "runs": []}),
        ("flow-runs/bulk/", {"runs": [{"parameters": {}}]}),
        ("flow-runs/bulk/", {"flow": "{flow}", "runs": [{"bogus": 1}]}),
        ("flow-runs/bulk-action/", {"action": "explode", "filters": {}}),
        ("flow-runs/bulk-action/", {"action": "mark", "filters": {}}),
        ("flow-runs/bulk-action/", {"action": "cancel", "filters": {"state_type": ["NOPE"]}}),
        ("flow-runs/bulk-action/", {"action": "cancel", "filters": {"colour": "red"}}),
    ],
)
def test_bad_bulk_bodies_are_400(world_a, flow, path, body):
    if body.get("flow") == "{flow}":
        body = {**body, "flow": flow["id"]}
    assert_error(world_a.client(Role.DEVELOPER).post(world_a.url(path), body, format="json"), 400)


def test_too_many_runs_in_one_bulk_call_is_400(world_a, flow):
    response = world_a.client(Role.DEVELOPER).post(world_a.url("flow-runs/bulk/"),
                                                   {"flow": flow["id"], "runs": [{}] * 5001}, format="json")
    assert_error(response, 400)


# --- list, filters, cursor ----------------------------------------------------------------------


def test_flow_run_list_filters(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    a = _run(world_a, flow, labels=["prod", "eu"]).json()
    b = _run(world_a, flow, labels=["dev"]).json()
    client.post(world_a.url(f"flow-runs/{b['id']}/mark/"), {"state_type": "FAILED"}, format="json")

    def ids(**params):
        response = client.get(world_a.url("flow-runs/"), params)
        assert response.status_code == 200, response.content
        return {r["id"] for r in response.json()["results"]}

    assert ids() == {a["id"], b["id"]}
    assert ids(state_type="SCHEDULED") == {a["id"]}
    assert ids(state_type="SCHEDULED,FAILED") == {a["id"], b["id"]}
    assert ids(state_name="Failed") == {b["id"]}
    assert ids(labels="prod") == {a["id"]}
    assert ids(flow=flow["id"], created_by="user") == {a["id"], b["id"]}
    assert ids(created_by="schedule") == set()
    assert ids(scheduled_after="2100-01-01T00:00:00Z") == set()
    assert ids(scheduled_before="2100-01-01T00:00:00Z") == {a["id"], b["id"]}


@pytest.mark.parametrize(
    "params", [{"state_type": "DONE"}, {"flow": "x"}, {"scheduled_before": "soon"}, {"created_by": "robot"}]
)
def test_bad_flow_run_filters_are_400(world_a, params):
    assert_error(world_a.client(Role.VIEWER).get(world_a.url("flow-runs/"), params), 400)


def test_flow_run_list_pages_with_a_cursor(world_a, flow_a):
    with rls_bypass():
        for _ in range(5):
            FlowRunFactory(flow_version=FlowVersion.all_objects.get(flow=flow_a))
    client = world_a.client(Role.VIEWER)
    first = client.get(world_a.url("flow-runs/"), {"limit": 3}).json()
    assert len(first["results"]) == 3 and first["next"]
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 2
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}


def test_flow_run_list_query_count_is_constant(world_a, flow_a, django_assert_max_num_queries):
    with rls_bypass():
        version = FlowVersion.all_objects.get(flow=flow_a)
        FlowRunFactory(flow_version=version)
    client = world_a.client(Role.VIEWER)
    with django_assert_max_num_queries(12) as one:
        client.get(world_a.url("flow-runs/"))
    with rls_bypass():
        for _ in range(19):
            FlowRunFactory(flow_version=version)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(client.get(world_a.url("flow-runs/")).json()["results"]) == 20


def test_flow_run_detail_query_count_does_not_grow_with_task_runs(world_a, flow_a, django_assert_max_num_queries):
    from tests.orchestration.factories import TaskRunFactory

    with rls_bypass():
        run = FlowRunFactory(flow_version=FlowVersion.all_objects.get(flow=flow_a))
        TaskRunFactory(flow_run=run)
    client = world_a.client(Role.VIEWER)
    with django_assert_max_num_queries(17) as one:
        client.get(world_a.url(f"flow-runs/{run.pk}/"))
    with rls_bypass():
        for _ in range(19):
            TaskRunFactory(flow_run=run)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(client.get(world_a.url(f"flow-runs/{run.pk}/")).json()["task_runs"]) == 20


# --- manual actions -----------------------------------------------------------------------------


def test_cancel_mark_restart_and_delete(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    run = _run(world_a, flow).json()
    url = world_a.url(f"flow-runs/{run['id']}/")
    # a run no agent holds is cancelled at once
    assert client.post(url + "cancel/", {}, format="json").json()["state_type"] == "CANCELLED"
    restarted = client.post(url + "restart/", {}, format="json")
    assert restarted.status_code == 200, restarted.content
    assert restarted.json()["state_type"] == "SCHEDULED"
    marked = client.post(url + "mark/", {"state_type": "FAILED", "message": "by hand"}, format="json")
    assert marked.json()["state_type"] == "FAILED"
    assert client.delete(url).status_code == 204
    with rls_bypass():
        assert not FlowRun.all_objects.filter(pk=run["id"]).exists()


def test_manual_action_errors(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    run = _run(world_a, flow).json()
    url = world_a.url(f"flow-runs/{run['id']}/")
    assert_error(client.post(url + "restart/", {}, format="json"), 409)  # only failed/crashed/cancelled runs
    assert_error(client.post(url + "mark/", {"state_type": "DONE"}, format="json"), 400)
    assert_error(client.post(url + "cancel/", {"force": True}, format="json"), 400)
    viewer = world_a.client(Role.VIEWER)
    assert_error(viewer.post(url + "cancel/", {}, format="json"), 403)
    assert_error(viewer.delete(url), 403)


# --- schedules ----------------------------------------------------------------------------------


def test_schedule_create_list_update_pause_delete(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    base = world_a.url(f"flows/{flow['id']}/schedules/")
    registered = {s["id"] for s in client.get(base).json()["results"]}  # from the metadata's schedule
    created = client.post(base, {"kind": "interval", "interval_seconds": 3600, "timezone": "Europe/Paris",
                                 "parameters": {"limit": 3}}, format="json")
    assert created.status_code == 201, created.content
    schedule_id = created.json()["id"]
    assert {s["id"] for s in client.get(base).json()["results"]} == registered | {schedule_id}
    updated = client.patch(base + f"{schedule_id}/", {"interval_seconds": 600}, format="json")
    assert updated.status_code == 200 and updated.json()["interval_seconds"] == 600
    paused = client.post(base + f"{schedule_id}/pause/", {"active": False}, format="json")
    assert paused.status_code == 200 and paused.json()["is_active"] is False
    assert client.delete(base + f"{schedule_id}/").status_code == 204
    with rls_bypass():
        assert not Schedule.all_objects.filter(pk=schedule_id).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "weekly"},
        {"kind": "cron", "cron": "not a cron"},
        {"kind": "interval", "interval_seconds": 0},
        {"kind": "interval", "interval_seconds": 60, "timezone": "Mars/Olympus"},
        {"kind": "interval", "interval_seconds": 60, "parameters": {"nope": 1}},
        {"kind": "interval", "interval_seconds": 60, "flow": "other"},
    ],
)
def test_bad_schedules_are_400(world_a, flow, body):
    response = world_a.client(Role.DEVELOPER).post(world_a.url(f"flows/{flow['id']}/schedules/"), body, format="json")
    assert_error(response, 400)


def test_viewer_cannot_create_schedules(world_a, flow):
    response = world_a.client(Role.VIEWER).post(world_a.url(f"flows/{flow['id']}/schedules/"),
                                                {"kind": "interval", "interval_seconds": 60}, format="json")
    assert_error(response, 403)


# --- concurrency limits -------------------------------------------------------------------------


def test_concurrency_limits_set_list_delete(world_a):
    client = world_a.client(Role.DEVELOPER)
    url = world_a.url("concurrency-limits/")
    assert client.put(url, {"tag": "db", "limit": 2}, format="json").json()["limit"] == 2
    assert client.put(url, {"tag": "db", "limit": 3}, format="json").json()["limit"] == 3
    assert [(r["tag"], r["limit"]) for r in client.get(url).json()["results"]] == [("db", 3)]
    assert client.delete(url + "?tag=db").status_code == 204
    assert_error(client.delete(url + "?tag=db"), 404)
    assert_error(client.delete(url), 400)
    assert_error(client.put(url, {"tag": "db", "limit": -1}, format="json"), 400)
    assert_error(client.put(url, {"tag": "db"}, format="json"), 400)
    assert_error(world_a.client(Role.VIEWER).put(url, {"tag": "db", "limit": 1}, format="json"), 403)


def test_state_types_are_the_engine_types():
    assert "RUNNING" in StateType.values


def test_nul_characters_in_parameters_are_a_clear_400(world_a, flow):
    error = assert_error(_run(world_a, flow, parameters={"day": "mon\u0000day"}), 400)
    assert "NUL" in error["message"]


def test_run_detail_tells_whether_a_live_agent_covers_its_labels(world_a, flow):
    run = _run(world_a, flow, parameters={"limit": 1}, labels=["gpu"]).json()
    reader = world_a.client(Role.VIEWER)
    assert reader.get(world_a.url(f"flow-runs/{run['id']}/")).json()["has_live_agent"] is False
    agent = world_a.client(Role.AGENT)
    registered = agent.post(world_a.url("agents/"), {"name": "gpu-box", "type": "process", "labels": ["gpu", "prod"]},
                            format="json")
    assert registered.status_code in (200, 201), registered.content
    agent.post(world_a.url(f"agents/{registered.json()['id']}/heartbeat/"), {"polled": True}, format="json")
    assert reader.get(world_a.url(f"flow-runs/{run['id']}/")).json()["has_live_agent"] is True
