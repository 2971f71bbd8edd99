"""Fixtures for schedule tests."""

from __future__ import annotations

import pytest

from accounts.authz import Principal
from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.engine import db_now


@pytest.fixture
def developer_a(world_a) -> Principal:
    return Principal(workspace=world_a.workspace, role=Role.DEVELOPER, user=world_a.users[Role.DEVELOPER])


@pytest.fixture
def clock():
    """The database clock (D6), read in its own transaction."""

    def read():
        with rls_bypass():
            return db_now()

    return read
