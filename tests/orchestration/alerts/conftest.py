"""Fixtures shared by the SLA alerts tests. Each is named ``alerts_*`` and returns a small maker,
so the modules of this directory can share them without clashing with fixtures of their own."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.authz import Principal
from core.tenancy import rls_bypass
from orchestration.alerts.models import Incident, IncidentEvent, IncidentRun, NotificationChannel

_subjects = itertools.count()


@pytest.fixture
def alerts_principal():
    """``make(world, role)``: the Principal of the world's member with that role."""

    def make(world: Any, role: str) -> Principal:
        return Principal(workspace=world.workspace, role=role, user=world.users[role])

    return make


@pytest.fixture
def alerts_channel():
    """``make(world, name="ops", kind="email", config=None)``: a notification channel row."""

    def make(world: Any, name: str = "ops", kind: str = "email", config: dict | None = None) -> NotificationChannel:
        with rls_bypass():
            return NotificationChannel.all_objects.create(
                workspace=world.workspace, name=name, kind=kind, config=config or {"addresses": ["ops@example.com"]}
            )

    return make


@pytest.fixture
def alerts_incident():
    """``make(policy, *, flow=None, runs=(), status="open", …)``: an incident row of ``policy``
    (as the evaluator leaves it) with its runs and an "opened" timeline row."""

    def make(policy: Any, *, flow: Any = None, runs: Any = (), status: str = "open", severity: str = "critical",
             subject: str | None = None, title: str = "Run is late", cause: str = "No agent covers gpu") -> Incident:
        with rls_bypass():
            incident = Incident.all_objects.create(
                workspace_id=policy.workspace_id, policy=policy, policy_name=policy.name, kind=policy.kind,
                subject_key=subject or f"test:{next(_subjects)}",
                flow=flow, severity=severity, title=title, cause=cause, status=status,
                # Before the test's transaction began, whose start is the database clock services read.
                opened_at=timezone.now() - timedelta(days=1),
            )
            for run in runs:
                IncidentRun.all_objects.create(workspace_id=policy.workspace_id, incident=incident, flow_run=run)
            IncidentEvent.all_objects.create(workspace_id=policy.workspace_id, incident=incident, kind="opened",
                                             message=cause, at=incident.opened_at)
        return incident

    return make
