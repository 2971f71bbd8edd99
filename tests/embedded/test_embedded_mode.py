"""The README's first command runs Flowdeck on embedded defaults: SQLite, in-memory layers, no
servers. This starts that configuration for real (migrate + uvicorn in a subprocess, nothing from
the test environment) and checks that it serves and that 16 concurrent sign-ups all succeed: no
"database is locked" under concurrent writers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("embedded-var")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        FLOWDECK_VAR_DIR=str(var_dir), FLOWDECK_FAST_PASSWORD_HASHER="1", DJANGO_SETTINGS_MODULE="config.settings"
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
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
