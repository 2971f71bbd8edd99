"""Onboarding journeys that must never drop a person: verifying the e-mail after the browser was
closed, following e-mailed links on whatever address the server runs, role changes reaching open
pages, and deleting a workspace."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.core import mail
from playwright.sync_api import Page, Request, expect

from accounts.models import Membership, Role, Workspace
from tests.factories import PASSWORD as FACTORY_PASSWORD
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.orchestration.factories import ProjectFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory
from tests.sdk.conftest import LiveServer

from .conftest import LAPTOP, PASSWORD, App, emailed_link, log_in, open_team, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SESSION_CHECK = "/_allauth/browser/v1/auth/session"
VERIFY = "/_allauth/browser/v1/auth/email/verify"


def _track_auth_requests(page: Page) -> list[str]:
    """A log of the session-check and verification requests: 'send session', 'done session', …;
    two of them in flight at once is what lost the session cookie."""
    log: list[str] = []

    def name(request: Request) -> str | None:
        if request.url.endswith(SESSION_CHECK):
            return "session"
        if request.url.endswith(VERIFY):
            return "verify"
        return None

    def record(event: str) -> object:
        def handler(request: Request) -> None:
            if what := name(request):
                log.append(f"{event} {what}")

        return handler

    page.on("request", record("send"))
    page.on("requestfinished", record("done"))
    page.on("requestfailed", record("done"))
    return log


def _overlaps(log: list[str]) -> bool:
    in_flight = 0
    for entry in log:
        in_flight += 1 if entry.startswith("send") else -1
        if in_flight > 1:
            return True
    return False


def test_verifying_after_a_browser_restart_always_ends_signed_in(app: App) -> None:
    # The race between the page's session check and the verification request did not lose the
    # session every time, so the journey runs several times, both ways a browser comes back.
    for n in range(5):
        # A browser that was closed and reopened keeps its persistent cookies (the session).
        email = f"restart{n}@example.com"
        first = app.new_page()
        sign_up(first, email, workspace=f"Restart {n}")
        kept = first.context.storage_state()
        first.context.close()
        context = app.browser.new_context(base_url=app.url, viewport=LAPTOP, storage_state=kept)  # type: ignore[arg-type]
        app.contexts.append(context)
        page = context.new_page()
        log = _track_auth_requests(page)
        page.goto(app.path_of(emailed_link(email, "/account/verify-email/")))
        expect(page).to_have_url(re.compile(rf"/w/restart-{n}/dashboard$"))
        expect(page.get_by_role("heading", name=f"Restart {n}")).to_be_visible()
        assert "send verify" in log
        assert not _overlaps(log), f"session check and verification were in flight together: {log}"
        page.reload()
        expect(page).to_have_url(re.compile(rf"/w/restart-{n}/dashboard$"))
        expect(page.get_by_role("heading", name=f"Restart {n}")).to_be_visible()

        # A different browser (no cookies at all): verified, then one clear log-in step.
        email = f"elsewhere{n}@example.com"
        first = app.new_page()
        sign_up(first, email, workspace=f"Elsewhere {n}")
        first.context.close()
        page = app.new_page()
        log = _track_auth_requests(page)
        page.goto(app.path_of(emailed_link(email, "/account/verify-email/")))
        expect(page.get_by_role("heading", name="Email verified")).to_be_visible()
        assert not _overlaps(log), f"session check and verification were in flight together: {log}"
        page.get_by_role("link", name="Log in").click()
        expect(page.get_by_label("Email")).to_have_value(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(rf"/w/elsewhere-{n}/dashboard$"))
        page.reload()
        expect(page.get_by_role("heading", name=f"Elsewhere {n}")).to_be_visible()


def test_emailed_links_open_on_the_address_the_server_runs_on(app: App, settings) -> None:  # type: ignore[no-untyped-def]
    # No FLOWDECK_PUBLIC_URL: links follow the address the browser reached (the live server's
    # random port), where a fixed default would name port 8000.
    settings.PUBLIC_URL = ""
    owner_email, colleague_email = "olga@example.com", "pat@example.com"
    workspace = WorkspaceFactory(name="Port Authority", slug="port-authority")
    MembershipFactory(workspace=workspace, user=UserFactory(email=owner_email), role=Role.OWNER)

    owner = app.new_page()
    log_in(owner, owner_email, FACTORY_PASSWORD)
    open_team(owner)
    owner.get_by_label("Email address").fill(colleague_email)
    owner.get_by_label("Role", exact=True).select_option("developer")
    owner.get_by_role("button", name="Send invitation").click()
    expect(owner.get_by_text(f"Invitation sent to {colleague_email}.")).to_be_visible()

    # The link is opened exactly as e-mailed, host and port included.
    link = emailed_link(colleague_email, "/invitations/")
    assert link.startswith(f"{app.url}/invitations/"), link
    colleague = app.new_page()
    colleague.goto(link)
    expect(colleague.get_by_role("heading", name="Join Port Authority")).to_be_visible()
    colleague.get_by_role("link", name="Sign up to accept").click()
    colleague.get_by_label("Password").fill(PASSWORD)
    colleague.get_by_role("button", name="Sign up and join").click()
    expect(colleague).to_have_url(re.compile(r"/w/port-authority/dashboard$"))
    expect(colleague.get_by_text("Your role: Developer")).to_be_visible()
    assert Membership.objects.filter(workspace=workspace, user__email=colleague_email, role=Role.DEVELOPER).exists()

    # The sign-up mail names the product and links to this server too.
    newcomer = app.new_page()
    sign_up(newcomer, "quinn@example.com", workspace="Quinn Works")
    message = [m for m in mail.outbox if "quinn@example.com" in m.to][-1]
    assert "Hello from Flowdeck!" in message.body, message.body
    verify = emailed_link("quinn@example.com", "/account/verify-email/")
    assert verify.startswith(f"{app.url}/account/verify-email/"), verify
    newcomer.goto(verify)
    expect(newcomer).to_have_url(re.compile(r"/w/quinn-works/dashboard$"))


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The real ASGI server (the live server of the other tests speaks WSGI: no websockets)."""
    server = LiveServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("onboarding-server"))
    server.start()
    yield server
    server.stop()


