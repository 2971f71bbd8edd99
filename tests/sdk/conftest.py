"""Fixtures for tests that drive the SDK, the CLI and the agent against a real Flowdeck server.

``live_server_url`` starts the real server (``python -m config.embedded``: uvicorn + the ASGI app)
in a subprocess on the pytest test database and the test Redis, connecting as the application role
exactly as production does. Data a test creates must be committed for the server to see it, so
tests that use it also use ``transactional_db`` (``live_world`` does).

``flowdeck_server_with_periodic`` is the same server with the periodic services (scheduler, late
runs, reaper) sweeping every second, for end-to-end tests of crashes and schedules.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.db import connections

from tests.conftest import WorkspaceWorld, build_world

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url() -> str:
    db = connections["default"].settings_dict
    if "postgresql" not in db["ENGINE"]:
        pytest.fail("The live-server tests need PostgreSQL (set DATABASE_URL; scripts/test does).")
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class LiveServer:
    """A Flowdeck server subprocess that can be stopped and started again on the same port (the
    end-to-end tests take the server away in the middle of a run)."""

    def __init__(self, *, periodic_every: float | None, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.periodic_every = periodic_every
        self.log_path = log_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWDECK_API")}
        env.update(
            DATABASE_URL=_database_url(),
            DJANGO_SETTINGS_MODULE="config.settings",
            FLOWDECK_FAST_PASSWORD_HASHER="1",
            FLOWDECK_INPROCESS_PERIODIC="1" if self.periodic_every else "0",
            # These servers share the pytest database with tests that run the reaper at a simulated
            # time; a beat stamped by a server still running would read as a web outage to them.
            # The web-tier beat is proven by the fault suite, whose stack has a database of its own.
            FLOWDECK_WEB_TIER_BEAT="0",
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def start(self, timeout: float = 30) -> None:
        args = [sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning"]
        if self.periodic_every:
            args += ["--periodic-every", str(self.periodic_every)]
        else:
            args.append("--no-periodic")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"The Flowdeck server exited at start-up; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"The Flowdeck server did not answer within {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def flowdeck_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("live-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_server_url(flowdeck_server: LiveServer) -> str:
    if flowdeck_server.proc is None:  # a test stopped it and failed before starting it again
        flowdeck_server.start()
    return flowdeck_server.url


@pytest.fixture(scope="module")  # its reaper must not outlive the module that wants it
def flowdeck_server_with_periodic(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(periodic_every=1.0, log_dir=tmp_path_factory.mktemp("live-server-periodic"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live_world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    """A committed workspace with a member of every role and an agent service account (keys in
    ``live_world.keys[role]``), visible to the live server."""
    return build_world("acme")


@pytest.fixture
def sdk_env(live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path) -> dict[str, str]:
    """Environment for SDK subprocesses (the CLI, the agent) pointed at the live server with the
    agent's key; FLOWDECK_HOME isolates the config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(
        FLOWDECK_API_URL=live_server_url,
        FLOWDECK_API_KEY=live_world.keys["agent"],
        FLOWDECK_WORKSPACE=live_world.workspace.slug,
        FLOWDECK_HOME=str(tmp_path / "flowdeck-home"),
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="120",
    )
    return env
