"""The HTTP path of a server process (config/asgi.py): requests run on a bounded pool of reused
threads, not on a new thread each (docs/performance.md, "Python CPU"); websockets share the process
and the port; responses that stream still go out chunk by chunk; the body-size limit still holds.
Against a real server process (conftest.py) unless said otherwise."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from websockets.sync.client import connect

from accounts.models import Role
from tests.conftest import WorkspaceWorld, build_world
from tests.orchestration.factories import FlowVersionFactory, ProjectFactory

from .conftest import THREADS, ThreadLoggingServer

STATIC = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"  # > 1 MB, always installed


@pytest.fixture
def acme(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def _api(server: ThreadLoggingServer, world: WorkspaceWorld, role: str = Role.DEVELOPER) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1/workspaces/{world.workspace.slug}/",
                        headers={"Authorization": f"Bearer {world.keys[role]}"}, timeout=15)


def test_fifty_requests_start_no_thread_beyond_a_bounded_pool(server: ThreadLoggingServer, acme: WorkspaceWorld):
    def get(i: int) -> int:
        with _api(server, acme) as api:  # a connection each: keep-alive plays no part
            return api.get("flow-runs/" if i % 2 else "projects/").status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(get, range(5))) == {200}  # warm: lazily started background threads run now
        before = server.threads_started()
        assert set(pool.map(get, range(50))) == {200}
    started = server.threads_started()
    # Django's ASGI handler started a thread per request (executors named ThreadPoolExecutor-N_0);
    # here only the pool's own threads ever start, THREADS of them at most in the process's life.
    assert started[len(before):] == [name for name in started[len(before):] if name.startswith("WSGI_")]
    pool_threads = [name for name in started if name.startswith("WSGI_")]
    assert 1 <= len(pool_threads) <= THREADS
    assert len(set(pool_threads)) == len(pool_threads)


def test_the_server_serves_with_its_start_up_objects_frozen(server: ThreadLoggingServer, acme: WorkspaceWorld):
    """config.serve.freeze_startup_heap: the collector's full passes skip what start-up made (a
    Django server's modules and machinery, well over 50,000 objects), so they pause requests less."""
    with _api(server, acme) as api:
        assert api.get("projects/").status_code == 200
    frozen = Path(f"{server.thread_log}.gc")
    assert frozen.exists()
    assert int(frozen.read_text()) > 50_000


def test_a_websocket_and_http_on_the_same_server(server: ThreadLoggingServer, acme: WorkspaceWorld):
    with _api(server, acme, Role.AGENT) as agent_api:
        response = agent_api.post("agents/", json={"name": "gpu", "type": "process", "labels": []})
        assert response.status_code == 201, response.text
    agent_id = response.json()["id"]
    version = FlowVersionFactory(flow__project=ProjectFactory(workspace=acme.workspace), flow__workspace=acme.workspace,
                                 labels=[])
    url = f"ws://127.0.0.1:{server.port}/ws/v1/workspaces/{acme.workspace.slug}/agents/{agent_id}/"
    with connect(url, additional_headers={"Authorization": f"Bearer {acme.keys[Role.AGENT]}"}, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=5)) == {"type": "hello", "agent_id": agent_id}
        with _api(server, acme) as api:
            assert api.post("flow-runs/", json={"flow": str(version.flow_id)}).status_code == 201
        assert json.loads(ws.recv(timeout=5))["type"] == "work_available"
        ws.send('{"action": "ping"}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}


def test_a_body_over_the_limit_is_413_before_the_view(server: ThreadLoggingServer, acme: WorkspaceWorld):
    body = b"x" * (settings.MAX_REQUEST_BODY_BYTES + 1)
    with _api(server, acme) as api:
        response = api.post("flow-runs/", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_static_file_arrives_whole_from_the_server(server: ThreadLoggingServer):
    expected = Path(finders.find(STATIC)).read_bytes()
    response = httpx.get(f"{server.url}{settings.STATIC_URL}{STATIC}", timeout=15)
    assert response.status_code == 200
    assert response.content == expected


def test_a_streaming_response_goes_out_chunk_by_chunk(settings: Any) -> None:
    """In process, through the application's HTTP path: ServeStatic's files are answered with a
    FileResponse (a streaming response); each chunk must reach the server as it is read, not the
    whole file at the end."""
    # Importing config.asgi starts a server process's web-tier beat; in the test process its
    # background transactions would collide with the suite's database flushes.
    settings.FLOWDECK_WEB_TIER_BEAT = False
    from config.asgi import http_application

    messages: list[dict[str, Any]] = []
    path = f"{settings.STATIC_URL}{STATIC}"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(http_application(scope, receive, send))
    import threading

    assert "flowdeck-web-tier-beat" not in {t.name for t in threading.enumerate()}
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 200
    chunks = [m for m in messages[1:] if m["type"] == "http.response.body"]
    assert sum(1 for m in chunks if m.get("more_body")) > 10
    assert not chunks[-1].get("more_body")
    assert b"".join(m.get("body", b"") for m in chunks) == Path(finders.find(STATIC)).read_bytes()
