"""Issue 15's browser story, end to end with real processes: a Flowdeck server with billing on and
connected to the fake Stripe (a process of its own, which signs and sends the webhooks), and
Chromium. An Owner on Free whose runs are used up is refused a quick run (402, the server's
message), sees the quota banner, upgrades through Checkout, comes back to Billing on Standard, and
the quick run then goes through. A Viewer sees Billing read-only; another workspace's member gets
the not-found view."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from accounts.models import Role
from billing.plans import ensure_default_plans
from core.tenancy import rls_bypass
from orchestration.models import Flow, Schedule
from tests.billing.conftest import flow_of, set_free_runs
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import PASSWORD
from tests.fake_stripe import FakeStripeProcess
from tests.sdk.conftest import LiveServer

from .conftest import PHONE, App, axe_problems, log_in, no_horizontal_scroll, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WEBHOOK_SECRET = "whsec_browser_billing"


class StripeBilledServer(LiveServer):
    """A Flowdeck server with billing on, talking to the fake Stripe at ``stripe_base``."""

    stripe_base = ""
    fake: FakeStripeProcess | None = None

    def env(self) -> dict[str, str]:
        return {**super().env(), "FLOWDECK_BILLING": "1", "STRIPE_SECRET_KEY": "sk_test_browser",
                "STRIPE_API_BASE": self.stripe_base, "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET}


@pytest.fixture(scope="module")
def fake_stripe(asgi_server: StripeBilledServer) -> FakeStripeProcess:
    assert asgi_server.fake is not None
    return asgi_server.fake


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[StripeBilledServer]:  # type: ignore[no-untyped-def]
    server = StripeBilledServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("billing-server"))
    # The server's port is chosen up front, so the fake knows where to send its webhooks before
    # the server (which must know the fake's address) starts.
    fake = FakeStripeProcess(webhook_url=f"{server.url}/api/v1/billing/stripe-webhook/",
                             webhook_secret=WEBHOOK_SECRET, api_events="async").start()
    try:
        fake.seed_price(id="price_seat", lookup_key="flowdeck_standard_seat", unit_amount=4000)
        server.stripe_base = fake.base_url
        server.fake = fake
        server.start(timeout=90)
        yield server
    finally:
        server.stop()
        fake.stop()


@pytest.fixture
def world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    ensure_default_plans()  # an earlier transactional test's flush took the migration's plans away
    return build_world("acme")


def _use_up_runs(server: LiveServer, world: WorkspaceWorld, flow_id: str, allowance: int) -> None:
    """Free allows ``allowance`` runs this period (committed: the server reads it), all of them used
    through the API."""
    set_free_runs(allowance)
    url = f"{server.url}/api/v1/workspaces/{world.workspace.slug}/flow-runs/"
    headers = {"Authorization": f"Bearer {world.keys[Role.DEVELOPER]}"}
    for _ in range(allowance):
        assert httpx.post(url, json={"flow": flow_id}, headers=headers, timeout=30).status_code == 201
    refused = httpx.post(url, json={"flow": flow_id}, headers=headers, timeout=30)
    assert refused.status_code == 402, refused.text


def _scheduled_flow(world: WorkspaceWorld) -> Flow:
    flow = flow_of(world)
    with rls_bypass():
        Schedule.all_objects.create(workspace=world.workspace, flow=flow, kind="interval", interval_seconds=3600)
    return flow


def test_owner_out_of_runs_upgrades_through_checkout_and_runs_again(
    live_app: App, asgi_server: StripeBilledServer, fake_stripe: FakeStripeProcess, world: WorkspaceWorld,
) -> None:
    flow = _scheduled_flow(world)
    _use_up_runs(asgi_server, world, str(flow.pk), allowance=2)
    page = live_app.new_page()
    log_in(page, world.users[Role.OWNER].email, PASSWORD)
    banner = page.get_by_test_id("quota-banner")
    expect(banner).to_contain_text("has used all 2 of its flow runs this period")
    expect(banner).to_contain_text("new runs, scheduled ones included, are refused until")

    # The flow page says why its schedules create nothing.
    page.goto(f"/w/acme/flows/{flow.pk}")
    expect(page.get_by_test_id("schedules-quota-note")).to_contain_text(
        "Schedules are not creating runs: the Free plan's 2 runs for this period are used")

    # The quick run is refused with the server's message as it is, and a way to Billing.
    page.goto(f"/w/acme/flows/{flow.pk}/run")
    page.get_by_role("button", name="Start run").click()
    message = page.get_by_test_id("quota-message")
    expect(message).to_contain_text("This workspace has used 2 of the 2 flow runs its Free plan allows this billing "
                                     "period, so a flow run cannot be created")
    expect(message).to_contain_text("An Owner can raise it by upgrading the plan")
    page.get_by_role("alert").get_by_role("link", name="Upgrade").click()

    # Billing: Free with the runs bar full; Upgrade opens the fake's Checkout page.
    expect(page).to_have_url(re.compile(r"/w/acme/billing$"))
    expect(page.get_by_test_id("current-plan")).to_have_text("Free")
    expect(page.get_by_test_id("runs-meter")).to_contain_text("2 of 2 runs (100 %)")
    expect(page.get_by_test_id("runs-by-flow")).to_contain_text(flow.name)
    expect(page.get_by_test_id("plan-comparison").get_by_test_id("plan-row")).to_have_count(3)
    expect(page.get_by_test_id("usage-csv")).to_have_attribute("href", "/api/v1/workspaces/acme/usage/download/")
    screenshot(page, "billing-free-out-of-runs")
    upgrade = page.get_by_role("form", name="Upgrade to Standard")
    expect(upgrade.get_by_label("Seats")).to_have_value("4")  # a member of each of the four roles
    upgrade.get_by_role("button", name="Upgrade to Standard").click()
    expect(page).to_have_url(re.compile(re.escape(fake_stripe.base_url) + r"/_fake/checkout/cs_"))
    page.get_by_role("button", name="Pay").click()

    # Back on Billing: the signed webhooks have moved the workspace to Standard.
    expect(page).to_have_url(re.compile(r"/w/acme/billing\?checkout=done"))
    expect(page.get_by_test_id("current-plan")).to_have_text("Standard", timeout=30_000)
    expect(page.get_by_test_id("checkout-notice")).to_contain_text("now on the Standard plan")
    expect(page.get_by_test_id("plan-status")).to_have_text("Active")
    expect(page.get_by_test_id("runs-meter")).to_contain_text("billed as overage")
    expect(page.get_by_test_id("invoice-row")).to_have_count(1)
    expect(page.get_by_test_id("invoice-row")).to_contain_text("$160.00")  # 4 seats at $40
    expect(page.get_by_role("button", name="Manage billing")).to_be_visible()
    expect(page.get_by_text("flow runs this period")).to_have_count(0)  # no runs banner any more

    # The quick run now goes through.
    page.goto(f"/w/acme/flows/{flow.pk}/run")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/w/acme/runs/[0-9a-f-]{36}$"))

    # The paid page on a phone: accessible, and nothing scrolls sideways.
    phone = live_app.new_page(PHONE)
    log_in(phone, world.users[Role.OWNER].email, PASSWORD)
    phone.goto("/w/acme/billing")
    expect(phone.get_by_test_id("invoice-row")).to_have_count(1)
    screenshot(phone, "billing-standard-390")
    assert axe_problems(phone) == []
    assert no_horizontal_scroll(phone)
    assert not live_app.js_errors, live_app.js_errors


def test_a_viewer_sees_billing_read_only(live_app: App, world: WorkspaceWorld) -> None:
    page = live_app.new_page()
    log_in(page, world.users[Role.VIEWER].email, PASSWORD)
    page.get_by_role("navigation", name="Workspace").get_by_role("link", name="Billing").click()
    expect(page).to_have_url(re.compile(r"/w/acme/billing$"))
    expect(page.get_by_test_id("current-plan")).to_have_text("Free")
    expect(page.get_by_test_id("seats-meter")).to_contain_text("4 of 3 seats")
    expect(page.get_by_test_id("plan-comparison")).to_be_visible()
    expect(page.get_by_test_id("owner-only")).to_have_text("Only an Owner can change the plan.")
    expect(page.get_by_role("button", name=re.compile("Upgrade"))).to_have_count(0)
    expect(page.get_by_role("button", name="Manage billing")).to_have_count(0)
    expect(page.get_by_role("heading", name="Invoices")).to_have_count(0)
    # Four members on Free's three seats: the banner says so, until dismissed for the session.
    banner = page.get_by_test_id("quota-banner")
    expect(banner).to_contain_text("This workspace uses 4 of its 3 seats")
    expect(banner.get_by_role("link", name="See Billing")).to_be_visible()
    banner.get_by_role("button", name="Dismiss").click()
    expect(banner).to_have_count(0)
    page.reload()
    expect(page.get_by_test_id("current-plan")).to_have_text("Free")
    expect(banner).to_have_count(0)


def test_an_invitation_past_the_seats_shows_the_servers_message(live_app: App, world: WorkspaceWorld) -> None:
    page = live_app.new_page()
    log_in(page, world.users[Role.ADMIN].email, PASSWORD)
    page.goto("/w/acme/team")
    form = page.get_by_role("form", name="Invite a member")
    form.get_by_label("Email address").fill("fifth@acme.example.com")
    form.get_by_role("button", name="Send invitation").click()
    message = page.get_by_test_id("quota-message")
    expect(message).to_contain_text("This workspace uses 4 of the 3 seats its Free plan includes")
    expect(message).to_contain_text("Revoking a pending invitation frees its seat.")
    page.get_by_role("alert").get_by_role("link", name="See Billing").click()
    expect(page).to_have_url(re.compile(r"/w/acme/billing$"))


def test_another_workspaces_member_gets_not_found_at_its_billing_page(live_app: App, world: WorkspaceWorld) -> None:
    other = build_world("globex")
    page = live_app.new_page()
    log_in(page, other.users[Role.OWNER].email, PASSWORD)
    page.goto("/w/acme/billing")
    expect(page.get_by_role("heading", name="Workspace not found")).to_be_visible()
    expect(page.get_by_test_id("current-plan")).to_have_count(0)
    expect(page.get_by_text("Acme", exact=True)).to_have_count(0)  # not even its name
