"""Flow of flows in the web app: a child run's page links to its parent run (and the task run that
started it), the parent's page lists its child runs with their states, and each link leads to the
other run's page. Followed live: a child created while the parent's page is open appears in its
list, and the child's state changes there, without a reload (the real ASGI server's websocket)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from accounts.models import Role
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import PASSWORD
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory, TaskRunFactory
from tests.sdk.conftest import LiveServer

from .conftest import App, axe_problems, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_child_run_links_to_its_parent_and_the_parent_lists_its_children(app: App, world_a) -> None:
    # given: a parent run whose task started two runs of another flow (one completed, one failed)
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    parent_version = FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace,
                                        flow__name="orchestrator")
    child_version = FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="load")
    parent = FlowRunFactory(flow_version=parent_version, name="orchestrator-run", state_type="RUNNING",
                            state_name="Running")
    starter = TaskRunFactory(flow_run=parent, task_key="create_flow_run", state_type="COMPLETED",
                             state_name="Success")
    done = FlowRunFactory(flow_version=child_version, name="load-eu", state_type="COMPLETED", state_name="Success",
                          parent_flow_run=parent, parent_task_run=starter)
    FlowRunFactory(flow_version=child_version, name="load-us", state_type="FAILED", state_name="Failed",
                   parent_flow_run=parent, parent_task_run=starter)
    page = app.new_page()
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)

    # when: a person opens the child's run page
    page.goto(f"/w/acme/runs/{done.pk}")

    # then: it names its parent run, with the parent's state and the task run that started it
    parent_fact = page.get_by_test_id("parent-run")
    expect(parent_fact).to_contain_text("orchestrator-run")
    expect(parent_fact).to_contain_text("Running")
    expect(parent_fact.get_by_role("link", name="from its task run")).to_have_attribute(
        "href", f"/w/acme/runs/{parent.pk}/tasks/{starter.pk}")
    expect(page.get_by_test_id("child-runs")).to_have_count(0)  # it started no run itself

    # and the parent link leads to the parent's page, which lists both children with their states
    parent_fact.get_by_role("link", name="orchestrator-run").click()
    expect(page).to_have_url(re.compile(rf"/w/acme/runs/{parent.pk}$"))
    children = page.get_by_test_id("child-run-row")
    expect(children).to_have_count(2)
    expect(page.get_by_test_id("child-runs")).to_contain_text("Child runs")
    expect(children.filter(has_text="load-eu")).to_contain_text("Completed")
    expect(children.filter(has_text="load-us")).to_contain_text("Failed")
    expect(page.get_by_test_id("parent-run")).to_have_count(0)  # nobody started the parent
    assert axe_problems(page) == []

    # and a child's link leads back to that child
    children.get_by_role("link", name="load-us").click()
    expect(page.get_by_role("heading", name="load-us")).to_be_visible()
    expect(page.get_by_test_id("parent-run")).to_contain_text("orchestrator-run")


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("flow-of-flows-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def test_the_parent_page_follows_its_children_live(live_app: App, asgi_server: LiveServer, world) -> None:
    # given: a running parent run whose page a person has open, with no child yet
    project = ProjectFactory(workspace=world.workspace, name="etl")
    version = FlowVersionFactory(flow__project=project, flow__workspace=world.workspace, flow__name="load")
    parent = FlowRunFactory(flow_version=version, name="orchestrator-run", state_type="RUNNING", state_name="Running")
    page = live_app.new_page()
    log_in(page, world.users[Role.VIEWER].email, PASSWORD)
    page.goto(f"/w/acme/runs/{parent.pk}")
    expect(page.get_by_role("heading", name="orchestrator-run")).to_be_visible()
    expect(page.get_by_test_id("child-runs")).to_have_count(0)
    expect(page.get_by_test_id("live-status")).to_have_text("Live")  # events, not the fallback polling
    api = httpx.Client(base_url=f"{asgi_server.url}/api/v1/workspaces/acme/",
                       headers={"Authorization": f"Bearer {world.keys[Role.DEVELOPER]}"})

    # when: the parent's task starts a child (the SDK's create_flow_run sends this)
    created = api.post("flow-runs/", json={"flow": str(version.flow_id), "name": "load-eu",
                                           "parent_flow_run": str(parent.pk)})
    assert created.status_code == 201, created.text

    # then: the child appears in the parent's list without a reload, and follows its state
    row = page.get_by_test_id("child-run-row").filter(has_text="load-eu")
    expect(row).to_contain_text("Scheduled")
    marked = api.post(f"flow-runs/{created.json()['id']}/mark/", json={"state_type": "COMPLETED"})
    assert marked.status_code == 200, marked.text
    expect(row).to_contain_text("Completed")
    api.close()
