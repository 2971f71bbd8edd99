"""Seats: members and pending invitations hold them; an invitation past the plan's seats is
refused with 402 and nothing is written."""

from __future__ import annotations

import pytest

from accounts.models import Invitation, Membership, Role
from core.tenancy import rls_bypass
from tests.billing.conftest import subscribe

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("billing_on")]


def invite(world, email: str):
    return world.client(Role.OWNER).post(world.url("invitations/"), {"email": email, "role": "viewer"}, format="json")


def leave_only_the_owner(world) -> None:
    with rls_bypass():
        Membership.objects.filter(workspace=world.workspace).exclude(role=Role.OWNER).delete()


def pending(world) -> int:
    with rls_bypass():
        return Invitation.objects.unscoped().filter(workspace=world.workspace, revoked_at__isnull=True).count()


def test_free_takes_two_invitations_beside_its_owner_and_refuses_the_third(world_a):
    # given
    leave_only_the_owner(world_a)
    # when
    statuses = [invite(world_a, f"p{i}@example.com").status_code for i in range(2)]
    refused = invite(world_a, "p3@example.com")
    # then
    assert statuses == [201, 201]
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"limit": "seats", "used": 3, "allowed": 3, "requested": 1, "plan": "free"}
    assert "uses 3 of the 3 seats its Free plan includes" in error["message"]
    assert pending(world_a) == 2


def test_revoking_a_pending_invitation_frees_its_seat(world_a):
    # given: all three seats held
    leave_only_the_owner(world_a)
    first = invite(world_a, "p1@example.com").json()
    invite(world_a, "p2@example.com")
    # when
    world_a.client(Role.OWNER).post(world_a.url(f"invitations/{first['id']}/revoke/"))
    again = invite(world_a, "p3@example.com")
    # then
    assert again.status_code == 201


def test_a_per_seat_plan_allows_the_seats_paid_for(world_a):
    # given: Standard with 5 paid seats; the world already has 4 members
    subscribe(world_a, "standard", seats=5)
    # when
    statuses = [invite(world_a, f"p{i}@example.com").status_code for i in range(2)]
    # then
    assert statuses == [201, 402]


def test_an_operator_can_give_an_enterprise_workspace_any_number_of_seats(world_a):
    # given: Enterprise without a seat limit
    subscribe(world_a, "enterprise")
    # when
    statuses = [invite(world_a, f"p{i}@example.com").status_code for i in range(4)]
    # then
    assert statuses == [201] * 4


def test_graphql_invite_says_quota_exceeded(world_a):
    # given: the world's four members are already more than Free's three seats
    client = world_a.client(Role.OWNER)
    # when
    response = client.post("/graphql", {
        "query": "mutation($w: String!) { inviteMember(workspace: $w, email: \"x@example.com\", role: \"viewer\") "
                 "{ errors { code message } } }",
        "variables": {"w": world_a.workspace.slug},
    }, format="json")
    # then
    body = response.json()
    assert [e["code"] for e in body["data"]["inviteMember"]["errors"]] == ["quota_exceeded"], body
    assert pending(world_a) == 0
