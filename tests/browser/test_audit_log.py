"""The audit log page shows orchestration changes in words: a Developer changes a concurrency limit
through the REST API (with their key, as a script would), and an Admin sees who did it, to which tag,
and "limit 3 → 5" on the audit log page, also when reading only the concurrency-limit area."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from accounts.models import AuditLogEntry, Role
from core.tenancy import rls_bypass
from tests.factories import PASSWORD

from .conftest import App, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_changed_concurrency_limit_reads_well_in_the_audit_log(app: App, world_a) -> None:
    # given: an entry of another area, then a Developer sets the limit of tag "db" to 3 and then to 5
    with rls_bypass():
        AuditLogEntry.all_objects.create(workspace=world_a.workspace, actor_label="owner@acme.example.com",
                                         action="workspace.updated", target_type="workspace", target_label="Acme",
                                         data={"name": ["Acme", "Acme Rockets"]})
    url = f"{app.url}/api/v1/workspaces/{world_a.workspace.slug}/concurrency-limits/"
    headers = {"Authorization": f"Bearer {world_a.keys[Role.DEVELOPER]}"}
    for limit in (3, 5):
        response = httpx.put(url, json={"tag": "db", "limit": limit}, headers=headers, timeout=10)
        assert response.status_code == 200, response.text

    # when: an Admin opens the audit log
    page = app.new_page()
    log_in(page, world_a.users[Role.ADMIN].email, PASSWORD)
    page.get_by_role("link", name="Audit log").click()
    expect(page).to_have_url(re.compile(r"/w/acme/audit-log$"))

    # then: the newest row says who set which limit, from what to what
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(3)
    newest = rows.first
    expect(newest).to_contain_text("Set a concurrency limit")
    expect(newest).to_contain_text(world_a.users[Role.DEVELOPER].email)
    expect(newest.get_by_role("cell", name=re.compile("Concurrency limit$"))).to_contain_text("db")
    expect(newest).to_contain_text("limit 3 → 5")
    expect(rows.nth(1)).to_contain_text("limit 3 (new)")
    expect(rows.nth(2)).to_contain_text("name: Acme → Acme Rockets")

    # and reading only the concurrency limits leaves the workspace change out
    page.get_by_label("Area").select_option(label="Concurrency limits")
    expect(rows).to_have_count(2)
    expect(page.get_by_text("Changed the workspace")).to_have_count(0)
    page.get_by_label("Area").select_option(label="Schedules")
    expect(page.get_by_text("Nothing has been recorded in this area yet.")).to_be_visible()
    assert not app.js_errors, app.js_errors
