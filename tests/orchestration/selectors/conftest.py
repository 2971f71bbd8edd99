"""Fixtures of the selector tests: principals of world A built the way the adapters build them."""

from __future__ import annotations

import pytest
from django.db import transaction

from accounts.authz import Principal
from accounts.models import Role
from core.tenancy import workspace_scope


@pytest.fixture
def as_role(world_a):  # type: ignore[no-untyped-def]
    """A signed-in member of world A with ``role`` (a session principal)."""

    def build(role: str) -> Principal:
        return Principal(workspace=world_a.workspace, role=role, user=world_a.users[role])

    return build


@pytest.fixture
def scoped(world_a):  # type: ignore[no-untyped-def]
    """Call a selector inside world A's row-level-security scope, as a request would (in a
    savepoint, so an expected NotFound leaves the test's transaction usable)."""

    def call(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        with transaction.atomic(), workspace_scope([world_a.workspace.pk]):
            result = fn(*args, **kwargs)
            return list(result) if hasattr(result, "model") else result

    return call


@pytest.fixture
def developer(as_role) -> Principal:  # type: ignore[no-untyped-def]
    return as_role(Role.DEVELOPER)
