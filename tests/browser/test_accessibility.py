"""Every page of the web app, at laptop (1440 px) and phone (390 px) width: axe-core finds no
serious or critical accessibility violation (WCAG 2 A/AA: contrast, names, landmarks, …), the page
does not scroll sideways on a phone, and a screenshot of each is written for a reviewer to look at
(``FLOWDECK_SCREENSHOT_DIR``, by default ``var/screenshots/pages``).

axe-core comes from the web app's own dev dependencies (``frontend/app/node_modules``), injected
into each page after it has loaded."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import Role
from orchestration.models import FlowVersion
from tests.factories import PASSWORD
from tests.orchestration.factories import AgentFactory, FlowRunFactory, ProjectFactory, TaskRunFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory

from .conftest import AXE, PHONE, App, axe_problems, log_in, no_horizontal_scroll, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP_WIDE = {"width": 1440, "height": 900}

# (file name, path, text that shows the page has loaded its data)
ANONYMOUS_PAGES = [
    ("login", "/account/login", "Log in"),
    ("signup", "/account/signup", "Sign up"),
    ("password-reset", "/account/password/reset", "Reset"),
    ("not-found", "/no/such/page", "not found"),
]


def _workspace_pages(flow_id: str, run_id: str) -> list[tuple[str, str, str]]:
    return [
        ("dashboard", "/w/acme/dashboard", "Failing runs"),
        ("flows", "/w/acme/flows", "nightly"),
        ("flow", f"/w/acme/flows/{flow_id}", "nightly"),
        ("quick-run", f"/w/acme/flows/{flow_id}/run", "Start run"),
        ("runs", "/w/acme/runs", "tidy-otter"),
        ("run", f"/w/acme/runs/{run_id}", "tidy-otter"),
        ("run-schematic", f"/w/acme/runs/{run_id}?tab=schematic", "tidy-otter"),
        ("run-timeline", f"/w/acme/runs/{run_id}?tab=timeline", "tidy-otter"),
        ("run-logs", f"/w/acme/runs/{run_id}?tab=logs", "tidy-otter"),
        ("run-task-runs", f"/w/acme/runs/{run_id}?tab=tasks", "tidy-otter"),
        ("agents", "/w/acme/agents", "k8s-eu"),
        ("concurrency-limits", "/w/acme/concurrency-limits", "Concurrency limits"),
        ("incidents", "/w/acme/alerts/incidents", "Incidents"),
        ("sla-policies", "/w/acme/alerts/policies", "SLA"),
        ("channels", "/w/acme/alerts/channels", "channel"),
        ("team", "/w/acme/team", "owner@acme.example.com"),
        ("service-accounts", "/w/acme/service-accounts", "Service accounts"),
        ("api-keys", "/w/acme/api-keys", "API keys"),
        ("audit-log", "/w/acme/audit-log", "Audit log"),
        ("settings", "/w/acme/settings", "Settings"),
        ("billing", "/w/acme/billing", "Usage this period"),
        ("new-workspace", "/workspaces/new", "workspace"),
        ("account", "/account", "Sign out everywhere"),
    ]


def _check(page: Page, name: str, path: str, ready: str, width: str) -> list[str]:
    page.goto(path)
    expect(page.locator("main, body").last).to_contain_text(re.compile(re.escape(ready), re.IGNORECASE))
    expect(page.locator(".spinner, [aria-busy='true']")).to_have_count(0)
    problems = [f"{name} @ {width}: {v}" for v in axe_problems(page)]
    if width == "390" and not no_horizontal_scroll(page):
        problems.append(f"{name} @ 390: the page scrolls sideways")
    screenshot(page, f"{name}-{width}")
    return problems


@pytest.fixture
def seeded(world_a) -> Iterator[tuple[str, str, FlowVersion]]:  # type: ignore[no-untyped-def]
    """A flow with a DAG, a finished run with task runs, a waiting run and a healthy agent."""
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    version = DagFlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="nightly")
    now = timezone.now()
    run = FlowRunFactory(flow_version=version, name="tidy-otter", state_type="FAILED", state_name="Failed",
                         start_time=now - timedelta(minutes=3), end_time=now - timedelta(minutes=1))
    for task in version.tasks:
        TaskRunFactory(flow_run=run, task_key=task["key"], state_type="COMPLETED", state_name="Success",
                       start_time=now - timedelta(minutes=3), end_time=now - timedelta(minutes=2))
    FlowRunFactory(flow_version=version, name="eager-lynx", state_type="SCHEDULED", labels=["gpu"])
    AgentFactory(workspace=world_a.workspace, name="k8s-eu", labels=["eu"], last_heartbeat_at=now, last_poll_at=now)
    yield str(version.flow.pk), str(run.pk), version


def test_every_page_is_accessible_at_both_widths(app: App, world_a, seeded) -> None:
    assert AXE.exists(), "axe-core is missing: run npm ci in frontend/app"
    flow_id, run_id, _version = seeded
    problems: list[str] = []
    for width, viewport in (("1440", LAPTOP_WIDE), ("390", PHONE)):
        anonymous = app.new_page(viewport)
        for name, path, ready in ANONYMOUS_PAGES:
            problems += _check(anonymous, name, path, ready, width)
        page = app.new_page(viewport)
        log_in(page, world_a.users[Role.OWNER].email, PASSWORD)
        for name, path, ready in _workspace_pages(flow_id, run_id):
            problems += _check(page, name, path, ready, width)
    assert problems == [], "\n".join(problems)
    assert not app.js_errors, app.js_errors


def test_the_first_tab_offers_to_skip_to_the_content(app: App, world_a) -> None:
    page = app.new_page()
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
    page.goto("/w/acme/runs")
    expect(page.get_by_role("heading", name="Flow runs")).to_be_visible()
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).not_to_be_in_viewport()  # out of sight until a keyboard reaches it
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    expect(page).to_have_url(re.compile(r"/w/acme/runs$"))  # no "#main" left in the address
    page.keyboard.press("Tab")  # the next stop is inside the content, past the header
    assert page.evaluate("() => document.getElementById('main').contains(document.activeElement)")


def test_dashboard_tables_keep_run_names_whole_at_1440(app: App, world_a, seeded) -> None:
    _flow_id, _run_id, version = seeded
    now = timezone.now()
    for name in ("eager-lynx-2", "quiet-heron", "brave-walrus-of-the-north"):
        FlowRunFactory(flow_version=version, name=name, state_type="FAILED", state_name="Failed",
                       start_time=now - timedelta(minutes=2), end_time=now - timedelta(minutes=1))
    page = app.new_page(LAPTOP_WIDE)
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
    page.goto("/w/acme/dashboard")
    failing = page.get_by_role("region", name="Failing runs")
    expect(failing.get_by_test_id("run-row")).to_have_count(4)
    heights = {}
    for link in failing.get_by_test_id("run-row").locator("td[data-label='Run'] a").all():
        box = link.bounding_box()
        line = float(link.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)"))
        assert box is not None
        heights[link.inner_text().replace("\n", "")] = round(box["height"] / line)
    # a short name on one line, a long one broken at its hyphens into at most two: never letter by letter
    assert heights == {"tidy-otter": 1, "eager-lynx-2": 1, "quiet-heron": 1, "brave-walrus-of-the-north": 2}, heights


def test_chart_labels_stay_readable_on_a_phone(app: App, world_a, seeded) -> None:
    """The dashboard chart's time labels keep their size on a phone (they are not squeezed with the
    bars) and do not run into each other; a laptop shows more of them."""
    shown = {}
    for width, viewport in (("1440", LAPTOP_WIDE), ("390", PHONE)):
        page = app.new_page(viewport)
        log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
        page.goto("/w/acme/dashboard")
        expect(page.get_by_test_id("runs-chart")).to_be_visible()
        boxes = [b for b in (label.bounding_box() for label in page.get_by_test_id("chart-time-label").all())
                 if b is not None and b["width"] > 0]
        assert all(b["height"] >= 10 for b in boxes), (width, boxes)
        ordered = sorted(boxes, key=lambda b: b["x"])
        assert all(a["x"] + a["width"] <= b["x"] for a, b in zip(ordered, ordered[1:], strict=False)), (width, ordered)
        assert all(b["x"] >= 0 and b["x"] + b["width"] <= viewport["width"] for b in boxes), (width, boxes)
        shown[width] = len(boxes)
    assert shown["1440"] >= 6 and 3 <= shown["390"] < shown["1440"], shown
