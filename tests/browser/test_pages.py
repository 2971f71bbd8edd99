"""Workspace pages: phone-width layout, invitation links, service accounts, the audit log, roles."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.models import AuditLogEntry, Role, Workspace
from core.tenancy import rls_bypass
from tests.factories import PASSWORD as FACTORY_PASSWORD
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory

from .conftest import PHONE, App, emailed_link, log_in, no_horizontal_scroll, open_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Full-page screenshot into the test's tmp dir (or FLOWDECK_SCREENSHOT_DIR, to look at them)."""
    folder = Path(os.environ.get("FLOWDECK_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


@pytest.fixture
def team() -> Workspace:
    """'Orbital Logistics' with an Owner (the one who logs in) and three more members."""
    workspace = WorkspaceFactory(name="Orbital Logistics", slug="orbital")
    owner = UserFactory(email="owner@example.com", full_name="Olivia Owner")
    MembershipFactory(workspace=workspace, user=owner, role=Role.OWNER)
    MembershipFactory(
        workspace=workspace,
        user=UserFactory(email="a.very.long.email.address.for.layout@subdomain.example-company.com", full_name=""),
        role=Role.ADMIN,
    )
    MembershipFactory(workspace=workspace, user=UserFactory(email="dev@example.com", full_name="Dev Eloper"))
    MembershipFactory(workspace=workspace, user=UserFactory(email="view@example.com"), role=Role.VIEWER)
    return workspace


def test_team_page_fits_a_phone(app: App, team: Workspace, tmp_path: Path) -> None:
    page = app.new_page(viewport=PHONE)
    log_in(page, "owner@example.com", FACTORY_PASSWORD)
    expect(page).to_have_url(re.compile(r"/w/orbital/dashboard$"))  # the workspace's home
    open_team(page)
    expect(page.get_by_test_id("member-row")).to_have_count(4)

    page.get_by_label("Email address").fill("new.person@example.com")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_test_id("invitation-row")).to_have_count(1)
    assert no_horizontal_scroll(page), "the team page scrolls sideways at 390px"
    _screenshot(page, tmp_path, "team-phone")

    page.get_by_role("button", name=re.compile("Switch workspace")).click()
    expect(page.get_by_role("link", name="+ Create workspace")).to_be_visible()
    assert no_horizontal_scroll(page), "the workspace menu overflows at 390px"
    page.keyboard.press("Escape")

    for tab, path in [("API keys", "api-keys"), ("Service accounts", "service-accounts"), ("Audit log", "audit-log")]:
        page.get_by_role("link", name=tab, exact=True).click()
        expect(page).to_have_url(re.compile(f"/w/orbital/{path}$"))
        expect(page.get_by_role("status")).to_have_count(0)  # finished loading
        assert no_horizontal_scroll(page), f"{tab} scrolls sideways at 390px"
    assert not app.js_errors, app.js_errors


def test_laptop_pages_look_right(app: App, team: Workspace, tmp_path: Path) -> None:
    page = app.new_page()
    log_in(page, "owner@example.com", FACTORY_PASSWORD)
    open_team(page)
    expect(page.get_by_test_id("member-row")).to_have_count(4)
    page.get_by_label("Email address").fill("new.person@example.com")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_test_id("invitation-row")).to_have_count(1)
    _screenshot(page, tmp_path, "team-laptop")

    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Key name").fill("laptop CLI")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("api-key-secret")).to_be_visible()
    _screenshot(page, tmp_path, "api-keys-laptop")

    anonymous = app.new_page()
    anonymous.goto("/account/signup")
    expect(anonymous.get_by_role("button", name="Sign up")).to_be_visible()
    _screenshot(anonymous, tmp_path, "signup-laptop")


def test_an_invalid_invitation_link_says_so(app: App) -> None:
    page = app.new_page()
    page.goto("/invitations/this-token-does-not-exist")
    expect(page.get_by_role("heading", name="Invitation not found")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("This invitation link is not valid")
    expect(page.get_by_role("link", name="Sign up to accept")).to_have_count(0)


def test_a_revoked_invitation_link_says_so(app: App, team: Workspace) -> None:
    owner = app.new_page()
    log_in(owner, "owner@example.com", FACTORY_PASSWORD)
    open_team(owner)
    owner.get_by_label("Email address").fill("maybe@example.com")
    owner.get_by_role("button", name="Send invitation").click()
    owner.get_by_role("button", name="Revoke invitation to maybe@example.com").click()
    owner.get_by_role("button", name="Revoke", exact=True).click()
    expect(owner.get_by_text("Invitation to maybe@example.com revoked.")).to_be_visible()
    expect(owner.get_by_test_id("invitation-row")).to_have_count(0)

    guest = app.new_page()
    guest.goto(app.path_of(emailed_link("maybe@example.com", "/invitations/")))
    expect(guest.get_by_role("alert")).to_contain_text("This invitation was revoked")


def test_service_accounts_and_their_keys(app: App, team: Workspace) -> None:
    page = app.new_page()
    log_in(page, "owner@example.com", FACTORY_PASSWORD)
    page.get_by_role("link", name="Service accounts").click()
    page.get_by_label("Name").fill("k8s-agent")
    page.get_by_label("Description").fill("Runs flows in the prod cluster")
    page.get_by_label("Role", exact=True).select_option("agent")
    page.get_by_role("button", name="Create service account").click()
    row = page.get_by_test_id("service-account-row").filter(has_text="k8s-agent")
    expect(row).to_contain_text("Agent")

    page.get_by_role("button", name="Create key for k8s-agent").click()
    page.get_by_role("form", name="Create key for k8s-agent").get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("api-key-secret")
    expect(secret).to_have_text(re.compile(r"^fd_sa_"))

    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_test_id("api-key-row").filter(has_text="k8s-agent")).to_contain_text("Service account")

    page.get_by_role("link", name="Service accounts").click()
    page.get_by_role("button", name="Delete k8s-agent").click()
    page.get_by_role("button", name="Delete account").click()
    expect(page.get_by_text("Service account “k8s-agent” deleted")).to_be_visible()
    expect(page.get_by_test_id("service-account-row")).to_have_count(0)


