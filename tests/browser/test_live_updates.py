"""Live updates in the browser, over a real websocket: a person keeps a run page open while an agent
(driven here through the REST agent protocol with the workspace's agent key) claims the run, starts
it, reports task states and log lines and completes it. The page follows every step without a
reload. The connection indicator says "Live", "Reconnecting…" while the server is away, and "Live"
again once it is back; what changed meanwhile is on the page.

Unlike the other browser tests, these run against the real ASGI server (uvicorn subprocess, the same
one the SDK tests use, sharing the test database and Redis), because pytest-django's live server
speaks WSGI only and has no websockets.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from playwright.sync_api import Page, expect

from accounts.models import Role
from orchestration.models import FlowVersion
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import PASSWORD
from tests.orchestration.factories import ProjectFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory
from tests.sdk.conftest import LiveServer

from .conftest import App, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Longer than a live update needs (milliseconds) but shorter than the 3 s fallback poll of the run
# page, so these assertions only pass if the socket delivered the change.
LIVE = 2_500


# A log budget a test can exceed with one batch (the default is 2,000 lines per second and socket).
LOG_LINES_PER_SECOND = 50


class AsgiServer(LiveServer):
    def env(self) -> dict[str, str]:
        return {**super().env(), "FLOWDECK_LIVE_LOG_LINES_PER_SECOND": str(LOG_LINES_PER_SECOND)}


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = AsgiServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("live-updates-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


class Agent:
    """An agent speaking the REST protocol (docs/agent-protocol.md) with the workspace's agent key."""

    def __init__(self, server_url: str, world: WorkspaceWorld) -> None:
        self.base = f"{server_url}/api/v1/workspaces/{world.workspace.slug}/"
        self.http = httpx.Client(headers={"Authorization": f"Bearer {world.keys[Role.AGENT]}"}, timeout=10)
        self.id = self.post("agents/", {"name": "laptop", "type": "process", "labels": ["etl"], "version": "1.0"})["id"]
        self.attempt = 0

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(self.base + path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def claim(self, run_id: str) -> None:
        [claimed] = self.post(f"agents/{self.id}/claim/", {"limit": 1, "lease_seconds": 60})["results"]
        assert claimed["id"] == run_id
        self.attempt = claimed["attempt"]

    def set_state(self, run_id: str, type_: str, name: str = "") -> None:
        state = {"type": type_, **({"name": name} if name else {})}
        answer = self.post(f"flow-runs/{run_id}/set-state/", {"state": state, "attempt": self.attempt})
        assert answer["status"] == "ACCEPT", answer

    def tasks(self, run_id: str, *reports: tuple[str, str]) -> None:
        body = {"attempt": self.attempt, "reports": [{"task_key": k, "state": {"type": t}} for k, t in reports]}
        results = self.post(f"flow-runs/{run_id}/task-runs/", body)["results"]
        assert [r["status"] for r in results] == ["ACCEPT"] * len(reports), results

    def logs(self, run_id: str, *messages: str, first: int = 1) -> None:
        lines = [{"sequence": first + i, "level": 20, "timestamp": "2026-01-01T00:00:00Z", "message": m,
                  "logger": "etl"} for i, m in enumerate(messages)]
        assert self.post(f"flow-runs/{run_id}/logs/", {"lines": lines})["count"] == len(messages)

    def close(self) -> None:
        self.http.close()


def _quick_run(server_url: str, world: WorkspaceWorld, flow_id: str) -> str:
    response = httpx.post(
        f"{server_url}/api/v1/workspaces/{world.workspace.slug}/flow-runs/",
        json={"flow": flow_id, "parameters": {"date": "2026-03-01"}},
        headers={"Authorization": f"Bearer {world.keys[Role.DEVELOPER]}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _flow(world: WorkspaceWorld) -> str:
    project = ProjectFactory(workspace=world.workspace, name="etl")
    version = cast(FlowVersion, DagFlowVersionFactory(flow__project=project, flow__workspace=world.workspace,
                                                      flow__name="nightly"))
    return str(version.flow_id)


def _mark_document(page: Page) -> None:
    """Leave a marker in the page's JS state: it is gone if the page reloads or navigates."""
    page.evaluate("() => { window.__sameDocument = true; }")


def _same_document(page: Page) -> bool:
    return bool(page.evaluate("() => window.__sameDocument === true"))


def test_run_page_follows_a_run_from_scheduled_to_completed_without_reload(
    live_app: App, asgi_server: LiveServer, world: WorkspaceWorld
) -> None:
    flow_id = _flow(world)
    page = live_app.new_page()
    log_in(page, world.users[Role.VIEWER].email, PASSWORD)
    run_id = _quick_run(asgi_server.url, world, flow_id)

    page.goto(f"/w/acme/runs/{run_id}")
    expect(page.get_by_test_id("run-state")).to_have_text("Scheduled")
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    expect(page.get_by_text("No task has started yet.")).to_be_visible()
    _mark_document(page)

    agent = Agent(asgi_server.url, world)
    try:
        # claimed: Pending; started: Running
        agent.claim(run_id)
        expect(page.get_by_test_id("run-state")).to_have_text("Pending", timeout=LIVE)
        agent.set_state(run_id, "RUNNING", "Running")
        expect(page.get_by_test_id("run-state")).to_have_text("Running", timeout=LIVE)

        # task runs appear with their state, and the schematic colours its nodes (each a tab of
        # the run page; switching tabs reads nothing, so what they show came live)
        agent.tasks(run_id, ("extract", "RUNNING"))
        page.get_by_role("tab", name="Task runs").click()
        extract = page.get_by_test_id("task-run-row").filter(has_text="extract")
        expect(extract).to_contain_text("Running", timeout=LIVE)
        page.get_by_role("tab", name="Schematic").click()
        expect(page.locator('[data-testid="dag-node"][aria-label="extract"]')).to_have_attribute(
            "data-state", "RUNNING", timeout=LIVE)
        agent.tasks(run_id, ("extract", "COMPLETED"), ("transform", "RUNNING"), ("report", "RUNNING"))
        expect(page.locator('[data-testid="dag-node"][aria-label="extract"]')).to_have_attribute(
            "data-state", "COMPLETED", timeout=LIVE)
        page.get_by_role("tab", name="Task runs").click()
        expect(extract).to_contain_text("Completed", timeout=LIVE)
        expect(page.get_by_test_id("task-run-row")).to_have_count(3, timeout=LIVE)

        # the timeline: a bar per task run, coloured by its state
        page.get_by_role("tab", name="Timeline").click()
        expect(page.get_by_test_id("gantt-bar")).to_have_count(3)
        transform_bar = page.locator('[data-task-key="transform"] [data-testid="gantt-bar"]')
        expect(transform_bar).to_have_attribute("data-state", "RUNNING")
        expect(page.locator('[data-task-key="extract"] [data-testid="gantt-bar"]')).to_have_attribute(
            "data-state", "COMPLETED")

        # log lines show up in the tail
        page.get_by_role("tab", name="Logs").click()
        agent.logs(run_id, "loaded 42 rows", "transforming")
        expect(page.get_by_test_id("logs")).to_contain_text("loaded 42 rows", timeout=LIVE)
        agent.logs(run_id, "report sent", first=3)
        expect(page.get_by_test_id("logs")).to_contain_text("report sent", timeout=LIVE)

        # the rest completes, then the run
        agent.tasks(run_id, ("transform", "COMPLETED"), ("load", "RUNNING"), ("load", "COMPLETED"),
                    ("report", "COMPLETED"))
        page.get_by_role("tab", name="Task runs").click()
        expect(page.get_by_test_id("task-run-row").filter(has_text="load")).to_contain_text("Completed", timeout=LIVE)
        page.get_by_role("tab", name="Timeline").click()
        expect(transform_bar).to_have_attribute("data-state", "COMPLETED")
        expect(page.get_by_test_id("gantt-bar")).to_have_count(4)
        agent.set_state(run_id, "COMPLETED", "Success")
        # "Success" restates COMPLETED: it reads "Completed", as the runs list's filter calls it
        expect(page.get_by_test_id("run-state")).to_have_text("Completed", timeout=LIVE)
        expect(page.get_by_test_id("run-state").get_by_test_id("state-badge")).to_have_attribute(
            "data-state-type", "COMPLETED")
        page.get_by_role("tab", name="Overview").click()
        expect(page.get_by_test_id("state-timeline")).to_contain_text("Running")
    finally:
        agent.close()

    assert _same_document(page), "the run page was reloaded"
    assert not live_app.js_errors, live_app.js_errors


def test_lists_and_dashboard_update_live(live_app: App, asgi_server: LiveServer, world: WorkspaceWorld) -> None:
    flow_id = _flow(world)
    page = live_app.new_page()
    log_in(page, world.users[Role.VIEWER].email, PASSWORD)

    # the runs list shows a run created after the page opened, then its new state
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    expect(page.get_by_text("No runs yet.")).to_be_visible()
    _mark_document(page)
    run_id = _quick_run(asgi_server.url, world, flow_id)
    row = page.get_by_test_id("run-row")
    expect(row).to_have_count(1, timeout=LIVE)
    expect(row).to_contain_text("Scheduled")
    agent = Agent(asgi_server.url, world)
    try:
        agent.claim(run_id)
        agent.set_state(run_id, "RUNNING", "Running")
        expect(row).to_contain_text("Running", timeout=LIVE)

        # the agents page shows the agent that registered
        page.get_by_role("link", name="Agents", exact=True).click()
        expect(page.get_by_test_id("agent-row").filter(has_text="laptop")).to_be_visible()

        # the dashboard counts the run as Running, then as failed once it fails
        page.get_by_role("link", name="Dashboard", exact=True).click()
        expect(page.get_by_test_id("state-counts")).to_contain_text("Running")
        agent.set_state(run_id, "FAILED", "Failed")
        expect(page.get_by_test_id("state-counts")).to_contain_text("Failed", timeout=LIVE)
    finally:
        agent.close()
    assert _same_document(page), "a page was reloaded"
    assert not live_app.js_errors, live_app.js_errors


def test_indicator_shows_reconnecting_while_the_server_is_away(
    live_app: App, asgi_server: LiveServer, world: WorkspaceWorld
) -> None:
    flow_id = _flow(world)
    run_id = _quick_run(asgi_server.url, world, flow_id)
    page = live_app.new_page()
    log_in(page, world.users[Role.VIEWER].email, PASSWORD)
    page.goto(f"/w/acme/runs/{run_id}")
    indicator = page.get_by_test_id("live-status")
    expect(indicator).to_have_text("Live")
    expect(page.get_by_test_id("run-state")).to_have_text("Scheduled")
    _mark_document(page)

    asgi_server.stop()
    try:
        expect(indicator).to_have_text("Reconnecting…")
    finally:
        asgi_server.start()  # same port: the page reconnects by itself
    expect(indicator).to_have_text("Live", timeout=20_000)

    # a change after the reconnection arrives live again (the run subscription was renewed)
    agent = Agent(asgi_server.url, world)
    try:
        agent.claim(run_id)
        agent.set_state(run_id, "RUNNING", "Running")
        agent.tasks(run_id, ("extract", "RUNNING"))
        expect(page.get_by_test_id("run-state")).to_have_text("Running", timeout=LIVE)
        page.get_by_role("tab", name="Task runs").click()
        expect(page.get_by_test_id("task-run-row").filter(has_text="extract")).to_contain_text("Running", timeout=LIVE)
    finally:
        agent.close()
    assert _same_document(page), "the run page was reloaded"
    assert re.search(rf"/runs/{run_id}\?tab=tasks$", page.url)
    # Chromium reports the refused reconnection attempts as console errors, not page errors.
    assert not live_app.js_errors, live_app.js_errors


def test_a_log_flood_shows_the_lines_dropped_marker(
    live_app: App, asgi_server: LiveServer, world: WorkspaceWorld
) -> None:
    flow_id = _flow(world)
    run_id = _quick_run(asgi_server.url, world, flow_id)
    page = live_app.new_page()
    log_in(page, world.users[Role.VIEWER].email, PASSWORD)
    page.goto(f"/w/acme/runs/{run_id}?tab=logs")
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    agent = Agent(asgi_server.url, world)
    try:
        agent.claim(run_id)
        agent.set_state(run_id, "RUNNING", "Running")
        expect(page.get_by_test_id("run-state")).to_have_text("Running", timeout=LIVE)
        # more lines in one go than the socket may announce: the page says some were dropped
        flood = 10 * LOG_LINES_PER_SECOND
        agent.logs(run_id, *[f"flood line {n}" for n in range(1, flood + 1)])
        marker = page.get_by_test_id("logs-dropped")
        expect(marker).to_contain_text("lines dropped — reload to see all", timeout=LIVE)
        expect(marker).to_contain_text(str(flood))
        # reloading the logs shows every line, and the marker goes away
        marker.get_by_role("button", name="Reload logs").click()
        expect(page.get_by_test_id("logs")).to_contain_text(f"flood line {flood}")
        expect(page.get_by_test_id("logs").locator("div")).to_have_count(flood)
        expect(marker).to_have_count(0)
    finally:
        agent.close()
    assert not live_app.js_errors, live_app.js_errors
