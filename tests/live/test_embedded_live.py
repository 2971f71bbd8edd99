"""Embedded mode (SQLite, the in-memory channel layer, one process): the browser socket works
there too — seq, replay and live delivery from the in-process store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.embedded.database import copy_database, embedded_env
from tests.sdk.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, migrated_sqlite: Path) -> Iterator[tuple[str, Path]]:  # type: ignore[no-untyped-def]
    var_dir = tmp_path_factory.mktemp("embedded-live")
    env = embedded_env(var_dir)
    copy_database(migrated_sqlite, var_dir)  # a freshly migrated database, as `manage.py migrate` leaves it
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning", "--no-periodic"], cwd=ROOT, env=env)
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


def _verification_key(var_dir: Path) -> str:
    for message in sorted((var_dir / "mail").glob("*")):
        found = re.search(r"/account/verify-email/([^\s\"<]+)", message.read_text())
        if found:
            return urllib.parse.unquote(found.group(1))
    raise AssertionError("no verification e-mail")


def test_the_browser_socket_works_in_embedded_mode(embedded: tuple[str, Path]) -> None:
    base, var_dir = embedded
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get("/_allauth/browser/v1/config")
        signup = http.post("/_allauth/browser/v1/auth/signup",
                           json={"email": "solo@example.com", "password": "a long and unusual passphrase 42"},
                           headers={"X-CSRFToken": http.cookies.get("csrftoken") or ""})
        assert signup.status_code == 401, signup.text  # signed up; the e-mail is to be verified
        verified = http.post("/_allauth/browser/v1/auth/email/verify", json={"key": _verification_key(var_dir)},
                             headers={"X-CSRFToken": http.cookies.get("csrftoken") or ""})
        assert verified.status_code == 200, verified.text
        slug = http.get("/api/v1/workspaces/").json()[0]["slug"]
        headers = {"Origin": base, "Cookie": f"sessionid={http.cookies['sessionid']}"}
        url = base.replace("http", "ws") + f"/ws/v1/workspaces/{slug}/events/"

        def create_project(name: str) -> str:
            response = http.post(f"/api/v1/workspaces/{slug}/projects/", json={"name": name},
                                 headers={"X-CSRFToken": http.cookies.get("csrftoken") or ""})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        with connect(url, additional_headers=headers) as ws:
            hello = json.loads(ws.recv(timeout=5))
            assert hello["type"] == "hello"
            first = create_project("one")
            event = json.loads(ws.recv(timeout=5))
            assert (event["event"]["type"], event["event"]["data"]["id"]) == ("project.created", first)
            assert event["seq"] == hello["seq"] + 1
        second = create_project("two")
        with connect(url + f"?after={event['seq']}", additional_headers=headers) as ws:
            replayed = json.loads(ws.recv(timeout=5))
            assert (replayed["event"]["data"]["id"], replayed["seq"]) == (second, event["seq"] + 1)
            assert json.loads(ws.recv(timeout=5)) == {"type": "hello", "seq": event["seq"] + 1, "workspace": slug}
