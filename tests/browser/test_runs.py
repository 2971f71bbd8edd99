"""The issue's browser test for runs: a person opens a flow, sees its schematic, starts a quick run
from the form built from the parameter schema, lands on the run page showing Scheduled, cancels it
and sees Cancelled (a run no agent holds is cancelled at once)."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import FlowRun
from tests.factories import PASSWORD
from tests.orchestration.factories import AgentFactory, ProjectFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory

from .conftest import App, log_in
from .test_run_views import EDGES_UNDER_NODES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_quick_run_then_cancel(app: App, world_a) -> None:
    # given a project with a flow whose version has a four-task DAG and three typed parameters
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    flow = DagFlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="nightly").flow
    developer = world_a.users[Role.DEVELOPER]
    page = app.new_page()
    log_in(page, developer.email, PASSWORD)

    # the flow page shows the schematic: one node per task, one edge per dependency
    page.get_by_role("link", name="Flows", exact=True).click()
    page.get_by_role("link", name="nightly").click()
    expect(page).to_have_url(re.compile(rf"/w/acme/flows/{flow.pk}$"))
    expect(page.get_by_role("heading", name="nightly")).to_be_visible()
    expect(page.get_by_test_id("dag-node")).to_have_count(4)
    expect(page.get_by_test_id("dag-edge")).to_have_count(3)
    expect(page.get_by_test_id("dag")).to_contain_text("Transform")
    # laid out by the graph-layout library, as on a run's page: no edge runs under a node
    drawn = page.evaluate(EDGES_UNDER_NODES)
    assert (drawn["nodes"], drawn["edges"], drawn["hits"]) == (4, 3, []), drawn

    # the quick-run form has one input per parameter, with defaults and the required marker
    page.get_by_role("link", name="Quick run").click()
    expect(page.get_by_role("heading", name="Run nightly")).to_be_visible()
    date, limit, dry_run = page.get_by_label("date"), page.get_by_label("limit"), page.get_by_label("dry_run")
    expect(date).to_have_value("")
    expect(date).to_have_attribute("aria-required", "true")
    expect(limit).to_have_value("100")
    expect(dry_run).not_to_be_checked()

    # a missing required parameter is caught before anything is sent
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_text("This parameter is required.")).to_be_visible()

    date.fill("2026-03-01")
    limit.fill("5")
    dry_run.check()
    page.get_by_role("button", name="Start run").click()

    # the run page opens and shows the new run Scheduled
    expect(page).to_have_url(re.compile(r"/w/acme/runs/[0-9a-f-]{36}$"))
    expect(page.get_by_test_id("run-state")).to_have_text("Scheduled")
    expect(page.get_by_test_id("state-timeline")).to_contain_text("Scheduled")
    run_id = page.url.rsplit("/", 1)[1]
    with rls_bypass():
        run = FlowRun.objects.for_workspace(world_a.workspace).get(pk=run_id)
    assert run.parameters == {"date": "2026-03-01", "limit": 5, "dry_run": True}
    assert (run.created_by_kind, run.created_by_user_id, run.flow_id) == ("user", developer.pk, flow.pk)
    expect(page.get_by_role("button", name="Restart")).to_have_count(0)

    # cancel it: no agent holds it, so it is Cancelled at once
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_role("button", name="Cancel run").click()
    expect(page.get_by_test_id("run-state")).to_have_text("Cancelled")
    expect(page.get_by_text("Cancellation requested.")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Restart")).to_be_visible()
    with rls_bypass():
        assert FlowRun.objects.for_workspace(world_a.workspace).get(pk=run_id).state_type == "CANCELLED"

    # the dashboard and the agents page show it and the workspace's agents
    AgentFactory(workspace=world_a.workspace, name="laptop", last_heartbeat_at=timezone.now(),
                 last_poll_at=timezone.now())
    page.get_by_role("link", name="Dashboard", exact=True).click()
    expect(page.get_by_test_id("runs-chart")).to_be_visible()
    expect(page.get_by_test_id("state-counts")).to_contain_text("Cancelled")
    page.get_by_role("link", name="Agents", exact=True).click()
    expect(page.get_by_test_id("agent-row").filter(has_text="laptop")).to_contain_text("Healthy")

    assert not app.js_errors, app.js_errors


def test_a_viewer_sees_runs_but_no_actions(app: App, world_a) -> None:
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    flow = DagFlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="nightly").flow
    page = app.new_page()
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
    page.goto(f"/w/acme/flows/{flow.pk}")
    expect(page.get_by_test_id("dag-node")).to_have_count(4)
    expect(page.get_by_role("link", name="Quick run")).to_have_count(0)
    assert not app.js_errors, app.js_errors
