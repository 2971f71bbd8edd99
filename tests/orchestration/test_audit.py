"""Orchestration writes that change configuration or act on runs in bulk leave an audit row.

Every write here goes through the REST API as a member of the workspace, and every row is read back
the way an Admin reads the log: the REST ``audit-log/`` list and the GraphQL ``auditLog`` field,
which must agree. A refused write leaves no row, a write that rolls back leaves none either, and
another workspace's Admin never sees a row."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from accounts.authz import principal_for_user
from accounts.models import Role
from accounts.selectors import AUDIT_LOG_AREAS
from core.tenancy import rls_bypass, workspace_scope
from orchestration import events
from orchestration.models import ConcurrencyLimit, Schedule
from orchestration.services import concurrency, schedules
from orchestration.services.scheduler import schedule_due_runs
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.api.conftest import METADATA, assert_error, register

pytestmark = pytest.mark.django_db

AUDIT_LOG = """
query($slug: String!, $area: String) {
  workspace(slug: $slug) {
    auditLog(first: 100, area: $area) { edges { node { id actor action targetType targetLabel data } } }
  }
}
"""


# --- reading the log ------------------------------------------------------------------------------


def rest_rows(world: Any, *, role: str = Role.ADMIN, area: str | None = None) -> list[dict[str, Any]]:
    """The whole audit log over REST, newest first, as ``role`` reads it."""
    response = world.client(role).get(world.url("audit-log/"), {"limit": 200, **({"area": area} if area else {})})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def graphql_rows(world: Any, *, role: str = Role.ADMIN, area: str | None = None) -> list[dict[str, Any]]:
    body = ok(gql(login(world.users[role]), AUDIT_LOG, {"slug": world.workspace.slug, "area": area}))
    return [edge["node"] for edge in body["workspace"]["auditLog"]["edges"]]


def the_row(world: Any, action: str, target_id: Any = None) -> dict[str, Any]:
    """The one row of ``action`` (on ``target_id``), checked to read the same over GraphQL."""
    rows = [r for r in rest_rows(world) if r["action"] == action
            and (target_id is None or r["target_id"] == str(target_id))]
    assert len(rows) == 1, f"expected one {action} row, found {rows}"
    row = rows[0]
    nodes = [n for n in graphql_rows(world) if n["id"] == row["id"]]
    assert len(nodes) == 1, f"the {action} row is missing from GraphQL auditLog"
    node = nodes[0]
    assert (node["action"], node["actor"], node["targetType"], node["targetLabel"], node["data"]) == (
        row["action"], row["actor"], row["target_type"], row["target_label"], row["data"]
    )
    return row


def actions(world: Any) -> list[str]:
    return [r["action"] for r in rest_rows(world)]


def assert_row(row: dict[str, Any], *, actor: str, target_type: str, target_id: Any, target_label: str | None = None,
               data: dict[str, Any] | None = None) -> None:
    assert row["actor"] == actor
    assert (row["target_type"], row["target_id"]) == (target_type, str(target_id))
    if target_label is not None:
        assert row["target_label"] == target_label
    if data is not None:
        assert row["data"] == data


def email(world: Any, role: str) -> str:
    return world.users[role].email


# --- fixtures -------------------------------------------------------------------------------------


def _metadata(**changes: Any) -> dict[str, Any]:
    # No registered schedule: the tests below make their own, through the schedules API.
    metadata = {k: v for k, v in copy.deepcopy(METADATA).items() if k != "schedule"}
    metadata.update(changes)
    return metadata


@pytest.fixture
def flow(world_a) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """'nightly' in project 'etl', registered by the Developer: the REST body of the flow and its version."""
    response = register(world_a.client(Role.DEVELOPER), world_a, _metadata())
    assert response.status_code == 201, response.content
    return response.json()


# --- concurrency limits ---------------------------------------------------------------------------


def _put_limit(world: Any, role: str, tag: str, limit: Any) -> Any:
    return world.client(role).put(world.url("concurrency-limits/"), {"tag": tag, "limit": limit}, format="json")


def test_setting_changing_and_deleting_a_tag_limit_is_audited(world_a):
    # when: a Developer sets a new limit, raises it, sets it again unchanged, then removes it
    response = _put_limit(world_a, Role.DEVELOPER, "db", 3)
    assert response.status_code == 200, response.content
    row_id = response.json()["id"]
    created = the_row(world_a, "concurrency_limit.set")
    assert _put_limit(world_a, Role.DEVELOPER, "db", 5).status_code == 200
    assert _put_limit(world_a, Role.DEVELOPER, "db", 5).status_code == 200
    deleted = world_a.client(Role.DEVELOPER).delete(world_a.url("concurrency-limits/") + "?tag=db")
    assert deleted.status_code == 204, deleted.content
    # then: one row per change (the unchanged PUT changes nothing), each saying what it replaced
    sets = [r for r in rest_rows(world_a) if r["action"] == "concurrency_limit.set"]
    assert [r["data"] for r in sets] == [
        {"tag": "db", "limit": 5, "previous": 3},
        {"tag": "db", "limit": 3, "previous": None},
    ]
    actor = email(world_a, Role.DEVELOPER)
    assert_row(created, actor=actor, target_type="concurrencylimit", target_id=row_id, target_label="db")
    assert_row(the_row(world_a, "concurrency_limit.deleted"), actor=actor, target_type="concurrencylimit",
               target_id=row_id, target_label="db", data={"tag": "db", "limit": 5})


def test_a_refused_limit_change_writes_no_row(world_a):
    _put_limit(world_a, Role.DEVELOPER, "db", 3)
    before = actions(world_a)
    # a Viewer may not change limits; a negative limit is bad input; a missing tag is not found
    assert_error(_put_limit(world_a, Role.VIEWER, "db", 4), 403)
    assert_error(_put_limit(world_a, Role.DEVELOPER, "db", -1), 400)
    assert_error(world_a.client(Role.VIEWER).delete(world_a.url("concurrency-limits/") + "?tag=db"), 403)
    assert_error(world_a.client(Role.DEVELOPER).delete(world_a.url("concurrency-limits/") + "?tag=nope"), 404)
    assert actions(world_a) == before


def test_a_limit_change_that_rolls_back_leaves_no_row(world_a, monkeypatch):
    # given: the change fails after its audit row was written, inside the same transaction
    before = actions(world_a)

    def broken(limit: ConcurrencyLimit) -> None:
        raise RuntimeError("publishing failed")

    monkeypatch.setattr(events, "concurrency_limit_updated", broken)
    actor = principal_for_user(world_a.users[Role.ADMIN], world_a.workspace)
    # when
    with pytest.raises(RuntimeError):
        concurrency.concurrency_limit_set(actor=actor, tag="db", limit=3)
    # then
    with rls_bypass():
        assert not ConcurrencyLimit.objects.unscoped().filter(workspace=world_a.workspace).exists()
    assert actions(world_a) == before


# --- schedules ------------------------------------------------------------------------------------


def _schedules_url(world: Any, flow: dict[str, Any], suffix: str = "") -> str:
    return world.url(f"flows/{flow['flow']['id']}/schedules/{suffix}")


def test_a_schedules_life_is_audited(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    actor = email(world_a, Role.DEVELOPER)
    # created
    response = client.post(_schedules_url(world_a, flow), {"kind": "cron", "cron": "0 9 * * *"}, format="json")
    assert response.status_code == 201, response.content
    schedule_id = response.json()["id"]
    created = the_row(world_a, "schedule.created")
    assert_row(created, actor=actor, target_type="schedule", target_id=schedule_id,
               target_label="nightly: cron 0 9 * * *")
    assert {k: created["data"][k] for k in ("kind", "cron", "timezone", "is_active")} == {
        "kind": "cron", "cron": "0 9 * * *", "timezone": "UTC", "is_active": True,
    }
    # updated: the changed fields, old and new
    response = client.patch(_schedules_url(world_a, flow, f"{schedule_id}/"), {"cron": "30 9 * * *"}, format="json")
    assert response.status_code == 200, response.content
    assert_row(the_row(world_a, "schedule.updated"), actor=actor, target_type="schedule", target_id=schedule_id,
               target_label="nightly: cron 30 9 * * *", data={"cron": ["0 9 * * *", "30 9 * * *"]})
    # paused and resumed
    for active, action in ((False, "schedule.paused"), (True, "schedule.resumed")):
        response = client.post(
            _schedules_url(world_a, flow, f"{schedule_id}/pause/"), {"active": active}, format="json"
        )
        assert response.status_code == 200, response.content
        assert_row(the_row(world_a, action), actor=actor, target_type="schedule", target_id=schedule_id)
    # deleted: what it was set to
    response = client.delete(_schedules_url(world_a, flow, f"{schedule_id}/"))
    assert response.status_code == 204, response.content
    deleted = the_row(world_a, "schedule.deleted")
    assert_row(deleted, actor=actor, target_type="schedule", target_id=schedule_id,
               target_label="nightly: cron 30 9 * * *")
    assert deleted["data"]["cron"] == "30 9 * * *"
    # the pause/resume rows are the only record of those: no schedule.updated beside them
    assert [a for a in actions(world_a) if a.startswith("schedule.")] == [
        "schedule.deleted", "schedule.resumed", "schedule.paused", "schedule.updated", "schedule.created",
    ]


def test_pausing_says_how_many_future_runs_it_removed(world_a, flow):
    # given: a schedule every ten minutes, and the scheduler tick has made its next runs
    client = world_a.client(Role.DEVELOPER)
    schedule_id = client.post(_schedules_url(world_a, flow), {"kind": "interval", "interval_seconds": 600},
                              format="json").json()["id"]
    assert schedule_due_runs() > 0
    # when
    response = client.post(_schedules_url(world_a, flow, f"{schedule_id}/pause/"), {"active": False}, format="json")
    # then
    assert response.status_code == 200, response.content
    assert the_row(world_a, "schedule.paused")["data"]["future_runs_removed"] > 0


def test_an_unchanged_schedule_update_writes_no_row(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    schedule_id = client.post(_schedules_url(world_a, flow), {"kind": "interval", "interval_seconds": 600},
                              format="json").json()["id"]
    before = actions(world_a)
    response = client.patch(_schedules_url(world_a, flow, f"{schedule_id}/"), {"interval_seconds": 600}, format="json")
    assert response.status_code == 200, response.content
    assert actions(world_a) == before


def test_a_refused_schedule_write_writes_no_row(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    schedule_id = client.post(_schedules_url(world_a, flow), {"kind": "interval", "interval_seconds": 600},
                              format="json").json()["id"]
    before = actions(world_a)
    viewer = world_a.client(Role.VIEWER)
    assert_error(viewer.post(_schedules_url(world_a, flow), {"kind": "cron", "cron": "0 9 * * *"}, format="json"), 403)
    assert_error(client.post(_schedules_url(world_a, flow), {"kind": "cron", "cron": "not a cron"}, format="json"), 400)
    assert_error(viewer.patch(_schedules_url(world_a, flow, f"{schedule_id}/"), {"interval_seconds": 60},
                              format="json"), 403)
    assert_error(client.patch(_schedules_url(world_a, flow, f"{schedule_id}/"), {"interval_seconds": 0},
                              format="json"), 400)
    assert_error(viewer.post(_schedules_url(world_a, flow, f"{schedule_id}/pause/"), {"active": False},
                             format="json"), 403)
    assert_error(viewer.delete(_schedules_url(world_a, flow, f"{schedule_id}/")), 403)
    assert actions(world_a) == before


def test_a_schedule_change_that_rolls_back_leaves_no_row(world_a, flow, monkeypatch):
    client = world_a.client(Role.DEVELOPER)
    schedule_id = client.post(_schedules_url(world_a, flow), {"kind": "interval", "interval_seconds": 600},
                              format="json").json()["id"]
    before = actions(world_a)

    def broken(schedule: Schedule) -> None:
        raise RuntimeError("publishing failed")

    monkeypatch.setattr(events, "schedule_updated", broken)
    actor = principal_for_user(world_a.users[Role.DEVELOPER], world_a.workspace)
    with workspace_scope([world_a.workspace.pk]):
        schedule = Schedule.objects.for_workspace(world_a.workspace).get(pk=schedule_id)
        with pytest.raises(RuntimeError):
            schedules.schedule_set_active(actor=actor, schedule=schedule, is_active=False)
        assert Schedule.objects.for_workspace(world_a.workspace).get(pk=schedule_id).is_active is True
    assert actions(world_a) == before


# --- projects -------------------------------------------------------------------------------------


def test_a_projects_life_is_audited(world_a):
    admin = world_a.client(Role.ADMIN)
    actor = email(world_a, Role.ADMIN)
    response = admin.post(world_a.url("projects/"), {"name": "billing"}, format="json")
    assert response.status_code == 201, response.content
    project_id = response.json()["id"]
    created = the_row(world_a, "project.created", project_id)
    assert_row(created, actor=actor, target_type="project", target_id=project_id, target_label="billing")
    assert created["data"]["name"] == "billing"

    response = admin.patch(world_a.url(f"projects/{project_id}/"), {"is_restricted": True}, format="json")
    assert response.status_code == 200, response.content
    restricted = the_row(world_a, "project.updated", project_id)
    assert_row(restricted, actor=actor, target_type="project", target_id=project_id,
               data={"is_restricted": [False, True]})

    response = admin.patch(world_a.url(f"projects/{project_id}/"), {"name": "invoicing"}, format="json")
    assert response.status_code == 200, response.content
    renamed = [r for r in rest_rows(world_a) if r["action"] == "project.updated"][0]
    assert renamed["data"] == {"name": ["billing", "invoicing"]}

    response = admin.delete(world_a.url(f"projects/{project_id}/"))
    assert response.status_code == 204, response.content
    assert_row(the_row(world_a, "project.deleted", project_id), actor=actor, target_type="project",
               target_id=project_id, target_label="invoicing")


def test_a_refused_project_write_writes_no_row(world_a):
    created = world_a.client(Role.ADMIN).post(world_a.url("projects/"), {"name": "billing"}, format="json")
    project_id = created.json()["id"]
    before = actions(world_a)
    # Only Owners and Admins restrict a project; Viewers write nothing; a name is required.
    assert_error(world_a.client(Role.DEVELOPER).patch(world_a.url(f"projects/{project_id}/"), {"is_restricted": True},
                                                      format="json"), 403)
    assert_error(world_a.client(Role.VIEWER).post(world_a.url("projects/"), {"name": "x"}, format="json"), 403)
    assert_error(world_a.client(Role.ADMIN).post(world_a.url("projects/"), {"name": ""}, format="json"), 400)
    assert_error(world_a.client(Role.VIEWER).delete(world_a.url(f"projects/{project_id}/")), 403)
    assert actions(world_a) == before


# --- flows and versions ---------------------------------------------------------------------------


def _flow_url(world: Any, flow: dict[str, Any], suffix: str = "") -> str:
    return world.url(f"flows/{flow['flow']['id']}/{suffix}")


def test_a_flows_changes_are_audited(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    actor = email(world_a, Role.DEVELOPER)
    flow_id = flow["flow"]["id"]
    first_version = flow["version"]["id"]
    second = register(client, world_a, _metadata(labels=["prod", "eu"]))
    assert second.status_code == 201, second.content
    second_version = second.json()["version"]["id"]

    response = client.patch(_flow_url(world_a, flow), {"max_lateness_seconds": 120}, format="json")
    assert response.status_code == 200, response.content
    assert_row(the_row(world_a, "flow.updated"), actor=actor, target_type="flow", target_id=flow_id,
               target_label="nightly", data={"max_lateness_seconds": [None, 120]})

    # a version's archive and restore name the version; pinning is a change of the flow
    archive_url = _flow_url(world_a, flow, f"versions/{first_version}/archive/")
    assert client.post(archive_url, {"archived": True}, format="json").status_code == 200
    assert_row(the_row(world_a, "flow.version_archived"), actor=actor, target_type="flowversion",
               target_id=first_version, target_label="nightly v1",
               data={"flow_id": flow_id, "version": 1, "unpinned": False})
    assert client.post(archive_url, {"archived": False}, format="json").status_code == 200
    assert_row(the_row(world_a, "flow.version_restored"), actor=actor, target_type="flowversion",
               target_id=first_version, target_label="nightly v1", data={"flow_id": flow_id, "version": 1})

    pin_url = _flow_url(world_a, flow, f"versions/{second_version}/pin/")
    assert client.post(pin_url, {"pinned": True}, format="json").status_code == 200
    assert_row(the_row(world_a, "flow.version_pinned"), actor=actor, target_type="flow", target_id=flow_id,
               target_label="nightly", data={"version": 2, "previous": None})
    assert client.post(pin_url, {"pinned": False}, format="json").status_code == 200
    assert_row(the_row(world_a, "flow.version_unpinned"), actor=actor, target_type="flow", target_id=flow_id,
               target_label="nightly", data={"previous": 2})

    response = client.delete(_flow_url(world_a, flow))
    assert response.status_code == 204, response.content
    assert_row(the_row(world_a, "flow.deleted", flow_id), actor=actor, target_type="flow", target_id=flow_id,
               target_label="nightly", data={"name": "nightly", "project": "etl"})


def test_a_refused_flow_write_writes_no_row(world_a, flow):
    before = actions(world_a)
    viewer = world_a.client(Role.VIEWER)
    version_id = flow["version"]["id"]
    assert_error(viewer.patch(_flow_url(world_a, flow), {"max_lateness_seconds": 60}, format="json"), 403)
    assert_error(world_a.client(Role.DEVELOPER).patch(_flow_url(world_a, flow), {"catchup": "sometimes"},
                                                      format="json"), 400)
    assert_error(viewer.post(_flow_url(world_a, flow, f"versions/{version_id}/archive/"), {}, format="json"), 403)
    assert_error(viewer.post(_flow_url(world_a, flow, f"versions/{version_id}/pin/"), {}, format="json"), 403)
    assert_error(viewer.delete(_flow_url(world_a, flow)), 403)
    assert actions(world_a) == before


# --- bulk actions on runs -------------------------------------------------------------------------


def test_a_bulk_action_is_audited(world_a, flow):
    client = world_a.client(Role.DEVELOPER)
    created = client.post(world_a.url("flow-runs/bulk/"), {"flow": flow["flow"]["id"], "runs": [{}, {}]}, format="json")
    assert created.status_code == 201, created.content
    response = client.post(world_a.url("flow-runs/bulk-action/"),
                           {"action": "cancel", "filters": {"flow": flow["flow"]["id"], "state_type": ["SCHEDULED"]}},
                           format="json")
    assert response.status_code == 200, response.content
    bulk = response.json()
    row = the_row(world_a, "bulk_action.created", bulk["id"])
    assert_row(row, actor=email(world_a, Role.DEVELOPER), target_type="bulkaction", target_id=bulk["id"],
               target_label="cancel on 2 runs",
               data={"action": "cancel", "filters": bulk["filters"], "state_type": "", "matched": 2})
    assert bulk["filters"] == {"flow_id": flow["flow"]["id"], "state_types": ["SCHEDULED"]}


def test_a_refused_bulk_action_writes_no_row(world_a, flow):
    before = actions(world_a)
    body = {"action": "cancel", "filters": {"flow": flow["flow"]["id"]}}
    assert_error(world_a.client(Role.VIEWER).post(world_a.url("flow-runs/bulk-action/"), body, format="json"), 403)
    assert_error(world_a.client(Role.DEVELOPER).post(world_a.url("flow-runs/bulk-action/"), {"action": "mark",
                 "filters": {}}, format="json"), 400)
    assert actions(world_a) == before


# --- who sees the rows ----------------------------------------------------------------------------


def test_another_workspaces_admin_never_sees_the_rows(world_a, world_b, flow):
    # given: audited changes in workspace A
    assert _put_limit(world_a, Role.DEVELOPER, "db", 3).status_code == 200
    world_a.client(Role.DEVELOPER).post(_schedules_url(world_a, flow), {"kind": "cron", "cron": "0 9 * * *"},
                                        format="json")
    ids = {r["id"] for r in rest_rows(world_a) if r["action"] in ("concurrency_limit.set", "schedule.created")}
    assert len(ids) == 2
    # then: B's Admin is not a member of A (404, null over GraphQL) and B's own log lacks them
    assert_error(world_b.client(Role.ADMIN).get(world_a.url("audit-log/")), 404)
    body = gql(login(world_b.users[Role.ADMIN]), AUDIT_LOG, {"slug": world_a.workspace.slug})
    assert body["data"]["workspace"] is None
    assert not ids & {r["id"] for r in rest_rows(world_b)}
    assert not ids & {n["id"] for n in graphql_rows(world_b)}
    # and A's Developer may not read A's log at all
    assert_error(world_a.client(Role.DEVELOPER).get(world_a.url("audit-log/")), 403)


# --- one area at a time ---------------------------------------------------------------------------


def test_the_log_reads_one_area_at_a_time(world_a, flow):
    _put_limit(world_a, Role.DEVELOPER, "db", 3)
    world_a.client(Role.DEVELOPER).post(_schedules_url(world_a, flow), {"kind": "cron", "cron": "0 9 * * *"},
                                        format="json")
    world_a.client(Role.ADMIN).patch(world_a.url(), {"name": "Acme Rockets"}, format="json")
    everything = actions(world_a)
    assert {"concurrency_limit.set", "schedule.created", "workspace.updated"} <= set(everything)
    assert [r["action"] for r in rest_rows(world_a, area="limits")] == ["concurrency_limit.set"]
    assert [r["action"] for r in rest_rows(world_a, area="schedules")] == ["schedule.created"]
    assert [r["action"] for r in rest_rows(world_a, area="workspace")] == ["workspace.updated"]
    assert [n["action"] for n in graphql_rows(world_a, area="limits")] == ["concurrency_limit.set"]
    # every action in the log belongs to exactly one area
    for action in everything:
        areas = [area for area, prefixes in AUDIT_LOG_AREAS.items() if action.startswith(prefixes)]
        assert len(areas) == 1, (action, areas)


def test_an_unknown_area_is_bad_input(world_a):
    error = assert_error(world_a.client(Role.ADMIN).get(world_a.url("audit-log/"), {"area": "everything"}), 400)
    assert "area" in error["details"]
    body = gql(login(world_a.users[Role.ADMIN]), AUDIT_LOG, {"slug": world_a.workspace.slug, "area": "everything"})
    assert body["data"]["workspace"]["auditLog"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["invalid_argument"]
    assert "Unknown area 'everything'" in body["errors"][0]["message"]
