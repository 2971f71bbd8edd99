"""F5 through the real server: parallel creations at the edge of a quota get exactly what is left,
whatever order the requests land in."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone

from accounts.models import Invitation, Role
from billing.models import RunMeter
from core.tenancy import rls_bypass
from flowdeck.cli import EXIT_CONFIG
from orchestration.models import FlowRun
from tests.billing.conftest import flow_of, set_free_runs
from tests.conftest import WorkspaceWorld, build_world
from tests.sdk.conftest import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)


class BilledServer(LiveServer):
    def env(self) -> dict[str, str]:
        return {**super().env(), "FLOWDECK_BILLING": "1"}


@pytest.fixture(scope="module")
def billed_server(django_db_setup, tmp_path_factory) -> Iterator[BilledServer]:  # type: ignore[no-untyped-def]
    server = BilledServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("billed"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live_world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def all_at_once(count: int, send: Any) -> list[httpx.Response]:
    """``count`` requests released together from their own threads and connections."""
    barrier = threading.Barrier(count)
    answers: list[httpx.Response] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                barrier.wait()
                answers.append(send(client, i))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return answers


def test_fifty_parallel_creations_with_ten_runs_left_create_exactly_ten(billed_server, live_world):
    # given: Free allows 12 runs; 2 are used
    set_free_runs(12)
    flow = flow_of(live_world)
    url = f"{billed_server.url}/api/v1/workspaces/{live_world.workspace.slug}/flow-runs/"
    headers = {"Authorization": f"Bearer {live_world.keys[Role.DEVELOPER]}"}
    for _ in range(2):
        assert httpx.post(url, json={"flow": str(flow.pk)}, headers=headers).status_code == 201
    # when
    answers = all_at_once(50, lambda client, i: client.post(url, json={"flow": str(flow.pk)}, headers=headers))
    # then
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 10 + [402] * 40
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 402} == {"quota_exceeded"}
    with rls_bypass():
        assert FlowRun.objects.unscoped().filter(workspace=live_world.workspace).count() == 12
        assert RunMeter.objects.unscoped().get(workspace=live_world.workspace, period_end__gt=timezone.now()).runs == 12


def test_two_parallel_invitations_for_the_last_seat_let_exactly_one_through(billed_server, live_world, settings):
    # given: Free's 3 seats, 2 held (an Owner and a pending invitation) once the others leave
    settings.FLOWDECK_BILLING = True
    from accounts.models import Membership

    with rls_bypass():
        Membership.objects.filter(workspace=live_world.workspace).exclude(role=Role.OWNER).delete()
    headers = {"Authorization": f"Bearer {live_world.keys[Role.OWNER]}"}
    url = f"{billed_server.url}/api/v1/workspaces/{live_world.workspace.slug}/invitations/"
    assert httpx.post(url, json={"email": "first@example.com", "role": "viewer"}, headers=headers).status_code == 201
    # when
    answers = all_at_once(2, lambda client, i: client.post(
        url, json={"email": f"racer{i}@example.com", "role": "viewer"}, headers=headers))
    # then
    assert sorted(a.status_code for a in answers) == [201, 402]
    refused = next(a for a in answers if a.status_code == 402).json()["error"]
    assert refused["details"] | {"plan": "free"} == {
        "limit": "seats", "used": 3, "allowed": 3, "requested": 1, "plan": "free"}
    with rls_bypass():
        assert Invitation.objects.unscoped().filter(workspace=live_world.workspace).count() == 2


def test_the_cli_shows_the_quota_message_as_the_server_wrote_it(billed_server, live_world, tmp_path):
    # given: Free with no runs left
    set_free_runs(0)
    flow = flow_of(live_world)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(FLOWDECK_API_URL=billed_server.url, FLOWDECK_API_KEY=live_world.keys[Role.DEVELOPER],
               FLOWDECK_WORKSPACE=live_world.workspace.slug, FLOWDECK_HOME=str(tmp_path), NO_COLOR="1",
               COLUMNS="400")
    # when
    result = subprocess.run([str(Path(sys.executable).parent / "flowdeck"), "run", str(flow.pk)], env=env,
                            capture_output=True, text=True, timeout=60)
    # then
    assert result.returncode == EXIT_CONFIG
    message = " ".join(result.stderr.split())
    assert "Error: This workspace has used 0 of the 0 flow runs its Free plan allows this billing period" in message
    assert "An Owner can raise it by upgrading the plan on the workspace's Billing page." in message
