"""The flow page and the projects list as a team uses them: a Developer reads the run history
chart (each bar opens its run), pins an older version and sees it become the active one, archives
and restores a version, pauses and resumes a schedule and sees its next runs, and reads the
parameter defaults; a Developer creates and renames a project, an Owner restricts it (and it is
gone for the Developer it is not shared with); a Viewer sees all of it and none of the controls."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import Flow, FlowVersion, Project, Schedule
from tests.factories import PASSWORD
from tests.orchestration.factories import FlowRunFactory, ProjectFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory, ScheduleFactory

from .conftest import App, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _seed(world: Any) -> dict[str, Any]:
    """Flow "nightly" with versions 1 and 2 (2 active), an hourly schedule and three runs of v2,
    oldest first: completed in 60 s, failed after 10 s, running."""
    project = ProjectFactory(workspace=world.workspace, name="etl")
    v1 = DagFlowVersionFactory(flow__project=project, flow__workspace=world.workspace, flow__name="nightly", version=1)
    flow = v1.flow
    v2 = DagFlowVersionFactory(flow=flow, workspace=world.workspace, version=2)
    schedule = ScheduleFactory(flow=flow, workspace=world.workspace, cron="0 * * * *", timezone="UTC")
    now = timezone.now()
    runs = [
        FlowRunFactory(flow_version=v2, name="run-done", state_type="COMPLETED", state_name="Completed",
                       start_time=now - timedelta(minutes=30), end_time=now - timedelta(minutes=29)),
        FlowRunFactory(flow_version=v2, name="run-failed", state_type="FAILED", state_name="Failed",
                       start_time=now - timedelta(minutes=20), end_time=now - timedelta(minutes=20, seconds=-10)),
        FlowRunFactory(flow_version=v2, name="run-live", state_type="RUNNING", state_name="Running",
                       start_time=now - timedelta(seconds=5)),
    ]
    return {"flow": flow, "v1": v1, "v2": v2, "schedule": schedule, "runs": runs}


def _flow(flow: Flow) -> Flow:
    with rls_bypass():
        return Flow.objects.for_workspace(flow.workspace_id).get(pk=flow.pk)


def _version_row(page: Page, number: int) -> Any:
    return page.locator(f'[data-testid="version-row"][data-version="{number}"]')


def test_a_developer_reads_the_history_and_pins_archives_and_pauses(app: App, world_a) -> None:
    seeded = _seed(world_a)
    flow, v1, v2 = seeded["flow"], seeded["v1"], seeded["v2"]
    page = app.new_page()
    log_in(page, world_a.users[Role.DEVELOPER].email, PASSWORD)
    page.goto(f"/w/acme/flows/{flow.pk}")

    # the history chart: one bar per run, oldest first, coloured by state, each named for a screen reader
    bars = page.get_by_test_id("history-bar")
    expect(bars).to_have_count(3)
    assert [bars.nth(i).get_attribute("data-state-type") for i in range(3)] == ["COMPLETED", "FAILED", "RUNNING"]
    expect(bars.nth(0)).to_have_attribute("aria-label", "run-done: Completed, 1m 0s")
    expect(bars.nth(1)).to_have_attribute("aria-label", "run-failed: Failed, 10s")
    expect(bars.nth(0)).to_have_css("background-color", "rgb(31, 157, 90)")
    expect(page.locator("#history-caption")).to_contain_text("The last 3 runs, oldest first")
    heights = [bars.nth(i).evaluate("el => el.getBoundingClientRect().height") for i in range(3)]
    assert heights[0] > heights[1] > 0, heights  # 60 s is taller than 10 s
    bars.nth(1).click()
    expect(page).to_have_url(re.compile(rf"/w/acme/runs/{seeded['runs'][1].pk}$"))
    page.go_back()

    # the parameter defaults of the active version
    rows = page.get_by_test_id("parameter-row")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="limit")).to_contain_text("int100No")
    expect(rows.filter(has_text="date")).to_contain_text("str—Yes")
    expect(rows.filter(has_text="dry_run")).to_contain_text("boolfalseNo")

    # pin the older version: it becomes the active one
    expect(page.get_by_test_id("active-version")).to_have_text("v2")
    page.get_by_role("button", name="Pin v1").click()
    expect(page.get_by_test_id("active-version")).to_have_text("v1")
    expect(_version_row(page, 1)).to_contain_text("Active")
    expect(_version_row(page, 1)).to_contain_text("Pinned")
    expect(page.get_by_test_id("version-rule")).to_contain_text("pinned version")
    assert _flow(flow).pinned_version_id == v1.pk

    # archive version 2 (not used while v1 is pinned); unpin: v1 stays active, the newest unarchived
    page.get_by_role("button", name="Archive v2").click()
    expect(_version_row(page, 2)).to_contain_text("Archived")
    expect(page.get_by_role("button", name="Pin v2")).to_have_count(0)
    page.get_by_role("button", name="Unpin v1").click()
    expect(page.get_by_role("button", name="Pin v1")).to_be_visible()
    expect(page.get_by_test_id("active-version")).to_have_text("v1")
    # restore it: it is the newest again, so it is active
    page.get_by_role("button", name="Restore v2").click()
    expect(page.get_by_test_id("active-version")).to_have_text("v2")
    with rls_bypass():
        assert FlowVersion.objects.for_workspace(world_a.workspace).get(pk=v2.pk).is_archived is False
    assert _flow(flow).pinned_version_id is None

    # the schedule's next runs; pause it (none planned), resume it (they are back)
    schedule = page.get_by_test_id("schedule")
    expect(schedule.get_by_test_id("next-runs").locator("li")).to_have_count(5)
    schedule.get_by_role("button", name="Pause").click()
    expect(schedule).to_contain_text("Paused")
    expect(schedule.get_by_test_id("paused-note")).to_be_visible()
    expect(schedule.get_by_test_id("next-runs")).to_have_count(0)
    with rls_bypass():
        assert Schedule.objects.for_workspace(world_a.workspace).get(pk=seeded["schedule"].pk).is_active is False
    schedule.get_by_role("button", name="Resume").click()
    expect(schedule.get_by_test_id("next-runs").locator("li")).to_have_count(5)
    expect(schedule).to_contain_text("Active")

    assert not app.js_errors, app.js_errors


def test_projects_are_created_and_renamed_by_a_developer_and_restricted_by_an_owner(app: App, world_a) -> None:
    ProjectFactory(workspace=world_a.workspace, name="etl")
    developer = app.new_page()
    log_in(developer, world_a.users[Role.DEVELOPER].email, PASSWORD)
    developer.goto("/w/acme/flows")

    developer.get_by_role("button", name="New project").click()
    form = developer.get_by_role("form", name="Create project")
    expect(form.get_by_label("Restricted")).to_have_count(0)  # restricting is for Owners and Admins
    form.get_by_label("Project name").fill("etl")
    form.get_by_role("button", name="Create project").click()
    expect(form).to_contain_text("A project named 'etl' already exists.")
    form.get_by_label("Project name").fill("marketing")
    form.get_by_label("Description").fill("Ads")
    form.get_by_role("button", name="Create project").click()
    card = developer.get_by_test_id("project").filter(has=developer.get_by_role("heading", name="marketing"))
    expect(card).to_contain_text("Ads")

    card.get_by_role("button", name="Edit project marketing").click()
    edit = developer.get_by_role("form", name="Save project")
    edit.get_by_label("Project name").fill("growth")
    edit.get_by_label("Description").fill("Ads and e-mail")
    edit.get_by_role("button", name="Save project").click()
    expect(edit).to_have_count(0)
    renamed = developer.get_by_test_id("project").filter(has=developer.get_by_role("heading", name="growth"))
    expect(renamed).to_contain_text("Ads and e-mail")
    with rls_bypass():
        project = Project.objects.for_workspace(world_a.workspace).get(name="growth")
    assert (project.description, project.is_restricted) == ("Ads and e-mail", False)

    owner = app.new_page()
    log_in(owner, world_a.users[Role.OWNER].email, PASSWORD)
    owner.goto("/w/acme/flows")
    owner.get_by_role("button", name="Edit project growth").click()
    owner_form = owner.get_by_role("form", name="Save project")
    owner_form.get_by_label("Restricted").check()
    owner_form.get_by_role("button", name="Save project").click()
    expect(owner_form).to_have_count(0)
    restricted = owner.get_by_test_id("project").filter(has=owner.get_by_role("heading", name="growth"))
    expect(restricted.get_by_test_id("restricted-badge")).to_be_visible()
    with rls_bypass():
        assert Project.objects.for_workspace(world_a.workspace).get(pk=project.pk).is_restricted is True

    # not shared with the Developer: it leaves their list (live, or on the next load)
    developer.reload()
    expect(developer.get_by_role("heading", name="etl")).to_be_visible()
    expect(developer.get_by_role("heading", name="growth")).to_have_count(0)

    assert not app.js_errors, app.js_errors


def test_a_viewer_sees_the_flow_page_and_projects_without_controls(app: App, world_a) -> None:
    seeded = _seed(world_a)
    page = app.new_page()
    log_in(page, world_a.users[Role.VIEWER].email, PASSWORD)
    page.goto(f"/w/acme/flows/{seeded['flow'].pk}")

    expect(page.get_by_test_id("history-bar")).to_have_count(3)
    expect(page.get_by_test_id("parameter-row")).to_have_count(3)
    expect(page.get_by_test_id("version-row")).to_have_count(2)
    expect(page.get_by_test_id("next-runs").locator("li")).to_have_count(5)
    expect(page.get_by_test_id("viewer-note")).to_be_visible()
    for name in ("Pin v1", "Archive v2", "Pause", "Quick run"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile(r"^(Pin|Unpin|Archive|Restore|Pause|Resume)"))).to_have_count(0)

    page.locator(".breadcrumbs").get_by_role("link", name="Flows").click()
    expect(page.get_by_role("heading", name="etl")).to_be_visible()
    expect(page.get_by_role("button", name="New project")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Edit project"))).to_have_count(0)

    assert not app.js_errors, app.js_errors
