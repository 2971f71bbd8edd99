"""Connecting a self-hosted agent from the web app, and the key and limit chores around it.

An Owner creates a service account with the Agent role and a key for it; the page shows the command
to run (this server's URL, the key, a label), copies it, and waits. The real agent process, started
with exactly that command, connects and the page turns green without a reload; on the Agents page a
SIGTERM to the agent turns it Stopped at once (not Healthy until its heartbeats are missed). Then:
rotating a key shows the new secret once, and task concurrency limits are listed, added, changed
and removed per tag.

Like the live-updates tests, these run against the real ASGI server (uvicorn subprocess sharing the
test database), because the pages follow live events over a websocket and the agent needs a server
it can reach from another process.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from accounts.models import Role
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import PASSWORD
from tests.sdk.conftest import LiveServer

from .conftest import PHONE, App, axe_problems, log_in, no_horizontal_scroll, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Longer than a live update needs, shorter than any fallback poll of these pages: an assertion with
# this timeout passes only if the websocket delivered the change.
LIVE = 2_500
VENV_BIN = Path(sys.executable).parent
WIDE = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("connect-agent-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


@pytest.fixture
def agents() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Agent processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _page_as(app: App, world: WorkspaceWorld, role: str) -> Page:
    page = app.new_page()
    log_in(page, world.users[role].email, PASSWORD)
    return page


def _run_shown_command(command: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    """Run the command exactly as the page shows it: ``NAME=value …`` assignments, then ``flowdeck``
    found on PATH (where scripts/start installs it: the project's .venv/bin)."""
    words = shlex.split(command)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", FLOWDECK_HOME=str(tmp_path / "home"),
               NO_COLOR="1", TERM="dumb")
    while "=" in words[0] and re.fullmatch(r"[A-Z_][A-Z0-9_]*", words[0].split("=", 1)[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == "flowdeck", command
    log = (tmp_path / "agent.log").open("wb")
    return subprocess.Popen(words, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)


def test_connect_an_agent_from_the_key_page_and_see_it_stop(
    live_app: App, world: WorkspaceWorld, agents: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    page = _page_as(live_app, world, Role.OWNER)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_app.url)

    # a service account with the Agent role, and a key for it
    page.goto("/w/acme/service-accounts")
    page.get_by_label("Name", exact=True).fill("laptop-agent")
    page.get_by_role("button", name="Create service account").click()
    page.get_by_role("button", name="Create key for laptop-agent").click()
    page.get_by_role("form", name="Create key for laptop-agent").get_by_role("button", name="Create key").click()

    # the page shows the command with this server's URL, the new key and a label, and waits
    secret = page.get_by_test_id("api-key-secret").inner_text().strip()
    shown = page.get_by_test_id("agent-command")
    page.get_by_label("Agent label").fill("laptop")
    expect(shown).to_have_text(
        f"FLOWDECK_API_URL={live_app.url} FLOWDECK_API_KEY={secret} flowdeck agent start --label laptop")
    status = page.get_by_test_id("agent-connection")
    expect(status).to_contain_text("Waiting for your agent…")
    assert axe_problems(page) == []
    page.set_viewport_size(WIDE)
    screenshot(page, "connect-agent-waiting-1440")
    page.set_viewport_size(PHONE)
    assert no_horizontal_scroll(page), "the connect-an-agent panel scrolls sideways at 390px"
    screenshot(page, "connect-agent-waiting-390")
    page.set_viewport_size(WIDE)

    # copy it, and run exactly what was copied
    page.get_by_role("button", name="Copy command").click()
    expect(page.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    assert copied == shown.inner_text().strip()
    agent = _run_shown_command(copied, tmp_path)
    agents.append(agent)

    # the page turns green by itself when the agent connects
    expect(status).to_contain_text("is connected", timeout=20_000)
    expect(status.get_by_test_id("agent-status")).to_have_text("Healthy")
    screenshot(page, "connect-agent-connected-1440")

    # on the Agents page, a clean stop shows at once
    status.get_by_role("link", name="See it on the Agents page").click()
    row = page.get_by_test_id("agent-row")
    expect(row.get_by_test_id("agent-status")).to_have_text("Healthy")
    expect(row).to_contain_text("laptop")
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    agent.send_signal(signal.SIGTERM)
    expect(row.get_by_test_id("agent-status")).to_have_text("Stopped", timeout=LIVE)
    assert agent.wait(30) == 0, (tmp_path / "agent.log").read_text()


def test_an_agent_stopped_with_sigterm_shows_stopped_on_the_agents_page_at_once(
    live_app: App, world: WorkspaceWorld, agents: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    # given: a real agent, healthy on an open Agents page
    agent = _run_shown_command(
        f"FLOWDECK_API_URL={live_app.url} FLOWDECK_API_KEY={world.keys[Role.AGENT]} "
        "flowdeck agent start --name edge-1 --label edge", tmp_path)
    agents.append(agent)
    page = _page_as(live_app, world, Role.VIEWER)
    page.get_by_role("link", name="Agents", exact=True).click()
    row = page.get_by_test_id("agent-row").filter(has_text="edge-1")
    expect(row.get_by_test_id("agent-status")).to_have_text("Healthy", timeout=20_000)
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    # when
    agent.send_signal(signal.SIGTERM)
    # then: Stopped without a reload, long before its heartbeats would be missed
    expect(row.get_by_test_id("agent-status")).to_have_text("Stopped", timeout=LIVE)
    assert agent.wait(30) == 0, (tmp_path / "agent.log").read_text()


def test_a_non_agent_service_account_key_shows_no_agent_command(live_app: App, world: WorkspaceWorld) -> None:
    page = _page_as(live_app, world, Role.OWNER)
    page.goto("/w/acme/service-accounts")
    page.get_by_label("Name", exact=True).fill("ci-bot")
    page.get_by_label("Role").select_option("developer")
    page.get_by_role("button", name="Create service account").click()
    page.get_by_role("button", name="Create key for ci-bot").click()
    page.get_by_role("form", name="Create key for ci-bot").get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("api-key-secret")).to_be_visible()
    expect(page.get_by_test_id("agent-command")).to_have_count(0)


def test_rotating_a_key_shows_the_new_secret_once(live_app: App, world: WorkspaceWorld) -> None:
    page = _page_as(live_app, world, Role.DEVELOPER)
    page.goto("/w/acme/api-keys")
    page.get_by_label("Key name").fill("laptop CLI")
    page.get_by_role("button", name="Create key").click()
    old_secret = page.get_by_test_id("api-key-secret").inner_text().strip()
    page.get_by_role("button", name="I have copied it").click()

    # rotate, stopping the old key now
    page.get_by_role("button", name="Rotate key laptop CLI").click()
    form = page.get_by_role("form", name="Rotate key laptop CLI")
    form.get_by_label("Old key").select_option("0")
    assert axe_problems(page) == []
    with page.expect_response(re.compile(r"/api-keys/[0-9a-f-]+/rotate/$")) as answer:
        form.get_by_role("button", name="Rotate key").click()
    assert answer.value.status == 201
    assert answer.value.headers["cache-control"] == "no-store"
    new_secret = page.get_by_test_id("api-key-secret").inner_text().strip()
    assert new_secret and new_secret != old_secret
    expect(page.get_by_text("the old key stopped working")).to_be_visible()

    # the old key is refused, the new one works, and the table shows both
    members = f"{live_app.url}/api/v1/workspaces/acme/members/"
    assert httpx.get(members, headers={"Authorization": f"Bearer {old_secret}"}).status_code == 401
    assert httpx.get(members, headers={"Authorization": f"Bearer {new_secret}"}).status_code == 200
    rows = page.get_by_test_id("api-key-row").filter(has_text="laptop CLI")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Revoked")).to_have_count(1)

    # shown once: after "I have copied it" (or a reload) the secret is gone for good
    page.get_by_role("button", name="I have copied it").click()
    expect(page.get_by_test_id("api-key-secret")).to_have_count(0)
    page.reload()
    expect(page.get_by_test_id("api-key-row").first).to_be_visible()
    assert new_secret not in page.content()


def test_concurrency_limits_are_listed_added_changed_and_removed(live_app: App, world: WorkspaceWorld) -> None:
    page = _page_as(live_app, world, Role.DEVELOPER)
    viewer = _page_as(live_app, world, Role.VIEWER)
    page.get_by_role("link", name="Concurrency", exact=True).click()
    expect(page.get_by_text("No concurrency limits")).to_be_visible()
    viewer.goto("/w/acme/concurrency-limits")
    expect(viewer.get_by_text("No concurrency limits")).to_be_visible()
    expect(viewer.get_by_test_id("live-status")).to_have_text("Live")
    expect(viewer.get_by_role("form", name="Add concurrency limit")).to_have_count(0)

    # add
    form = page.get_by_role("form", name="Add concurrency limit")
    form.get_by_label("Tag").fill("database")
    form.get_by_label("Limit").fill("2")
    form.get_by_role("button", name="Add limit").click()
    row = page.get_by_test_id("concurrency-limit-row").filter(has_text="database")
    expect(row.get_by_test_id("concurrency-limit-value")).to_have_text("2")
    # the viewer's open page follows (live), without the buttons
    viewer_row = viewer.get_by_test_id("concurrency-limit-row").filter(has_text="database")
    expect(viewer_row.get_by_test_id("concurrency-limit-value")).to_have_text("2", timeout=LIVE)
    expect(viewer_row.get_by_role("button")).to_have_count(0)
    assert axe_problems(page) == [] and axe_problems(viewer) == []
    phone = live_app.new_page(viewport=PHONE)
    log_in(phone, world.users[Role.DEVELOPER].email, PASSWORD)
    phone.goto("/w/acme/concurrency-limits")
    expect(phone.get_by_test_id("concurrency-limit-row")).to_have_count(1)
    assert no_horizontal_scroll(phone), "the concurrency limits page scrolls sideways at 390px"
    screenshot(phone, "concurrency-limits-390")
    page.set_viewport_size(WIDE)
    screenshot(page, "concurrency-limits-1440")

    # a bad value is refused clearly, and a tag with a limit is not added twice
    form.get_by_label("Tag").fill("database")
    form.get_by_label("Limit").fill("3")
    form.get_by_role("button", name="Add limit").click()
    expect(page.get_by_text("already has a limit")).to_be_visible()

    # change
    row.get_by_role("button", name="Change the limit of database").click()
    edit = row.get_by_role("form", name="Change the limit of database")
    edit.get_by_label("New limit for database").fill("5")
    edit.get_by_role("button", name="Save").click()
    expect(row.get_by_test_id("concurrency-limit-value")).to_have_text("5")
    expect(viewer_row.get_by_test_id("concurrency-limit-value")).to_have_text("5", timeout=LIVE)
    limits = httpx.get(f"{live_app.url}/api/v1/workspaces/acme/concurrency-limits/",
                       headers={"Authorization": f"Bearer {world.keys[Role.DEVELOPER]}"}).json()["results"]
    assert [(lim["tag"], lim["limit"]) for lim in limits] == [("database", 5)]

    # remove
    row.get_by_role("button", name="Remove the limit of database").click()
    page.get_by_role("button", name="Remove limit").click()
    expect(page.get_by_text("No concurrency limits")).to_be_visible()
    expect(viewer.get_by_text("No concurrency limits")).to_be_visible(timeout=LIVE)
