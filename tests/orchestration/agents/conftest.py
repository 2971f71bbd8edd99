"""Fixtures for the agent protocol tests: principals as the REST layer builds them from API keys,
and due runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authz import Principal
from accounts.models import Role
from accounts.services.api_keys import api_key_authenticate
from orchestration.models import FlowRun, FlowVersion, WebTierBeat
from tests.orchestration.factories import AgentFactory, FlowRunFactory


def agent_principal(world) -> Principal:  # type: ignore[no-untyped-def]
    """The principal an agent's service-account key authenticates as."""
    return api_key_authenticate(world.keys[Role.AGENT])


def due_runs(version: FlowVersion, count: int, *, labels: list[str] | None = None,
             minutes_ago: int = 5) -> list[FlowRun]:
    start = timezone.now() - timedelta(minutes=minutes_ago)
    return FlowRunFactory.create_batch(count, flow_version=version, scheduled_start=start, labels=labels or [])


@pytest.fixture(autouse=True)
def _no_stale_web_tier_beat(db):  # type: ignore[no-untyped-def]
    """Live servers of other test modules share this database, and one that stopped leaves a stale
    web-tier beat, which holds the reaper back (a web outage). The tests here run the reaper alone;
    the row is removed inside the test's transaction only."""
    WebTierBeat.objects.all().delete()


@pytest.fixture
def actor_a(world_a) -> Principal:  # type: ignore[no-untyped-def]
    return agent_principal(world_a)


@pytest.fixture
def actor_b(world_b) -> Principal:  # type: ignore[no-untyped-def]
    return agent_principal(world_b)


@pytest.fixture
def version_a(flow_a) -> FlowVersion:  # type: ignore[no-untyped-def]
    from core.tenancy import rls_bypass

    with rls_bypass():
        return flow_a.versions.get()


@pytest.fixture
def agent_a(world_a):  # type: ignore[no-untyped-def]
    """A registered, healthy agent of workspace A with labels ``prod`` and ``gpu``."""
    now = timezone.now()
    return AgentFactory(workspace=world_a.workspace, service_account=world_a.agent, labels=["gpu", "prod"],
                        last_heartbeat_at=now, last_poll_at=now)
