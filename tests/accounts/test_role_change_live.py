"""A member whose role changes hears it at once on their own open pages of that workspace, and
nobody else does (docs/live-updates.md, "membership" frame); refusals name the role in plain words."""

from __future__ import annotations

import pytest

from accounts.authz import explain_denial, principal_for_user
from accounts.models import Membership, Role
from tests.factories import MembershipFactory
from tests.live.conftest import (  # noqa: F401 (fixtures)
    Api,
    acme,
    browser_socket,
    globex,
    live_servers,
    nothing_more,
    receive,
    receive_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _is_membership(message: dict) -> bool:
    return message.get("type") == "membership"


def test_a_role_change_reaches_only_that_members_sockets_of_that_workspace(live_servers, acme, globex):  # noqa: F811
    one, other = live_servers
    developer = acme.users[Role.DEVELOPER]
    # The same person also belongs to another workspace, where nothing changes.
    MembershipFactory(workspace=globex.workspace, user=developer, role=Role.DEVELOPER)
    membership = Membership.objects.get(workspace=acme.workspace, user=developer)
    with browser_socket(one, "acme", developer) as own, browser_socket(one, "globex", developer) as elsewhere, \
            browser_socket(other, "acme", acme.users[Role.VIEWER]) as colleague:
        for ws in (own, elsewhere, colleague):
            assert receive(ws)["type"] == "hello"
        Api(other, acme, Role.OWNER).call("PATCH", f"members/{membership.pk}/", {"role": Role.VIEWER})
        message, _ = receive_until(own, _is_membership)
        assert message == {"type": "membership", "workspace": "acme", "role": "viewer"}
        assert not [m for m in nothing_more(elsewhere, 1.0) if _is_membership(m)]
        assert not [m for m in nothing_more(colleague, 0.2) if _is_membership(m)]
        # The socket goes on with the new role (a ping still answers).
        own.send('{"action": "ping"}')
        receive_until(own, lambda m: m["type"] == "pong")


def test_a_refusal_names_the_role_and_who_can_help(world_a):
    viewer = principal_for_user(world_a.users[Role.VIEWER], world_a.workspace)
    message = explain_denial("flow_run:create", viewer.role)
    assert message == (
        "You are a Viewer in this workspace; Viewers cannot start runs. Ask an Owner or Admin for the Developer role."
    )
    assert explain_denial("workspace:delete", Role.ADMIN) == (
        "You are an Admin in this workspace; Admins cannot delete the workspace. Ask an Owner for the Owner role."
    )


def test_rest_and_graphql_refusals_speak_plainly(world_a):
    client = world_a.client(Role.VIEWER)
    response = client.post(world_a.url("invitations/"), {"email": "x@example.com", "role": "viewer"}, format="json")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["message"].startswith("You are a Viewer in this workspace; Viewers cannot invite people.")
    assert "invitation:create" not in error["message"]
    assert error["details"] == {"action": "invitation:create", "role": "viewer"}

    body = client.post(
        "/graphql",
        {"query": 'mutation { inviteMember(workspace: "acme", email: "x@example.com", role: "viewer") '
                  "{ errors { code message } } }"},
        format="json",
    ).json()
    [error] = body["data"]["inviteMember"]["errors"]
    assert error["code"] == "permission_denied" and error["message"].startswith("You are a Viewer")
