"""The issue's acceptance test: sign up, verify, second workspace, invite, join through the link,
promote, and an API key whose secret is shown exactly once."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, App, emailed_link, open_team, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_team_journey(app: App) -> None:
    owner_email, colleague_email = "ada@example.com", "grace@example.com"

    # A person signs up and is asked to check their inbox.
    owner = app.new_page()
    sign_up(owner, owner_email, workspace="Analytical Engines")

    # The emailed link verifies the address, signs them in and opens their first workspace.
    owner.goto(app.path_of(emailed_link(owner_email, "/account/verify-email/")))
    expect(owner).to_have_url(re.compile(r"/w/analytical-engines/dashboard$"))
    expect(owner.get_by_role("heading", name="Analytical Engines")).to_be_visible()

    # A second workspace, through the header's workspace switcher.
    owner.get_by_role("button", name=re.compile("Switch workspace")).click()
    owner.get_by_role("link", name="+ Create workspace").click()
    owner.get_by_label("Workspace name").fill("Difference Ops")
    owner.get_by_role("button", name="Create workspace").click()
    expect(owner).to_have_url(re.compile(r"/w/difference-ops/dashboard$"))
    expect(owner.get_by_role("heading", name="Difference Ops")).to_be_visible()
    owner.get_by_role("button", name=re.compile("Switch workspace")).click()
    menu = owner.get_by_role("navigation", name="Your workspaces")
    expect(menu.get_by_role("link")).to_have_count(2)
    owner.keyboard.press("Escape")

    # Invite a colleague by email, from the Team page (a workspace opens on its dashboard).
    open_team(owner)
    owner.get_by_label("Email address").fill(colleague_email)
    owner.get_by_label("Role", exact=True).select_option("developer")
    owner.get_by_role("button", name="Send invitation").click()
    expect(owner.get_by_text(f"Invitation sent to {colleague_email}.")).to_be_visible()
    expect(owner.get_by_test_id("invitation-row").filter(has_text=colleague_email)).to_be_visible()

    # The colleague, in another browser, opens the emailed link and signs up through it.
    colleague = app.new_page()
    colleague.goto(app.path_of(emailed_link(colleague_email, "/invitations/")))
    expect(colleague.get_by_role("heading", name="Join Difference Ops")).to_be_visible()
    expect(colleague.get_by_text(owner_email)).to_be_visible()
    colleague.get_by_role("link", name="Sign up to accept").click()
    expect(colleague.get_by_label("Email")).to_have_value(colleague_email)
    expect(colleague.get_by_label("Workspace name")).to_have_count(0)
    colleague.get_by_label("Password").fill(PASSWORD)
    colleague.get_by_role("button", name="Sign up and join").click()

    # ... and lands in the workspace as a Developer, without a detour through email verification.
    expect(colleague).to_have_url(re.compile(r"/w/difference-ops/dashboard$"))
    expect(colleague.get_by_role("heading", name="Difference Ops")).to_be_visible()
    expect(colleague.get_by_text("Your role: Developer")).to_be_visible()

    # The first person sees the colleague and makes them an Admin.
    owner.reload()
    role_select = owner.get_by_label(f"Role for {colleague_email}")
    expect(role_select).to_have_value("developer")
    role_select.select_option("admin")
    expect(owner.get_by_text(f"{colleague_email} is now Admin.")).to_be_visible()
    owner.reload()
    expect(owner.get_by_label(f"Role for {colleague_email}")).to_have_value("admin")
    expect(owner.get_by_test_id("invitation-row")).to_have_count(0)  # accepted: no longer pending
    colleague.reload()
    expect(colleague.get_by_text("Your role: Admin")).to_be_visible()

    # An API key: the secret is shown once, in a panel with a Copy button and a clear warning.
    owner.get_by_role("link", name="API keys").click()
    expect(owner).to_have_url(re.compile(r"/w/difference-ops/api-keys$"))
    owner.get_by_label("Key name").fill("deploy pipeline")
    owner.get_by_role("button", name="Create key").click()
    panel = owner.get_by_role("region", name=re.compile("Your new API key"))
    expect(panel).to_be_visible()
    expect(panel.get_by_text("you will not see this key again")).to_be_visible()
    expect(panel.get_by_role("button", name="Copy")).to_be_visible()
    secret = owner.get_by_test_id("api-key-secret").inner_text().strip()
    assert re.fullmatch(r"fd_u_[0-9A-Za-z]{39}", secret), secret
    row = owner.get_by_test_id("api-key-row").filter(has_text="deploy pipeline")
    expect(row).to_be_visible()
    prefix = secret[: len("fd_u_") + 12]
    expect(row).to_contain_text(prefix)

    # The secret is real: it authenticates against the REST API as its owner.
    request = urllib.request.Request(f"{app.url}/api/v1/me/", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own live server)
        assert json.load(response)["user"]["email"] == owner_email

    # After a reload the secret is nowhere on the page; only its prefix is.
    owner.reload()
    expect(owner.get_by_test_id("api-key-row").filter(has_text="deploy pipeline")).to_contain_text(prefix)
    expect(owner.get_by_test_id("api-key-secret")).to_have_count(0)
    assert secret not in owner.content()
    assert secret not in owner.evaluate("() => document.body.innerText")

    assert not app.js_errors, app.js_errors
