"""The run page's views on a realistic run, followed live over the real websocket: a parameter, a
task passing its result on, a mapped task with three children, a control-flow task (``case``) and
a ``Merge``, a task that failed once and was retried, and log lines at several levels from several
tasks. An agent (the REST agent protocol with the workspace's agent key, as in
test_live_updates.py) reports it all while a person watches.

- Schematic: ELK lays it out, so every task is a node and no edge runs under a node (bounding boxes
  of the nodes against points along the drawn edge paths); kinds look different; colours follow
  the task states live.
- Timeline: a bar per task run, the retried task's two attempts as segments, mapped children under
  their parent.
- Task-run detail: its own URL, its states and attempts, and only that task's logs.
- Logs: level, task and text filters (kept in the URL), download of the filtered file, follow mode.
- At 390 px the views are tabs kept in the URL, with nothing wider than the screen and no serious
  accessibility violation (axe-core) on any of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Role
from orchestration.models import FlowVersion
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import PASSWORD
from tests.orchestration.factories import FlowVersionFactory, ProjectFactory
from tests.sdk.conftest import LiveServer

from .conftest import PHONE, App, axe_problems, log_in, no_horizontal_scroll
from .test_live_updates import LIVE, Agent, AsgiServer, _quick_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What the SDK registers for such a flow (flowdeck.core.serialization): parameters are tasks keyed
# by their name; `switch`/`ifelse` add `case(…)` tasks and `merge` a "Merge" task.
TASKS = [
    {"key": "date", "name": "date", "tags": [], "retries": 0, "trigger": "all_successful", "mapped": False},
    {"key": "extract", "name": "extract", "tags": ["db"], "retries": 0, "trigger": "all_successful", "mapped": False},
    {"key": "transform", "name": "transform", "tags": [], "retries": 0, "trigger": "all_successful", "mapped": True},
    {"key": "case_true", "name": "case(True)", "tags": [], "retries": 0, "trigger": "all_successful",
     "mapped": False},
    {"key": "load", "name": "load", "tags": ["db"], "retries": 2, "retry_delay_seconds": 0,
     "trigger": "all_successful", "mapped": False},
    {"key": "merge", "name": "Merge", "tags": [], "retries": 0, "trigger": "not_all_skipped", "mapped": False},
    {"key": "report", "name": "report", "tags": [], "retries": 0, "trigger": "all_successful", "mapped": False},
]
EDGES = [
    {"upstream": "date", "downstream": "extract", "key": "day"},
    {"upstream": "extract", "downstream": "transform", "key": "row", "mapped": True},
    {"upstream": "extract", "downstream": "case_true", "key": "value"},
    {"upstream": "case_true", "downstream": "load", "key": None},
    {"upstream": "transform", "downstream": "load", "key": "rows"},
    {"upstream": "load", "downstream": "merge", "key": "task1"},
    {"upstream": "merge", "downstream": "report", "key": "summary"},
    {"upstream": "extract", "downstream": "report", "key": "count"},
]
PARAMETERS = [{"name": "date", "type": "str", "default": None, "required": True}]

# Every point of every drawn edge, in screen coordinates, against every node's box (shrunk by 2 px,
# so an edge may end on a node's border): the pairs (edge, node) where an edge runs under a node.
EDGES_UNDER_NODES = """() => {
  const nodes = [...document.querySelectorAll('[data-testid="dag-node"]')]
    .map((n) => ({ key: n.getAttribute("aria-label"), r: n.getBoundingClientRect() }));
  const hits = [];
  let edges = 0;
  for (const g of document.querySelectorAll('[data-testid="dag-edge"]')) {
    const path = g.querySelector("path.react-flow__edge-path");
    if (!path) continue;
    edges += 1;
    const m = path.getScreenCTM();
    const length = path.getTotalLength();
    for (let d = 0; d <= length; d += 2) {
      const p = path.getPointAtLength(d);
      const x = m.a * p.x + m.c * p.y + m.e;
      const y = m.b * p.x + m.d * p.y + m.f;
      for (const n of nodes) {
        if (x > n.r.left + 2 && x < n.r.right - 2 && y > n.r.top + 2 && y < n.r.bottom - 2) {
          hits.push(`${g.dataset.source}->${g.dataset.target} under ${n.key}`);
        }
      }
    }
  }
  return { nodes: nodes.length, edges, hits: [...new Set(hits)] };
}"""

AT_BOTTOM = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight <= 24"


class RunAgent(Agent):
    """The live-updates test's agent, reporting mapped children, state names and task log lines."""

    def report(self, run_id: str, *reports: tuple[str, int, str, str]) -> list[dict[str, Any]]:
        body = {"attempt": self.attempt, "reports": [
            {"task_key": key, "map_index": index, "state": {"type": type_, **({"name": name} if name else {})}}
            for key, index, type_, name in reports
        ]}
        results = self.post(f"flow-runs/{run_id}/task-runs/", body)["results"]
        assert [r["status"] for r in results] == ["ACCEPT"] * len(reports), results
        return cast(list[dict[str, Any]], results)

    def task_logs(self, run_id: str, first: int, *lines: tuple[str | None, int, int, str]) -> None:
        body = [{"sequence": first + i, "level": level, "timestamp": "2026-03-01T06:00:00Z", "logger": "etl",
                 "message": message, **({"task_key": key, "map_index": index} if key else {})}
                for i, (key, index, level, message) in enumerate(lines)]
        assert self.post(f"flow-runs/{run_id}/logs/", {"lines": body})["count"] == len(lines)


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = AsgiServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("run-views-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


@dataclass
class Played:
    run_id: str
    agent: RunAgent


@pytest.fixture
def played(asgi_server: LiveServer, world: WorkspaceWorld) -> Iterator[Played]:
    """A run of the realistic flow, played by an agent (which still holds it) up to the moment
    `report` is still to run."""
    project = ProjectFactory(workspace=world.workspace, name="etl")
    version = cast(FlowVersion, FlowVersionFactory(
        flow__project=project, flow__workspace=world.workspace, flow__name="warehouse", tasks=TASKS, edges=EDGES,
        parameters=PARAMETERS, labels=["etl"]))
    run = _quick_run(asgi_server.url, world, str(version.flow_id))
    agent = RunAgent(asgi_server.url, world)
    try:
        agent.claim(run)
        agent.set_state(run, "RUNNING", "Running")
        agent.report(run, ("date", -1, "RUNNING", ""), ("date", -1, "COMPLETED", ""))
        agent.report(run, ("extract", -1, "RUNNING", ""))
        agent.report(run, ("extract", -1, "COMPLETED", ""), ("transform", -1, "RUNNING", ""),
                     *[("transform", i, "RUNNING", "") for i in range(3)])
        agent.report(run, *[("transform", i, "COMPLETED", "") for i in range(3)])
        agent.report(run, ("transform", -1, "COMPLETED", "Mapped"), ("case_true", -1, "RUNNING", ""),
                     ("case_true", -1, "COMPLETED", ""), ("load", -1, "RUNNING", ""))
        [retry] = agent.report(run, ("load", -1, "FAILED", ""))
        assert retry["state"]["name"] == "AwaitingRetry", retry
        agent.report(run, ("load", -1, "RUNNING", ""))
        agent.report(run, ("load", -1, "COMPLETED", ""), ("merge", -1, "RUNNING", ""),
                     ("merge", -1, "COMPLETED", ""))
        agent.task_logs(run, 1,
                        (None, -1, 20, "flow run started"),
                        ("extract", -1, 10, "connected to the warehouse"),
                        ("extract", -1, 20, "extracted 3 rows"),
                        ("transform", 1, 30, "row 1 has no price"),
                        ("load", -1, 40, "warehouse locked, retrying"),
                        ("load", -1, 20, "loaded 3 rows"))
        yield Played(run, agent)
    finally:
        agent.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the pictures of each view go, for a reviewer: FLOWDECK_SCREENSHOT_DIR, else a temp dir."""
    folder = Path(os.environ.get("FLOWDECK_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shot(page: Page, folder: Path, name: str) -> None:
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=str(folder / f"run-{name}-{width}.png"), full_page=True)


def _open(live_app: App, world: WorkspaceWorld, path: str, viewport: dict[str, int] | None = None) -> Page:
    page = live_app.new_page(viewport)
    log_in(page, world.users[Role.VIEWER].email, PASSWORD)
    page.goto(path)
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    return page


def test_schematic_lays_out_every_task_without_edges_under_nodes_and_follows_states(
    live_app: App, world: WorkspaceWorld, played: Played, shots: Path
) -> None:
    run_id, agent = played.run_id, played.agent
    page = _open(live_app, world, f"/w/acme/runs/{run_id}?tab=schematic")
    nodes = page.get_by_test_id("dag-node")
    expect(nodes).to_have_count(len(TASKS))
    expect(page.get_by_test_id("dag-edge")).to_have_count(len(EDGES))

    # every task is a node; no edge runs under one
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-testid=\"dag-edge\"] path.react-flow__edge-path').length === n",
        arg=len(EDGES))
    layout = page.evaluate(EDGES_UNDER_NODES)
    assert layout["nodes"] == len(TASKS) and layout["edges"] == len(EDGES), layout
    assert layout["hits"] == [], layout["hits"]
    _shot(page, shots, "schematic")

    # mapped tasks, parameters and control flow look different
    def node(key: str):  # type: ignore[no-untyped-def]
        return page.locator(f'[data-testid="dag-node"][aria-label="{key}"]')

    kinds = {"date": "parameter", "extract": "task", "transform": "mapped", "case_true": "control",
             "merge": "control", "load": "task", "report": "task"}
    for key, kind in kinds.items():
        expect(node(key)).to_have_attribute("data-kind", kind)
    styles = {kind: node(key).evaluate("(n) => [getComputedStyle(n).borderStyle, getComputedStyle(n).boxShadow, "
                                       "getComputedStyle(n).backgroundColor, getComputedStyle(n).clipPath].join('|')")
              for key, kind in [("extract", "task"), ("transform", "mapped"), ("date", "parameter"),
                                ("case_true", "control")]}
    assert len(set(styles.values())) == 4, styles
    expect(node("transform")).to_contain_text("3/3")

    # colours follow the task states live
    expect(node("load")).to_have_attribute("data-state", "COMPLETED")
    expect(node("report")).to_have_attribute("data-state", "")
    colour_before = node("report").evaluate("(n) => getComputedStyle(n).borderLeftColor")
    agent.report(run_id, ("report", -1, "RUNNING", ""))
    expect(node("report")).to_have_attribute("data-state", "RUNNING", timeout=LIVE)
    running = node("report").evaluate("(n) => getComputedStyle(n).borderLeftColor")
    agent.report(run_id, ("report", -1, "FAILED", ""))
    expect(node("report")).to_have_attribute("data-state", "FAILED", timeout=LIVE)
    failed = node("report").evaluate("(n) => getComputedStyle(n).borderLeftColor")
    assert len({colour_before, running, failed}) == 3, (colour_before, running, failed)

    # pan and zoom: the zoom control scales the nodes
    width = node("extract").evaluate("(n) => n.getBoundingClientRect().width")
    page.locator(".react-flow__controls-zoomin").click()
    page.wait_for_function("([n, w]) => n.getBoundingClientRect().width > w * 1.05",
                           arg=[node("extract").element_handle(), width])

    # a node with a task run opens its detail
    node("load").click()
    expect(page).to_have_url(re.compile(rf"/w/acme/runs/{run_id}/tasks/[0-9a-f-]{{36}}$"))
    expect(page.get_by_test_id("task-run-detail")).to_contain_text("load")
    assert not live_app.js_errors, live_app.js_errors


def test_timeline_shows_bars_attempts_and_mapped_children_live(
    live_app: App, world: WorkspaceWorld, played: Played, shots: Path
) -> None:
    run_id, agent = played.run_id, played.agent
    page = _open(live_app, world, f"/w/acme/runs/{run_id}")
    page.get_by_role("tab", name="Timeline").click()
    expect(page).to_have_url(re.compile(r"\?tab=timeline$"))
    rows = page.get_by_test_id("gantt-row")
    # date, extract, transform + 3 children, case_true, load, merge
    expect(rows).to_have_count(9)
    expect(page.get_by_test_id("gantt-bar")).to_have_count(9)

    attempts = page.locator('[data-task-key="load"] [data-testid="gantt-attempt"]')
    expect(attempts).to_have_count(2)
    assert attempts.evaluate_all("(a) => a.map((s) => s.dataset.outcome)") == ["AwaitingRetry", "Completed"]

    # the mapped children follow their parent, in index order, indented
    order = rows.evaluate_all("(rs) => rs.map((r) => `${r.dataset.taskKey}:${r.dataset.mapIndex}`)")
    at = order.index("transform:-1")
    assert order[at:at + 4] == ["transform:-1", "transform:0", "transform:1", "transform:2"], order
    assert page.locator('[data-task-key="transform"][data-map-index="1"]').evaluate(
        "(r) => r.classList.contains('gantt-child')")

    # live: a task that starts gets a bar that grows while it runs
    agent.report(run_id, ("report", -1, "RUNNING", ""))
    report_bar = page.locator('[data-task-key="report"] [data-testid="gantt-bar"]')
    expect(report_bar).to_have_attribute("data-state", "RUNNING", timeout=LIVE)
    expect(page.locator('[data-task-key="report"] [data-testid="gantt-attempt"]')).to_have_attribute(
        "data-outcome", "Running")
    agent.report(run_id, ("report", -1, "COMPLETED", ""))
    expect(report_bar).to_have_attribute("data-state", "COMPLETED", timeout=LIVE)
    _shot(page, shots, "timeline")
    assert not live_app.js_errors, live_app.js_errors


def test_task_run_detail_shows_its_states_attempts_and_only_its_logs(
    live_app: App, world: WorkspaceWorld, played: Played, shots: Path
) -> None:
    run_id = played.run_id
    page = _open(live_app, world, f"/w/acme/runs/{run_id}?tab=tasks")
    page.get_by_test_id("task-run-row").get_by_role("link", name="load", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/w/acme/runs/{run_id}/tasks/[0-9a-f-]{{36}}$"))
    detail = page.get_by_test_id("task-run-detail")
    expect(detail.get_by_test_id("task-run-attempts")).to_have_text("2")
    expect(detail.get_by_test_id("attempt-list").locator("li")).to_have_count(2)
    expect(detail.get_by_test_id("task-run-states")).to_contain_text(re.compile(r"Awaiting ?retry", re.IGNORECASE))
    logs = detail.get_by_test_id("logs")
    expect(logs.locator("div")).to_have_count(2)
    expect(logs).to_contain_text("warehouse locked, retrying")
    expect(logs).to_contain_text("loaded 3 rows")
    expect(logs).not_to_contain_text("extracted 3 rows")
    _shot(page, shots, "task-run")
    # its own URL: a reload shows the same task run
    page.reload()
    expect(page.get_by_test_id("task-run-detail").get_by_test_id("logs").locator("div")).to_have_count(2)
    page.get_by_role("link", name="Back to the run").click()
    expect(page.get_by_test_id("task-run-row")).to_have_count(9)
    assert not live_app.js_errors, live_app.js_errors


def test_logs_filter_search_download_and_follow(
    live_app: App, world: WorkspaceWorld, played: Played, shots: Path
) -> None:
    run_id, agent = played.run_id, played.agent
    page = _open(live_app, world, f"/w/acme/runs/{run_id}?tab=logs")
    logs = page.get_by_test_id("logs")
    expect(logs.locator("div")).to_have_count(6)

    # by level (kept in the URL, surviving a reload)
    page.get_by_label("Level").select_option("30")
    expect(page).to_have_url(re.compile(r"level=30"))
    expect(logs.locator("div")).to_have_count(2)
    expect(logs).to_contain_text("row 1 has no price")
    expect(logs).to_contain_text("[transform[1]]")
    page.reload()
    expect(page.get_by_test_id("logs").locator("div")).to_have_count(2)
    expect(page.get_by_label("Level")).to_have_value("30")
    _shot(page, shots, "logs")

    # the download has what the filter shows
    with page.expect_download() as download:
        page.get_by_role("link", name="Download .log").click()
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: PTH123, SIM115
    assert [line.split(" ", 2)[1] for line in text.splitlines()] == ["WARNING", "ERROR"], text
    assert "[load] etl: warehouse locked, retrying" in text

    # by task, and by text
    page.get_by_label("Level").select_option("")
    page.get_by_label("Task").select_option(label="extract")
    expect(page).to_have_url(re.compile(r"task=[0-9a-f-]{36}"))
    expect(logs.locator("div")).to_have_count(2)
    expect(logs).not_to_contain_text("loaded 3 rows")
    page.get_by_label("Task").select_option("")
    page.get_by_label("Search the logs").fill("3 ROWS")
    expect(page).to_have_url(re.compile(r"q=3\+ROWS"))
    expect(logs.locator("div")).to_have_count(2)
    expect(logs).to_contain_text("extracted 3 rows")
    expect(logs).to_contain_text("loaded 3 rows")
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON lines").click()
    rows = open(download.value.path(), encoding="utf-8").read().splitlines()  # noqa: PTH123, SIM115
    assert len(rows) == 2 and all('"message": ' in r for r in rows), rows
    page.get_by_label("Search the logs").fill("")
    expect(logs.locator("div")).to_have_count(6)

    # follow: new lines keep the newest in view…
    follow = page.get_by_test_id("log-follow")
    expect(follow).to_have_attribute("aria-pressed", "true")
    agent.task_logs(run_id, 7, *[(None, -1, 20, f"progress {n}") for n in range(40)])
    expect(logs).to_contain_text("progress 39", timeout=LIVE)
    page.wait_for_function(AT_BOTTOM, arg=logs.element_handle())
    # …until the reader scrolls up: then new lines do not move the view
    logs.evaluate("(el) => { el.scrollTop = 0; }")  # the reader scrolls back to the top
    expect(follow).to_have_attribute("aria-pressed", "false")
    top = logs.evaluate("(el) => el.scrollTop")
    agent.task_logs(run_id, 47, *[(None, -1, 20, f"later {n}") for n in range(10)])
    expect(logs).to_contain_text("later 9", timeout=LIVE)
    assert logs.evaluate("(el) => el.scrollTop") == top == 0
    assert not logs.evaluate(AT_BOTTOM)
    # following again jumps to the newest line
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "true")
    page.wait_for_function(AT_BOTTOM, arg=logs.element_handle())
    assert not live_app.js_errors, live_app.js_errors


def test_at_390px_the_views_are_tabs_kept_in_the_url(
    live_app: App, world: WorkspaceWorld, played: Played, shots: Path
) -> None:
    run_id = played.run_id
    page = _open(live_app, world, f"/w/acme/runs/{run_id}", PHONE)
    tabs = page.get_by_role("tab")
    expect(tabs).to_have_text(["Overview", "Schematic", "Timeline", "Logs", re.compile(r"^Task runs")])
    for n in range(5):  # every tab in sight, none cut off
        box = tabs.nth(n).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (n, box)
    expect(page.get_by_role("tab", name="Overview")).to_have_attribute("aria-selected", "true")
    # one view at a time: the overview does not stack the other views below it
    expect(page.get_by_test_id("state-timeline")).to_be_visible()
    expect(page.get_by_test_id("gantt")).to_have_count(0)
    expect(page.get_by_test_id("logs")).to_have_count(0)
    assert no_horizontal_scroll(page)

    for name, tab, shown in [("Timeline", "timeline", "gantt"), ("Logs", "logs", "logs"),
                             ("Schematic", "schematic", "dag"), ("Task runs", "tasks", "task-run-row")]:
        page.get_by_role("tab", name=name).click()
        expect(page).to_have_url(re.compile(rf"\?tab={tab}$"))
        expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
        expect(page.get_by_test_id(shown).first).to_be_visible()
        assert no_horizontal_scroll(page), name
        assert axe_problems(page) == [], name
        _shot(page, shots, tab)
    # the tab survives a reload, and Back returns to the previous one
    page.reload()
    expect(page.get_by_role("tab", name="Task runs")).to_have_attribute("aria-selected", "true")
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?tab=schematic$"))
    expect(page.get_by_test_id("dag-node")).to_have_count(len(TASKS))
    box = page.get_by_test_id("dag").bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    assert not live_app.js_errors, live_app.js_errors
