"""Quota warnings: one e-mail to the Owners at 80 % and at 100 % of a limit, once per period."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Role
from billing.models import QuotaNotice
from billing.notices import crossed
from core.tenancy import rls_bypass
from tests.billing.conftest import flow_of, set_free_runs

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("billing_on")]


@pytest.mark.parametrize(("before", "after", "limit", "expected"), [
    (7, 8, 10, 80), (8, 9, 10, None), (9, 10, 10, 100), (0, 10, 10, 100), (10, 10, 10, None), (3, 4, None, None),
    (79, 80, 100, 80), (78, 79, 100, None),
])
def test_crossed_names_the_highest_threshold_reached(before, after, limit, expected):
    assert crossed(before, after, limit) == expected


def test_owners_get_one_mail_at_80_and_one_at_100_percent(world_a, mailoutbox, django_capture_on_commit_callbacks):
    # given: Free allows 10 runs
    set_free_runs(10)
    flow = flow_of(world_a)
    client = world_a.client(Role.DEVELOPER, key=True)
    # when: 12 attempts, each committing as a request does
    for _ in range(12):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(world_a.url("flow-runs/"), {"flow": str(flow.pk)}, format="json")
    # then
    owners = {world_a.users[Role.OWNER].email}
    assert [(set(m.to), m.subject) for m in mailoutbox] == [
        (owners, "Acme: 80 % of your Flowdeck runs quota used"),
        (owners, "Acme: 100 % of your Flowdeck runs quota used"),
    ]
    assert "used 10 of its 10 flow runs" in mailoutbox[1].body
    assert "New runs will be refused" in mailoutbox[1].body
    with rls_bypass():
        assert QuotaNotice.objects.unscoped().filter(workspace=world_a.workspace).count() == 2


def test_a_refused_or_rolled_back_creation_sends_nothing(world_a, mailoutbox, django_capture_on_commit_callbacks):
    # given: 9 of 10 used, quietly
    set_free_runs(10)
    flow = flow_of(world_a)
    client = world_a.client(Role.DEVELOPER, key=True)
    for _ in range(9):
        client.post(world_a.url("flow-runs/"), {"flow": str(flow.pk)}, format="json")
    # when: a bulk of 2 is refused
    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(world_a.url("flow-runs/bulk/"), {"flow": str(flow.pk), "runs": [{}, {}]}, format="json")
    # then
    assert refused.status_code == 402
    assert mailoutbox == []


def test_seats_warn_at_80_percent(world_a, mailoutbox, django_capture_on_commit_callbacks):
    # given: an Owner alone on Standard with 5 seats
    from tests.billing.conftest import subscribe

    subscribe(world_a, "standard", seats=5)
    with rls_bypass():
        Membership.objects.filter(workspace=world_a.workspace).exclude(role=Role.OWNER).delete()
    client = world_a.client(Role.OWNER)
    # when: three invitations take seats 2, 3 and 4 (80 %)
    for i in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(world_a.url("invitations/"), {"email": f"p{i}@example.com", "role": "viewer"}, format="json")
    # then
    warnings = [m for m in mailoutbox if "quota" in m.subject]
    assert [m.subject for m in warnings] == ["Acme: 80 % of your Flowdeck seats quota used"]
    assert "used 4 of its 5 seats" in warnings[0].body
