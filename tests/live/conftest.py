"""Real servers and real sockets for the live-update tests.

``live_servers`` starts two ASGI server processes (``python -m config.embedded``, the same
command as the SDK tests) on the test database and the test Redis: a socket connected to one hears
what is committed through the other. The servers run with a small send queue and a low log-line
budget so back-pressure and log floods are quick to provoke.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from websockets.sync.client import ClientConnection, connect

from accounts.models import Role, User
from tests.conftest import WorkspaceWorld, build_world
from tests.sdk.conftest import LiveServer

SEND_QUEUE = 50
LOG_LINES_PER_SECOND = 200
REVALIDATE_SECONDS = 2


class TunedServer(LiveServer):
    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(FLOWDECK_LIVE_SEND_QUEUE=str(SEND_QUEUE),
                   FLOWDECK_LIVE_LOG_LINES_PER_SECOND=str(LOG_LINES_PER_SECOND),
                   FLOWDECK_LIVE_REVALIDATE_SECONDS=str(REVALIDATE_SECONDS))
        return env

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def live_servers(django_db_setup, tmp_path_factory) -> Iterator[tuple[TunedServer, TunedServer]]:  # type: ignore[no-untyped-def]
    log_dir: Path = tmp_path_factory.mktemp("live-servers")
    servers = (TunedServer(periodic_every=None, log_dir=log_dir), TunedServer(periodic_every=None, log_dir=log_dir))
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def acme(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


@pytest.fixture
def globex(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("globex")


def session_cookie(user: User) -> str:
    """A real session for ``user`` in the shared database (what logging in leaves in the browser)."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def browser_socket(server: TunedServer, slug: str, user: User | None, *, after: int | None = None,
                   origin: str | None = None, **kwargs: Any) -> ClientConnection:
    headers = {"Origin": origin or server.url}
    if user is not None:
        headers["Cookie"] = f"sessionid={session_cookie(user)}"
    query = "" if after is None else f"?after={after}"
    return connect(f"{server.ws}/ws/v1/workspaces/{slug}/events/{query}", additional_headers=headers,
                   open_timeout=10, **kwargs)


def agent_socket(server: TunedServer, slug: str, agent_id: str, key: str | None, **kwargs: Any) -> ClientConnection:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return connect(f"{server.ws}/ws/v1/workspaces/{slug}/agents/{agent_id}/", additional_headers=headers,
                   open_timeout=10, **kwargs)


def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def receive_until(ws: ClientConnection, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> tuple[
        dict[str, Any], list[dict[str, Any]]]:
    """The first message matching ``match``, and everything received before it."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching message within {timeout}s; got {seen}")
        try:
            message = receive(ws, left)
        except TimeoutError:
            raise AssertionError(f"no matching message within {timeout}s; got {seen}") from None
        if match(message):
            return message, seen
        seen.append(message)


def nothing_more(
    ws: ClientConnection, wait: float = 1.0, ignore: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """Messages received within ``wait`` seconds (to assert a socket heard nothing)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = receive(ws, left)
        except TimeoutError:
            break
        if ignore is None or not ignore(message):
            got.append(message)
    return got


class Api:
    """REST calls against one server with one key."""

    def __init__(self, server: TunedServer, world: WorkspaceWorld, role: str = Role.DEVELOPER) -> None:
        self.http = httpx.Client(base_url=f"{server.url}/api/v1/workspaces/{world.workspace.slug}/",
                                 headers={"Authorization": f"Bearer {world.keys[role]}"}, timeout=15)

    def call(self, method: str, path: str, body: Any = None, expect: int | tuple[int, ...] = (200, 201, 204)) -> Any:
        response = self.http.request(method, path, json=body)
        codes = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in codes, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def quick_run(self, flow_id: str, **body: Any) -> str:
        return str(self.call("POST", "flow-runs/", {"flow": flow_id, **body})["id"])


def make_flow(world: WorkspaceWorld, *, restricted: bool = False, name: str = "etl") -> str:
    from tests.orchestration.factories import FlowVersionFactory, ProjectFactory

    project = ProjectFactory(workspace=world.workspace, name=f"{name}-project", is_restricted=restricted)
    version = FlowVersionFactory(flow__project=project, flow__workspace=world.workspace, flow__name=name, labels=[])
    return str(version.flow_id)


def is_event(kind: str, **data: Any) -> Callable[[dict[str, Any]], bool]:
    def match(message: dict[str, Any]) -> bool:
        if message.get("type") != "event" or message["event"]["type"] != kind:
            return False
        return all(message["event"]["data"].get(k) == v for k, v in data.items())

    return match