def test_audit_log_pages_with_load_more(app: App, team: Workspace) -> None:
    with rls_bypass():
        for i in range(60):
            AuditLogEntry.all_objects.create(
                workspace=team, actor_label="owner@example.com", action="test.event", target_type="thing",
                target_label=f"thing {i}", data={"n": i},
            )
    page = app.new_page()
    log_in(page, "owner@example.com", FACTORY_PASSWORD)
    page.get_by_role("link", name="Audit log").click()
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(50)
    page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(60)
    expect(page.get_by_role("button", name="Load more")).to_have_count(0)


def test_a_developer_sees_no_admin_controls(app: App, team: Workspace) -> None:
    page = app.new_page()
    log_in(page, "dev@example.com", FACTORY_PASSWORD)
    expect(page).to_have_url(re.compile(r"/w/orbital/dashboard$"))  # the workspace's home
    open_team(page)
    expect(page.get_by_test_id("member-row")).to_have_count(4)
    expect(page.get_by_role("button", name="Send invitation")).to_have_count(0)
    expect(page.get_by_role("combobox")).to_have_count(0)  # no role selects
    expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    expect(page.get_by_text("Only Owners and Admins can invite people")).to_be_visible()
    assert not app.js_errors, app.js_errors


def test_an_existing_user_accepts_an_invitation_after_logging_in(app: App, team: Workspace) -> None:
    other = WorkspaceFactory(name="Elsewhere", slug="elsewhere")
    MembershipFactory(workspace=other, user=UserFactory(email="kim@example.com"), role=Role.OWNER)

    owner = app.new_page()
    log_in(owner, "owner@example.com", FACTORY_PASSWORD)
    open_team(owner)
    owner.get_by_label("Email address").fill("kim@example.com")
    owner.get_by_label("Role", exact=True).select_option("viewer")
    owner.get_by_role("button", name="Send invitation").click()
    expect(owner.get_by_test_id("invitation-row")).to_have_count(1)

    kim = app.new_page()
    kim.goto(app.path_of(emailed_link("kim@example.com", "/invitations/")))
    expect(kim.get_by_text("Viewer", exact=True)).to_be_visible()
    kim.get_by_role("link", name="I already have an account: log in").click()
    expect(kim.get_by_label("Email")).to_have_value("kim@example.com")
    kim.get_by_label("Password").fill(FACTORY_PASSWORD)
    kim.get_by_role("button", name="Log in").click()
    kim.get_by_role("button", name="Accept invitation").click()
    expect(kim).to_have_url(re.compile(r"/w/orbital/dashboard$"))
    expect(kim.get_by_text("Your role: Viewer")).to_be_visible()
    kim.get_by_role("button", name=re.compile("Switch workspace")).click()
    expect(kim.get_by_role("navigation", name="Your workspaces").get_by_role("link")).to_have_count(2)

    # The link worked once.
    kim.goto(app.path_of(emailed_link("kim@example.com", "/invitations/")))
    expect(kim.get_by_role("alert")).to_contain_text("already used")


def test_workspace_settings_and_server_errors(app: App, team: Workspace) -> None:
    WorkspaceFactory(name="Taken", slug="taken")
    page = app.new_page()
    log_in(page, "owner@example.com", FACTORY_PASSWORD)

    # A server-side validation error is shown to the person.
    page.goto("/workspaces/new")
    page.get_by_label("Workspace name").fill("Another one")
    page.get_by_label("URL slug").fill("taken")
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("alert")).to_contain_text("already taken")

    # Renaming a workspace and changing its slug moves it, and the switcher follows.
    page.goto("/w/orbital/settings")
    page.get_by_label("Workspace name").fill("Orbital Freight")
    page.get_by_label("URL slug").fill("orbital-freight")
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(re.compile(r"/w/orbital-freight/settings$"))
    expect(page.get_by_role("heading", name="Orbital Freight")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Switch workspace"))).to_contain_text("Orbital Freight")
