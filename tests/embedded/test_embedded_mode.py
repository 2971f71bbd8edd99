"""The README's first command runs Flowdeck on embedded defaults: SQLite, in-memory layers, no
servers. This starts that configuration for real (a copy of the run's freshly migrated database,
uvicorn in a subprocess, nothing from the test environment) and checks that it serves and that 16
concurrent sign-ups, and 16 clients creating runs, all succeed: no "database is locked" under
concurrent writers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.embedded.database import copy_database
from tests.embedded.database import embedded_env as _embedded_env

ROOT = Path(__file__).resolve().parents[2]
# Logs the name of every thread the server starts (see the file).
THREAD_LOG_PATH = ROOT / "tests" / "serving" / "thread_log"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory, migrated_sqlite):
    var_dir = tmp_path_factory.mktemp("embedded-var")
    env = {**_embedded_env(var_dir), "PYTHONPATH": str(THREAD_LOG_PATH),
           "FLOWDECK_TEST_THREAD_LOG": str(var_dir / "threads.txt")}
    copy_database(migrated_sqlite, var_dir)  # a freshly migrated database, as `manage.py migrate` leaves it
    port = _free_port()
    proc = subprocess.Popen(
        # Exactly what scripts/start ends in: one process, the in-process periodic loop included.
        [sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("embedded server did not start")
    yield base, var_dir
    proc.terminate()
    proc.wait(timeout=10)


def test_embedded_server_uses_sqlite_and_serves(embedded_server):
    base, var_dir = embedded_server
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    assert (var_dir / "flowdeck.sqlite3").exists()
    assert httpx.get(base + "/api/schema/").status_code == 200


def test_sixteen_concurrent_signups_on_sqlite_all_succeed(embedded_server):
    base, var_dir = embedded_server

    def sign_up(i: int) -> int:
        with httpx.Client(base_url=base, timeout=30) as client:
            client.get("/api/docs/")  # any page; the CSRF cookie comes from the SPA shell or allauth config
            config = client.get("/_allauth/browser/v1/config")
            assert config.status_code == 200
            token = client.cookies.get("csrftoken") or ""
            response = client.post(
                "/_allauth/browser/v1/auth/signup",
                json={"email": f"user{i}@example.com", "password": "a long and unusual passphrase 42"},
                headers={"X-CSRFToken": token},
            )
            return response.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(sign_up, range(16)))
    assert statuses == [401] * 16  # each one created and waits for email verification
    mails = list((var_dir / "mail").glob("*.log"))
    assert mails, "verification emails go to files in embedded mode"


# A workspace, a developer's key and a flow in the embedded server's SQLite file (as bench/api_http.py
# --embedded seeds it); prints the key and the flow's id.
SEED = """
import json
from accounts import keys
from accounts.models import ApiKey, Membership, Role, User, Workspace
from core.tenancy import rls_bypass
from orchestration.models import Flow, FlowVersion, Project
workspace = Workspace.objects.create(name="Load", slug="load")
user = User.objects.create_user("load@example.com", "x" * 20)
Membership.objects.create(workspace=workspace, user=user, role=Role.DEVELOPER)
key = keys.generate(ApiKey.Kind.USER)
with rls_bypass():
    ApiKey.all_objects.create(workspace=workspace, kind=ApiKey.Kind.USER, name="load", user=user,
                              lookup_prefix=key.lookup_prefix, secret_hash=key.secret_hash)
    project = Project.all_objects.create(workspace=workspace, name="load")
    flow = Flow.all_objects.create(workspace=workspace, project=project, name="load")
    FlowVersion.all_objects.create(workspace=workspace, flow=flow, version=1, content_hash="0" * 64, tasks=[])
print(json.dumps({"key": key.secret, "flow": str(flow.pk)}))
"""


def test_sixteen_clients_creating_runs_on_sqlite_all_succeed(embedded_server):
    """Issue 12's embedded target, scaled down: every request is a write transaction, and the
    server's request threads take SQLite's one write lock in turn (config/sqlite) instead of
    failing with "database is locked"."""
    base, var_dir = embedded_server
    seeded = subprocess.run([sys.executable, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=_embedded_env(var_dir),
                            check=True, capture_output=True, text=True)
    world = json.loads(seeded.stdout.strip().splitlines()[-1])

    def create_runs(client_index: int) -> list[int]:
        with httpx.Client(base_url=f"{base}/api/v1/workspaces/load/", timeout=30,
                          headers={"Authorization": f"Bearer {world['key']}"}) as client:
            return [client.post("flow-runs/", json={"flow": world["flow"]}).status_code for _ in range(6)]

    threads_before = (var_dir / "threads.txt").read_text().splitlines()
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = [status for batch in pool.map(create_runs, range(16)) for status in batch]
    assert statuses == [201] * 96
    # 96 creates published 96 events to the in-memory layer: none started a thread of its own (an
    # event loop per publish, or per request); only the request pool and named background threads.
    started = (var_dir / "threads.txt").read_text().splitlines()[len(threads_before):]
    assert all(name.startswith(("WSGI_", "flowdeck-")) for name in started), started
    assert len(started) == len(set(started))
