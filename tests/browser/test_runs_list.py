"""The runs list as a person uses it: filters for flow, state, task tags, labels and dates kept in
the URL (a reload keeps them), numbered pages, one name per state everywhere (the filter's
"Completed" is the badge's "Completed", not "Success"; "AwaitingRetry" reads "Awaiting retry"), and
a run waiting for a retry that no live agent can take says why, is found by a filter, and its
duration does not keep counting."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import Role
from tests.factories import PASSWORD
from tests.orchestration.factories import (
    AgentFactory,
    FlowRunFactory,
    FlowVersionFactory,
    ProjectFactory,
    TaskRunFactory,
)

from .conftest import App, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _rows(page: Page, *names: str) -> None:
    """Wait until the table lists exactly ``names`` (in any order)."""
    rows = page.get_by_test_id("run-row")
    expect(rows).to_have_count(len(names))
    for name in names:
        expect(rows.filter(has=page.get_by_role("link", name=name, exact=True))).to_have_count(1)


def test_filters_live_in_the_url_and_state_names_match(app: App, world_a, world_b) -> None:
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    nightly = FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="nightly")
    hourly = FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="hourly")
    now = timezone.now()
    done = FlowRunFactory(flow_version=nightly, name="done-run", state_type="COMPLETED", state_name="Success",
                          labels=["etl"], scheduled_start=now - timedelta(days=3), start_time=now - timedelta(days=3),
                          end_time=now - timedelta(days=3) + timedelta(seconds=42))
    TaskRunFactory(flow_run=done, tags=["db"])
    FlowRunFactory(flow_version=nightly, name="trigger-run", state_type="FAILED", state_name="TriggerFailed",
                   scheduled_start=now - timedelta(days=1))
    FlowRunFactory(flow_version=hourly, name="hourly-done", state_type="COMPLETED", state_name="Completed",
                   labels=["gpu"], scheduled_start=now)
    their = FlowVersionFactory(flow__project=ProjectFactory(workspace=world_b.workspace),
                               flow__workspace=world_b.workspace, flow__name="nightly")
    FlowRunFactory(flow_version=their, name="their-run", state_type="COMPLETED", state_name="Success")

    page = app.new_page()
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
    page.goto("/w/acme/runs")
    _rows(page, "done-run", "trigger-run", "hourly-done")  # never another workspace's run
    expect(page.get_by_test_id("runs-count")).to_have_text("1–3 of 3")

    # one name per state: a COMPLETED "Success" run reads "Completed", like the filter option
    done_row = page.get_by_test_id("run-row").filter(has_text="done-run")
    expect(done_row.get_by_test_id("state-badge")).to_have_text("Completed")
    trigger_row = page.get_by_test_id("run-row").filter(has_text="trigger-run")
    expect(trigger_row.get_by_test_id("state-badge")).to_have_text("Trigger failed")
    expect(trigger_row.get_by_test_id("state-badge")).to_have_attribute("title", "Failed: Trigger failed")

    page.get_by_label("State", exact=True).select_option(label="Completed")
    _rows(page, "done-run", "hourly-done")
    page.get_by_label("Flow", exact=True).select_option(label="nightly")
    _rows(page, "done-run")
    expect(page).to_have_url(re.compile(r"state=COMPLETED"))
    expect(page).to_have_url(re.compile(rf"flow={nightly.flow.pk}"))

    # a reload (or a shared link) keeps every filter
    page.reload()
    _rows(page, "done-run")
    expect(page.get_by_label("State", exact=True)).to_have_value("type:COMPLETED")

    page.get_by_role("button", name="Clear filters").click()
    _rows(page, "done-run", "trigger-run", "hourly-done")

    # task tags and labels (typed, applied on Enter), then a date range
    page.get_by_label("Task tags", exact=True).fill("db")
    page.get_by_label("Task tags", exact=True).press("Enter")
    _rows(page, "done-run")
    expect(page).to_have_url(re.compile(r"tags=db"))
    page.get_by_label("Task tags", exact=True).fill("")
    page.get_by_label("Labels", exact=True).fill("gpu")
    page.get_by_label("Labels", exact=True).press("Enter")
    _rows(page, "hourly-done")
    page.get_by_role("button", name="Clear filters").click()
    page.get_by_label("Scheduled from", exact=True).fill((now - timedelta(days=2)).astimezone().date().isoformat())
    _rows(page, "trigger-run", "hourly-done")
    page.get_by_label("Scheduled to", exact=True).fill((now - timedelta(days=1)).astimezone().date().isoformat())
    _rows(page, "trigger-run")
    page.reload()
    _rows(page, "trigger-run")
    assert not app.js_errors


def test_numbered_pages_in_the_url(app: App, world_a) -> None:
    version = FlowVersionFactory(flow__project=ProjectFactory(workspace=world_a.workspace),
                                 flow__workspace=world_a.workspace, flow__name="many")
    start = timezone.now()
    for i in range(30):
        FlowRunFactory(flow_version=version, name=f"run-{i:02}", created_at=start + timedelta(seconds=i))

    page = app.new_page()
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
    page.goto("/w/acme/runs")
    expect(page.get_by_test_id("run-row")).to_have_count(25)
    expect(page.get_by_test_id("runs-page")).to_have_text("Page 1 of 2")
    expect(page.get_by_role("button", name="Newer")).to_be_disabled()
    page.get_by_role("button", name="Older").click()
    _rows(page, *(f"run-{i:02}" for i in range(5)))  # the five oldest
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.get_by_test_id("runs-count")).to_have_text("26–30 of 30")
    page.reload()
    expect(page.get_by_test_id("runs-page")).to_have_text("Page 2 of 2")
    _rows(page, *(f"run-{i:02}" for i in range(5)))
    page.go_back()
    expect(page.get_by_test_id("run-row")).to_have_count(25)
    expect(page.get_by_test_id("runs-page")).to_have_text("Page 1 of 2")


def test_a_retry_no_agent_can_take_says_why_and_its_clock_stops(app: App, world_a) -> None:
    version = FlowVersionFactory(flow__project=ProjectFactory(workspace=world_a.workspace),
                                 flow__workspace=world_a.workspace, flow__name="train")
    now = timezone.now()
    # attempt 1 ran for five minutes, failed, and has waited for its retry since
    FlowRunFactory(flow_version=version, name="gpu-retry", state_type="SCHEDULED", state_name="AwaitingRetry",
                   labels=["gpu"], attempt=2, scheduled_start=now - timedelta(minutes=1),
                   start_time=now - timedelta(minutes=10), state_timestamp=now - timedelta(minutes=5))
    FlowRunFactory(flow_version=version, name="cpu-run", state_type="SCHEDULED", labels=[], scheduled_start=now)
    AgentFactory(workspace=world_a.workspace, labels=["cpu"], last_heartbeat_at=now, last_poll_at=now)

    page = app.new_page()
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
    page.goto("/w/acme/runs")
    row = page.get_by_test_id("run-row").filter(has_text="gpu-retry")
    expect(row.get_by_test_id("state-badge")).to_have_text("Awaiting retry")
    why = row.get_by_test_id("no-live-agent")
    expect(why).to_have_text("No live agent can take it")
    expect(why).to_have_attribute("title", re.compile(r"carries all of this run's labels \(gpu\).*--label gpu"))
    # the unlabelled run is covered by the healthy agent: no warning
    expect(page.get_by_test_id("run-row").filter(has_text="cpu-run").get_by_test_id("no-live-agent")).to_have_count(0)

    # its duration is the five minutes it ran, and stays so while it waits
    duration = row.locator("td[data-label='Duration']")
    expect(duration).to_have_text("5m 0s")
    page.wait_for_timeout(2_000)  # a counting clock would have moved by now
    expect(duration).to_have_text("5m 0s")

    page.get_by_label("State", exact=True).select_option(label="Waiting: no live agent can take it")
    _rows(page, "gpu-retry")
    expect(page).to_have_url(re.compile(r"waiting=no-agent"))
    page.get_by_label("State", exact=True).select_option(label="Awaiting retry")
    _rows(page, "gpu-retry")
    assert not app.js_errors


def test_a_slow_answer_for_an_older_filter_never_replaces_the_newer_one(app: App, world_a) -> None:
    version = FlowVersionFactory(flow__project=ProjectFactory(workspace=world_a.workspace),
                                 flow__workspace=world_a.workspace, flow__name="nightly")
    FlowRunFactory(flow_version=version, name="done-run", state_type="COMPLETED", state_name="Completed")
    FlowRunFactory(flow_version=version, name="failed-run", state_type="FAILED", state_name="Failed")
    page = app.new_page()
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
    page.goto("/w/acme/runs")
    _rows(page, "done-run", "failed-run")

    # the answer for "Completed" is held back until the one for "Failed", asked later, has been shown
    held = []

    def hold_completed(route, request):  # type: ignore[no-untyped-def]
        if "FlowRuns" in (request.post_data or "") and "COMPLETED" in (request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/graphql", hold_completed)
    page.get_by_label("State", exact=True).select_option(label="Completed")
    page.wait_for_function("() => true")  # let the first request leave
    page.get_by_label("State", exact=True).select_option(label="Failed")
    _rows(page, "failed-run")
    assert len(held) == 1
    with page.expect_response(lambda r: "graphql" in r.url and "COMPLETED" in (r.request.post_data or "")):
        held[0].continue_()
    page.evaluate("() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 50)))")
    _rows(page, "failed-run")  # still the newer filter's runs
    expect(page).to_have_url(re.compile(r"state=FAILED"))