def test_a_role_change_reaches_the_open_page_and_refusals_speak_plainly(live_app: App, world_a) -> None:  # type: ignore[no-untyped-def]
    app = live_app
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    flow = DagFlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="nightly").flow
    developer = world_a.users[Role.DEVELOPER]

    # The member has the quick-run page open, live.
    member = app.new_page()
    log_in(member, developer.email, FACTORY_PASSWORD)
    member.goto(f"/w/acme/flows/{flow.pk}/run")
    expect(member.get_by_text("Your role: Developer")).to_be_visible()
    expect(member.get_by_test_id("live-status")).to_have_text("Live")
    start = member.get_by_role("button", name="Start run")
    expect(start).to_be_enabled()

    # In another browser, the Owner makes them a Viewer: the open page follows without a reload.
    owner = app.new_page()
    log_in(owner, world_a.users[Role.OWNER].email, FACTORY_PASSWORD)
    open_team(owner)
    owner.get_by_label(f"Role for {developer.email}").select_option("viewer")
    expect(owner.get_by_text(re.compile(rf"{re.escape(developer.email)}\)? is now Viewer\."))).to_be_visible()
    expect(member.get_by_text("Your role: Viewer")).to_be_visible()
    expect(start).to_be_disabled()
    expect(member.get_by_text("Your role can see flows but not start runs.")).to_be_visible()

    # … and back.
    owner.get_by_label(f"Role for {developer.email}").select_option("developer")
    expect(member.get_by_text("Your role: Developer")).to_be_visible()
    expect(start).to_be_enabled()

    # Had the page not heard of a change, the refusal says what happened in plain words.
    Membership.objects.filter(workspace=world_a.workspace, user=developer).update(role=Role.VIEWER)
    member.get_by_label("date").fill("2026-03-01")
    start.click()
    alert = member.get_by_role("alert").filter(has_text="You are a Viewer")
    expect(alert).to_have_text(
        "You are a Viewer in this workspace; Viewers cannot start runs. Ask an Owner or Admin for the Developer role."
    )
    expect(member.get_by_text("flow_run:create")).to_have_count(0)


def test_a_refused_self_demotion_snaps_back_and_the_owner_can_delete_the_workspace(app: App) -> None:
    owner_email = "solo@example.com"
    workspace = WorkspaceFactory(name="Solo Works", slug="solo-works")
    owner_user = UserFactory(email=owner_email)
    MembershipFactory(workspace=workspace, user=owner_user, role=Role.OWNER)
    MembershipFactory(workspace=workspace, user=UserFactory(email="dev@example.com"), role=Role.DEVELOPER)
    project = ProjectFactory(workspace=workspace, name="etl")
    DagFlowVersionFactory(flow__project=project, flow__workspace=workspace, flow__name="nightly")

    page = app.new_page()
    log_in(page, owner_email, FACTORY_PASSWORD)
    expect(page).to_have_url(re.compile(r"/w/solo-works/dashboard$"))  # the workspace's home
    open_team(page)

    # The only Owner tries to become an Admin: refused, and the menu shows Owner again.
    own_role = page.get_by_label(f"Role for {owner_email}")
    own_role.select_option("admin")
    expect(page.get_by_role("alert").filter(has_text="at least one Owner")).to_be_visible()
    expect(own_role).to_have_value("owner")
    page.reload()
    expect(page.get_by_label(f"Role for {owner_email}")).to_have_value("owner")

    # Leaving is refused too, pointing at deleting the workspace, which Settings offers.
    page.get_by_role("row").filter(has_text=owner_email).get_by_role("button", name="Leave").click()
    page.get_by_role("button", name="Leave workspace").click()
    expect(page.get_by_role("alert").filter(has_text="delete the workspace")).to_be_visible()

    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Delete this workspace")).to_be_visible()
    confirm = page.get_by_label("Type the workspace's slug to confirm")
    delete = page.get_by_role("button", name="Delete workspace")
    expect(delete).to_be_disabled()
    confirm.fill("solo-work")
    expect(delete).to_be_disabled()
    confirm.fill("solo-works")
    delete.click()

    # Gone, and the person lands where they create or pick a workspace.
    expect(page).to_have_url(re.compile(r"/workspaces/new$"))
    expect(page.get_by_text("You do not belong to any workspace yet.")).to_be_visible()
    assert not Workspace.objects.filter(slug="solo-works").exists()
    assert not Membership.objects.filter(workspace_id=workspace.pk).exists()
    page.goto("/w/solo-works/team")
    expect(page.get_by_role("heading", name="Workspace not found")).to_be_visible()


def test_settings_offers_deletion_to_owners_only(app: App, world_a) -> None:  # type: ignore[no-untyped-def]
    admin = app.new_page()
    log_in(admin, world_a.users[Role.ADMIN].email, FACTORY_PASSWORD)
    admin.goto("/w/acme/settings")
    expect(admin.get_by_role("heading", name="Leave this workspace")).to_be_visible()
    expect(admin.get_by_role("heading", name="Delete this workspace")).to_have_count(0)
