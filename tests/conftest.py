"""Shared fixtures. The suite runs against real PostgreSQL and Redis (see scripts/test): the test
database is created and migrated as the owner role, then every test connects as the application
role that row-level security applies to, exactly as production does."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from rest_framework.test import APIClient

from accounts import key_cache
from accounts.models import Role, ServiceAccount, User, Workspace
from tests.factories import MembershipFactory, ServiceAccountFactory, UserFactory, WorkspaceFactory, make_key

HUMAN_ROLES = [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER]


def pytest_configure(config: pytest.Config) -> None:
    # The test process is no web tier: its in-process ASGI apps must not stamp the web-tier beat
    # (server subprocesses get their own settings from the environment and keep it on).
    settings.FLOWDECK_WEB_TIER_BEAT = False
    _flush_retries_deadlocks()


def _flush_retries_deadlocks() -> None:
    """A transactional test's database flush (one TRUNCATE of every table) can deadlock with a
    request that a live-server subprocess of another test is still answering against the same
    test database (an agent's last heartbeat): the order tests run in decides, more so on
    pytest-xdist workers. PostgreSQL then aborts one of the two; the flush is tried again (it runs
    in a transaction of its own, so nothing of the failed try remains)."""
    from django.core.management.base import CommandError
    from django.core.management.commands import flush

    original = flush.Command.handle

    def handle(self: flush.Command, **options: Any) -> Any:
        for attempt in range(1, 4):
            try:
                return original(self, **options)
            except CommandError as exc:
                if attempt == 3 or "deadlock detected" not in str(exc.__cause__ or ""):
                    raise
                time.sleep(0.2 * attempt)
        return None

    flush.Command.handle = handle


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    """After pytest-django creates and migrates the test database as the owner, switch every
    connection to the application role (not owner, not superuser, no BYPASSRLS)."""
    if not settings.IS_POSTGRES:
        yield
        return
    app_role = settings.RLS_APP_ROLE
    with django_db_blocker.unblock():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [app_role])
            has_role = cursor.fetchone() is not None
            if has_role:
                # Test teardown flushes tables with TRUNCATE, which production never needs.
                cursor.execute(f'GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO "{app_role}"')
        owner = connections["default"].settings_dict["USER"]
        if has_role:
            _reconnect_as(app_role)
    yield
    if settings.IS_POSTGRES and has_role:
        _reconnect_as(owner)


def _reconnect_as(user: str) -> None:
    """Drop every open (and pooled) connection so the next one logs in as ``user``."""
    for conn in connections.all():
        conn.close()
        if conn.alias in getattr(conn, "_connection_pools", {}):
            conn.close_pool()
        conn.settings_dict["USER"] = user


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The embedded default's SQLite database, migrated once for the run: the tests that start
    Flowdeck in embedded mode each begin from a copy (tests/embedded/database.py)."""
    from tests.embedded.database import migrate

    return migrate(tmp_path_factory.mktemp("migrated-sqlite"))


@pytest.fixture
def one_rate_window():  # type: ignore[no-untyped-def]
    """Start the test five seconds into a fresh minute (and hour): the fixed-window rate limits
    count per minute, so a test whose attempts straddled a boundary would see its count reset."""
    import time_machine

    with time_machine.travel(datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC), tick=True):
        yield


@pytest.fixture(autouse=True)
def _clean_cache():  # type: ignore[no-untyped-def]
    cache.clear()
    key_cache.clear()
    yield


@pytest.fixture(autouse=True)
def _mail_in_memory(settings):  # type: ignore[no-untyped-def]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@dataclass
class WorkspaceWorld:
    """One workspace with a member of every role and an agent service account, each with a key."""

    workspace: Workspace
    users: dict[str, User] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    agent: ServiceAccount | None = None

    def client(self, role: str, *, key: bool = False) -> APIClient:
        """An API client for a role: session login, or its API key with ``key=True`` (the agent
        role only has a key)."""
        client = APIClient()
        if key or role == Role.AGENT:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.keys[role]}")
        else:
            client.force_login(self.users[role])
        return client

    def url(self, suffix: str = "") -> str:
        return f"/api/v1/workspaces/{self.workspace.slug}/{suffix}"


def build_world(name: str) -> WorkspaceWorld:
    workspace = WorkspaceFactory(name=name.title(), slug=name)
    world = WorkspaceWorld(workspace=workspace)
    for role in HUMAN_ROLES:
        user = UserFactory(email=f"{role}@{name}.example.com")
        MembershipFactory(workspace=workspace, user=user, role=role)
        world.users[role] = user
        world.keys[role] = make_key(workspace=workspace, user=user)[1]
    world.agent = ServiceAccountFactory(workspace=workspace, name="agent", role=Role.AGENT)
    world.keys[Role.AGENT] = make_key(workspace=workspace, service_account=world.agent)[1]
    return world


@pytest.fixture
def world_a(db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


@pytest.fixture
def world_b(db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("globex")


@pytest.fixture
def api() -> APIClient:
    return APIClient()
