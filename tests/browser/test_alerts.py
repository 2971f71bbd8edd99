"""The SLA alerts pages in the browser: who sees which buttons, a start policy created through the
form (a bad threshold answered next to its field, the preview listing the covered flow), an
incident that appears on the incidents page without a reload and is acknowledged there, the alert
badges on flows and runs, and a webhook channel whose test notification reaches a local receiver
that checks its signature, then shows in the delivery log.

The live test runs against the real ASGI server (websockets; as in ``test_live_updates.py``); the
others against pytest-django's live server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.authz import principal_for_user
from accounts.models import AuditLogEntry, Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.alerts.channels import notification_channel_create
from orchestration.alerts.evaluator import evaluate_sla_policies
from orchestration.alerts.incidents import incident_resolve
from orchestration.alerts.policies import sla_policy_create
from orchestration.models import FlowVersion, Incident, IncidentEvent, IncidentRun, Project, SlaPolicy
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import PASSWORD
from tests.orchestration.alerts.receiver import Receiver
from tests.orchestration.factories import AgentFactory, FlowRunFactory, ProjectFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory
from tests.sdk.conftest import LiveServer

from .conftest import App, log_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Longer than a live update needs, shorter than the pages' fallback polling (10 s): an assertion
# with this timeout passes only if the socket delivered the change.
LIVE = 4_000


def _version(world: WorkspaceWorld, name: str = "nightly") -> FlowVersion:
    """A flow (with a registered version) in project "etl"."""
    with rls_bypass():
        project = Project.all_objects.filter(workspace=world.workspace, name="etl").first()
    project = project or ProjectFactory(workspace=world.workspace, name="etl")
    return cast(FlowVersion, DagFlowVersionFactory(flow__project=project, flow__workspace=world.workspace,
                                                   flow__name=name))


def _as(world: WorkspaceWorld, role: str) -> Any:
    return principal_for_user(world.users[role], world.workspace)


def _policy(world: WorkspaceWorld, **fields: Any) -> SlaPolicy:
    with workspace_scope([world.workspace.pk]):
        return sla_policy_create(_as(world, Role.DEVELOPER), **fields)


def _channel(world: WorkspaceWorld, name: str = "ops mail") -> Any:
    with workspace_scope([world.workspace.pk]):
        return notification_channel_create(_as(world, Role.ADMIN), name=name, kind="email",
                                           config={"addresses": ["ops@example.com"]})


def _incident(policy: SlaPolicy, version: FlowVersion) -> Incident:
    """An open incident of ``policy`` about one late run of the version's flow, as the evaluator
    leaves it (rows written directly: this test is about the page, not the evaluator)."""
    run = FlowRunFactory(flow_version=version, name="late-run")
    with rls_bypass():
        incident = Incident.all_objects.create(
            workspace_id=policy.workspace_id, policy=policy, policy_name=policy.name, kind=policy.kind,
            subject_key=f"run:{run.pk}", flow_id=version.flow_id, title="nightly: run late-run has not started",
            cause="Due 20 min ago, not started.",
        )
        IncidentRun.all_objects.create(workspace_id=policy.workspace_id, incident=incident, flow_run=run)
        IncidentEvent.all_objects.create(workspace_id=policy.workspace_id, incident=incident, kind="opened",
                                         message=incident.cause)
    return incident


# --- who sees what --------------------------------------------------------------------------------


def test_viewers_see_alerts_developers_manage_policies_admins_manage_channels(app: App, world_a) -> None:
    version = _version(world_a)
    policy = _policy(world_a, name="nightly on time", kind="start", flow_id=version.flow_id, threshold_seconds=900)
    _channel(world_a)
    incident = _incident(policy, version)

    for role, manages_policies, manages_channels in [
        (Role.VIEWER, False, False),
        (Role.DEVELOPER, True, False),
        (Role.ADMIN, True, True),
    ]:
        page = app.new_page()
        log_in(page, world_a.users[role].email, PASSWORD)
        page.get_by_role("link", name="Alerts", exact=True).click()
        expect(page).to_have_url(re.compile(r"/w/acme/alerts/incidents$"))
        expect(page.get_by_role("heading", name="Incidents")).to_be_visible()

        # everyone sees the incident; only Developers and up get its buttons
        page.get_by_test_id("incident-row").get_by_role("link", name=incident.title).click()
        expect(page.get_by_test_id("incident-cause")).to_have_text(incident.cause)
        expect(page.get_by_test_id("incident-run")).to_have_count(1)
        count = 1 if manages_policies else 0
        for button in ("Acknowledge", "Snooze 15 min", "Snooze 1 h", "Snooze 4 h", "Resolve"):
            expect(page.get_by_role("button", name=button, exact=True)).to_have_count(count)

        page.get_by_role("navigation", name="Alerts").get_by_role("link", name="SLA policies").click()
        row = page.get_by_test_id("policy-row").filter(has_text="nightly on time")
        expect(row).to_be_visible()
        expect(row).to_contain_text("Start within")
        expect(row).to_contain_text("Flow nightly")
        expect(row.get_by_test_id("policy-threshold")).to_have_text("start within 15 min")
        count = 1 if manages_policies else 0
        expect(page.get_by_role("button", name="New policy")).to_have_count(count)
        expect(row.get_by_role("button", name="Pause nightly on time")).to_have_count(count)
        expect(row.get_by_role("button", name="Delete nightly on time")).to_have_count(count)

        page.get_by_role("navigation", name="Alerts").get_by_role("link", name="Channels").click()
        channel = page.get_by_test_id("channel-row").filter(has_text="ops mail")
        expect(channel).to_contain_text("E-mail")
        count = 1 if manages_channels else 0
        expect(page.get_by_role("button", name="New channel")).to_have_count(count)
        expect(channel.get_by_role("button", name="Send test notification to ops mail")).to_have_count(count)
        expect(channel.get_by_role("button", name="Delete ops mail")).to_have_count(count)
        expect(page.get_by_role("heading", name="Delivery log")).to_be_visible()
        page.context.close()
    assert not app.js_errors, app.js_errors


def test_snooze_then_resolve_an_incident_by_hand(app: App, world_a) -> None:
    version = _version(world_a)
    policy = _policy(world_a, name="nightly on time", kind="start", flow_id=version.flow_id, threshold_seconds=900)
    incident = _incident(policy, version)
    page = app.new_page()
    log_in(page, world_a.users[Role.DEVELOPER].email, PASSWORD)
    page.goto(f"/w/acme/alerts/incidents/{incident.pk}")
    expect(page.get_by_test_id("incident-status")).to_have_text("Open")

    page.get_by_role("button", name="Snooze 1 h").click()
    expect(page.get_by_text("Notifications snoozed for 1 h.")).to_be_visible()
    expect(page.get_by_test_id("incident-status")).to_have_text(re.compile(r"· snoozed$"))
    expect(page.get_by_test_id("incident-event").last).to_have_attribute("data-kind", "snoozed")
    with rls_bypass():
        incident.refresh_from_db()
    assert incident.snoozed_until is not None
    assert timedelta(minutes=59) < incident.snoozed_until - timezone.now() <= timedelta(minutes=60)

    # resolving asks once more
    page.get_by_role("button", name="Resolve", exact=True).click()
    page.get_by_role("button", name="Resolve incident").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("Resolved")
    expect(page.get_by_test_id("incident-actions")).to_have_count(0)
    expect(page.get_by_test_id("incident-event").last).to_have_attribute("data-kind", "resolved")

    # the list: gone from Active, listed under Resolved
    page.get_by_role("navigation", name="Alerts").get_by_role("link", name="Incidents").click()
    expect(page.get_by_text("No active incidents: every SLA holds.")).to_be_visible()
    page.get_by_role("button", name="Resolved").click()
    expect(page).to_have_url(re.compile(r"/alerts/incidents\?status=resolved$"))
    row = page.get_by_test_id("incident-row")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("incident-status")).to_have_text("Resolved")
    with rls_bypass():
        actions = set(AuditLogEntry.all_objects.filter(workspace=world_a.workspace).values_list("action", flat=True))
    assert {"incident.snoozed", "incident.resolved"} <= actions
    assert not app.js_errors, app.js_errors


# --- a policy through the form --------------------------------------------------------------------


def test_create_a_start_policy_through_the_form(app: App, world_a) -> None:
    flow = _version(world_a).flow
    _version(world_a, name="weekly")
    page = app.new_page()
    log_in(page, world_a.users[Role.DEVELOPER].email, PASSWORD)
    page.goto("/w/acme/alerts/policies")
    expect(page.get_by_text("No SLA policies yet.")).to_be_visible()

    page.get_by_role("button", name="New policy").click()
    form = page.get_by_role("form", name="New SLA policy")
    form.get_by_label("Name").fill("nightly on time")
    expect(form.get_by_label("Kind")).to_have_value("start")
    # the whole workspace first: the preview lists both flows
    preview = page.get_by_test_id("policy-preview")
    expect(preview.get_by_test_id("preview-flow")).to_have_count(2)
    # then one flow: the preview follows
    form.get_by_label("Scope").select_option("flow")
    form.get_by_label("Flow", exact=True).select_option(label="nightly")
    expect(preview.get_by_test_id("preview-flow")).to_have_count(1)
    expect(preview).to_contain_text("nightly")
    expect(preview.get_by_test_id("preview-count")).to_have_text("1 flow covered.")

    # a threshold under a minute: the server's answer shows next to the field, nothing is saved
    form.get_by_label("Threshold", exact=True).fill("0.5")
    form.get_by_role("button", name="Create policy").click()
    threshold_error = form.get_by_test_id("field-error")
    expect(threshold_error).to_have_text(re.compile(r"At least 60 seconds"))
    expect(form.get_by_label("Threshold", exact=True)).to_have_attribute("aria-invalid", "true")
    with rls_bypass():
        assert not SlaPolicy.all_objects.filter(workspace=world_a.workspace).exists()

    # fixed: 2 hours
    form.get_by_label("Threshold", exact=True).fill("2")
    form.get_by_label("Threshold unit").select_option("hours")
    form.get_by_label("Severity").select_option("warning")
    form.get_by_role("button", name="Create policy").click()
    expect(page.get_by_text("Policy “nightly on time” created.")).to_be_visible()
    row = page.get_by_test_id("policy-row").filter(has_text="nightly on time")
    expect(row.get_by_test_id("policy-threshold")).to_have_text("start within 2 h")
    expect(row).to_contain_text("Warning")
    with rls_bypass():
        policy = SlaPolicy.all_objects.get(workspace=world_a.workspace, name="nightly on time")
        assert (policy.kind, policy.flow_id, policy.threshold_seconds, policy.severity) == (
            "start", flow.pk, 7200, "warning")

    # pause it, then delete it (confirming), each audited
    row.get_by_role("button", name="Pause nightly on time").click()
    expect(row.get_by_test_id("policy-status")).to_have_text("Paused")
    row.get_by_role("button", name="Delete nightly on time").click()
    row.get_by_role("button", name="Delete policy").click()
    expect(page.get_by_text("Policy “nightly on time” deleted.")).to_be_visible()
    expect(page.get_by_test_id("policy-row")).to_have_count(0)
    with rls_bypass():
        actions = set(AuditLogEntry.all_objects.filter(workspace=world_a.workspace).values_list("action", flat=True))
    assert {"sla_policy.created", "sla_policy.paused", "sla_policy.deleted"} <= actions
    assert not app.js_errors, app.js_errors


def test_a_duration_policy_previews_each_flows_p95(app: App, world_a) -> None:
    version = _version(world_a)
    start = timezone.now() - timedelta(days=1)
    for minutes in (10, 11, 12, 13, 14, 20):
        run_start = start + timedelta(minutes=minutes * 3)
        FlowRunFactory(flow_version=version, state_type="COMPLETED", state_name="Completed", start_time=run_start,
                       end_time=run_start + timedelta(minutes=minutes))
    page = app.new_page()
    log_in(page, world_a.users[Role.DEVELOPER].email, PASSWORD)
    page.goto("/w/acme/alerts/policies")
    page.get_by_role("button", name="New policy").click()
    form = page.get_by_role("form", name="New SLA policy")
    form.get_by_label("Kind").select_option("duration")
    expect(form.get_by_label("History size")).to_have_value("20")
    expect(form.get_by_label("Predictive warning")).not_to_be_checked()
    expect(form.get_by_label("Consecutive failures")).to_have_count(0)
    p95 = page.get_by_test_id("policy-preview").get_by_test_id("preview-p95")
    expect(p95).to_have_text(re.compile(r"^p95 \d+ min( \d+ s)? over 6 successful runs$"))


# --- incidents, live ------------------------------------------------------------------------------


class AsgiServer(LiveServer):
    def env(self) -> dict[str, str]:
        return {**super().env(), "FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS": "1"}


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = AsgiServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("alerts-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def _mark_document(page: Page) -> None:
    page.evaluate("() => { window.__sameDocument = true; }")


def _same_document(page: Page) -> bool:
    return bool(page.evaluate("() => window.__sameDocument === true"))


def test_an_incident_appears_live_and_is_acknowledged(live_app: App, world: WorkspaceWorld) -> None:
    version = _version(world)
    _policy(world, name="nightly on time", kind="start", flow_id=version.flow_id, threshold_seconds=300)
    now = timezone.now()
    # A healthy agent covers the run's labels: the run itself is late (an incident about this flow),
    # not a correlated "no agent" cause.
    AgentFactory(workspace=world.workspace, name="laptop", labels=["etl"], last_heartbeat_at=now, last_poll_at=now)
    FlowRunFactory(flow_version=version, name="late-run", labels=["etl"], scheduled_start=now - timedelta(minutes=10))

    page = live_app.new_page()
    log_in(page, world.users[Role.DEVELOPER].email, PASSWORD)
    page.goto("/w/acme/alerts/incidents")
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    expect(page.get_by_text("No active incidents: every SLA holds.")).to_be_visible()
    _mark_document(page)

    # the evaluator's tick finds the run late and opens one incident
    assert evaluate_sla_policies(now=timezone.now()) == 1
    row = page.get_by_test_id("incident-row")
    expect(row).to_have_count(1, timeout=LIVE)
    expect(row.get_by_test_id("incident-status")).to_have_text("Open")
    expect(row.get_by_test_id("severity")).to_have_text("Critical")
    expect(row.get_by_test_id("incident-run-count")).to_have_text("1")
    assert _same_document(page), "the incidents page was reloaded"

    # its page: the cause, the run, the timeline; acknowledge it
    with rls_bypass():
        incident = Incident.all_objects.get(workspace=world.workspace)
    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(rf"/w/acme/alerts/incidents/{incident.pk}$"))
    expect(page.get_by_test_id("incident-cause")).to_have_text(incident.cause)
    expect(page.get_by_test_id("incident-run")).to_contain_text("late-run")
    expect(page.get_by_test_id("incident-event").first).to_have_attribute("data-kind", "opened")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("Acknowledged")
    expect(page.get_by_text("Incident acknowledged.")).to_be_visible()
    expect(page.get_by_test_id("incident-timeline")).to_contain_text("Acknowledged")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.get_by_role("button", name="Snooze 1 h")).to_be_visible()
    with rls_bypass():
        incident.refresh_from_db()
    assert incident.status == "acknowledged"
    assert incident.acknowledged_by == world.users[Role.DEVELOPER].email

    # the run's page links to it; the flow carries a badge in the list and on its page
    page.get_by_test_id("incident-run").get_by_role("link", name="late-run").click()
    badge = page.get_by_test_id("run-alert-badge")
    expect(badge).to_contain_text(incident.title)
    page.get_by_role("link", name="Flows", exact=True).click()
    flow_badge = page.get_by_test_id("flow-item").filter(has_text="nightly").get_by_test_id("flow-alert-badge")
    expect(flow_badge).to_have_text("1 alert")
    expect(flow_badge).to_have_attribute("data-severity", "critical")

    # resolved by hand elsewhere (a teammate): the badge goes away without a reload
    _mark_document(page)
    with workspace_scope([world.workspace.pk]):
        incident_resolve(_as(world, Role.ADMIN), incident)
    expect(flow_badge).to_have_count(0, timeout=LIVE)
    assert _same_document(page)
    assert not live_app.js_errors, live_app.js_errors


# --- channels -------------------------------------------------------------------------------------


def test_webhook_channel_test_notification_reaches_the_receiver_and_the_log(app: App, world_a, settings) -> None:
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    page = app.new_page()
    log_in(page, world_a.users[Role.ADMIN].email, PASSWORD)
    page.goto("/w/acme/alerts/channels")
    expect(page.get_by_text("No notification channels yet.")).to_be_visible()
    expect(page.get_by_text("Nothing sent yet.")).to_be_visible()

    with Receiver() as receiver:
        page.get_by_role("button", name="New channel").click()
        form = page.get_by_role("form", name="New notification channel")
        form.get_by_label("Name").fill("ops hook")
        form.get_by_label("Kind").select_option("webhook")
        form.get_by_label("Webhook URL").fill("not a url")
        form.get_by_role("button", name="Create channel").click()
        expect(form.get_by_test_id("field-error")).to_be_visible()
        form.get_by_label("Webhook URL").fill(receiver.url())
        form.get_by_role("button", name="Create channel").click()

        # the signing secret, shown once
        secret = page.get_by_test_id("channel-secret")
        expect(secret).to_have_text(re.compile(r"\S{16,}"))
        receiver.secret = secret.inner_text().strip()
        page.get_by_role("button", name="Done").click()
        expect(page.get_by_test_id("channel-secret")).to_have_count(0)
        row = page.get_by_test_id("channel-row").filter(has_text="ops hook")
        expect(row).to_contain_text("Webhook")
        expect(row.get_by_test_id("channel-status")).to_have_text("Enabled")

        # Admins can show it again
        row.get_by_role("button", name="Show signing secret of ops hook").click()
        expect(page.get_by_test_id("channel-secret")).to_have_text(receiver.secret)
        page.get_by_role("button", name="Done").click()

        # the test notification arrives signed; the page says so and logs it
        row.get_by_role("button", name="Send test notification to ops hook").click()
        expect(page.get_by_test_id("channel-notice")).to_have_text("Test notification delivered (HTTP 200).")
        assert [r.status for r in receiver.requests] == [200], [(r.status, r.reason) for r in receiver.requests]
        log = page.get_by_test_id("delivery-row")
        expect(log).to_have_count(1)
        expect(log.get_by_test_id("delivery-status")).to_have_text("delivered")
        expect(log).to_contain_text("test")
        expect(log.get_by_test_id("delivery-code")).to_have_text("200")
        log.get_by_role("button", name="Show attempts").click()
        expect(page.get_by_test_id("attempt-row")).to_have_count(1)
        expect(page.get_by_test_id("attempt-row")).to_contain_text("200")

        # disabled, then deleted
        row.get_by_role("button", name="Disable ops hook").click()
        expect(row.get_by_test_id("channel-status")).to_have_text("Disabled")
        row.get_by_role("button", name="Delete ops hook").click()
        row.get_by_role("button", name="Delete channel").click()
        expect(page.get_by_test_id("channel-row")).to_have_count(0)

    # the audit log's Alerts area has each step in words
    page.get_by_role("link", name="Audit log", exact=True).click()
    page.get_by_label("Area").select_option(label="Alerts")
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(4)
    for words in ("Created a notification channel", "Sent a test notification", "Changed a notification channel",
                  "Deleted a notification channel"):
        expect(rows.filter(has_text=words)).to_have_count(1)
    assert not app.js_errors, app.js_errors
