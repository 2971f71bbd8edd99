"""The web app under its Content-Security-Policy (core/security_headers.py), in headless Chromium
against the real ASGI server: every page loads and works — the run schematic (React Flow and ELK),
the live-updates socket, Swagger UI at /api/docs/ — and the browser reports no violation. The
policy is really enforced: a script injected into the page does not run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import Role
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import PASSWORD
from tests.orchestration.factories import FlowRunFactory, ProjectFactory, TaskRunFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory
from tests.sdk.conftest import LiveServer

from .conftest import App, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Records what the browser reports; added through the DevTools protocol, which the policy does not
# govern, before any of the page's own scripts run.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__violations.push(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} (${where})`);
});
"""


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("csp-server"))
    server.start(timeout=90)  # a loaded machine (two test workers, Chromium) can take a while
    yield server
    server.stop()


@pytest.fixture
def world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


@pytest.fixture
def run_id(world: WorkspaceWorld) -> str:
    project = ProjectFactory(workspace=world.workspace, name="etl")
    version = DagFlowVersionFactory(flow__project=project, flow__workspace=world.workspace, flow__name="nightly")
    now = timezone.now()
    run = FlowRunFactory(flow_version=version, name="tidy-otter", state_type="FAILED", state_name="Failed",
                         start_time=now - timedelta(minutes=3), end_time=now - timedelta(minutes=1))
    for task in version.tasks:
        TaskRunFactory(flow_run=run, task_key=task["key"], state_type="COMPLETED", state_name="Success",
                       start_time=now - timedelta(minutes=3), end_time=now - timedelta(minutes=2))
    return str(run.pk)


class Watched:
    """A page and everything the browser said about the policy while it was open."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.sockets: list[str] = []
        page.on("console", lambda message: self.console.append(message.text))
        page.on("websocket", lambda socket: self.sockets.append(socket.url))
        page.context.add_init_script(RECORD_VIOLATIONS)

    def open(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and response.ok, path
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy, policy

    def violations(self) -> list[str]:
        reported = self.page.evaluate("window.__violations || []")
        logged = [text for text in self.console if "Content Security Policy" in text]
        return [*reported, *logged]


def test_every_page_works_under_the_policy_without_a_violation(
    live_app: App, world: WorkspaceWorld, run_id: str
) -> None:
    watched = Watched(live_app.new_page())
    page = watched.page
    found: list[str] = []

    watched.open("/account/login")
    log_in(page, world.users[Role.OWNER].email, PASSWORD)
    for path, shown in (
        ("/w/acme/dashboard", "Failing runs"),
        ("/w/acme/runs", "tidy-otter"),
        (f"/w/acme/runs/{run_id}?tab=timeline", "tidy-otter"),
        (f"/w/acme/runs/{run_id}?tab=logs", "tidy-otter"),
        ("/w/acme/service-accounts", "Service accounts"),
        ("/w/acme/api-keys", "API keys"),
        ("/w/acme/settings", "Settings"),
    ):
        watched.open(path)
        expect(page.locator("main").last).to_contain_text(shown)
        found += [f"{path}: {v}" for v in watched.violations()]

    # The schematic: React Flow draws the nodes ELK laid out (ELK runs in the page, no worker).
    watched.open(f"/w/acme/runs/{run_id}?tab=schematic")
    expect(page.locator(".react-flow__node").first).to_be_visible()
    found += [f"schematic: {v}" for v in watched.violations()]
    # The live-updates socket connected (connect-src allows this origin's ws://).
    assert any(url.startswith(live_app.url.replace("http://", "ws://")) for url in watched.sockets), watched.sockets

    # Swagger UI: its start-up script is a file; it fetches the schema and lists the operations.
    watched.open("/api/docs/")
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    found += [f"/api/docs/: {v}" for v in watched.violations()]

    assert found == [], "\n".join(found)
    assert not live_app.js_errors, live_app.js_errors


def test_a_script_injected_into_the_page_does_not_run(live_app: App) -> None:
    watched = Watched(live_app.new_page())
    watched.open("/account/login")
    ran = watched.page.evaluate("""() => {
        window.__injected = false;
        const script = document.createElement('script');
        script.textContent = 'window.__injected = true';
        document.body.appendChild(script);
        return window.__injected;
    }""")
    assert ran is False
    watched.page.wait_for_function("window.__violations.length > 0")
    assert any("script-src" in v for v in watched.violations()), watched.violations()
