"""Operators set an Enterprise workspace's limits in the admin; they apply to the current period
at once. Workspace Owners never reach these pages."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role, User
from billing.models import RunMeter
from billing.quotas import open_meter
from core.tenancy import rls_bypass
from tests.billing.conftest import subscribe

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("billing_on")]


def test_an_operator_sets_custom_run_limits_that_apply_to_this_period_at_once(world_a):
    # given: Enterprise (unlimited) with an open meter
    subscription = subscribe(world_a, "enterprise")
    open_meter(world_a.workspace.pk)
    root = User.objects.create_superuser("root@example.com", "pw-irrelevant-123")
    client = Client()
    client.force_login(root)
    url = f"/admin/billing/subscription/{subscription.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items()
            if name in form.fields and not form.fields[name].disabled}
    # when
    response = client.post(url, {**data, "workspace": world_a.workspace.pk, "plan": subscription.plan_id,
                                 "custom_runs_per_period": 250_000, "custom_seats": 40})
    # then
    assert response.status_code == 302, response.content.decode()[:2000]
    with rls_bypass():
        assert RunMeter.objects.unscoped().get(workspace=world_a.workspace).runs_limit == 250_000


def test_a_workspace_owner_cannot_open_billing_admin(world_a):
    client = Client()
    client.force_login(world_a.users[Role.OWNER])
    response = client.get("/admin/billing/subscription/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
