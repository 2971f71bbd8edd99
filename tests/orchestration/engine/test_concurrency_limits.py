"""Tag concurrency limits: set, change, list, usage, delete."""

from __future__ import annotations

import pytest

from accounts.authz import NotFound, PermissionDenied
from accounts.models import Role
from core.errors import InvalidInput
from core.tenancy import rls_bypass
from orchestration.models import ConcurrencyLimit
from orchestration.services.concurrency import (
    concurrency_limit_delete,
    concurrency_limit_list,
    concurrency_limit_set,
    concurrency_limit_usage,
)

from .conftest import principal


def test_a_limit_is_set_changed_listed_and_deleted(world_a):
    dev = principal(world_a, Role.DEVELOPER)
    concurrency_limit_set(actor=dev, tag="db", limit=2)
    changed = concurrency_limit_set(actor=dev, tag="db", limit=5)
    assert [(row.tag, row.limit) for row in concurrency_limit_list(actor=dev)] == [("db", 5)]
    assert concurrency_limit_usage(actor=dev, tag="db") == {"tag": "db", "limit": 5, "active": 0, "task_run_ids": []}
    concurrency_limit_delete(actor=dev, tag="db")
    with rls_bypass():
        assert not ConcurrencyLimit.objects.for_workspace(world_a.workspace).filter(pk=changed.pk).exists()
    with pytest.raises(NotFound):
        concurrency_limit_delete(actor=dev, tag="db")


@pytest.mark.parametrize(("tag", "limit", "field"), [("", 1, "tag"), ("x" * 101, 1, "tag"), ("db", -1, "limit"),
                                                     ("db", "3", "limit"), ("db", True, "limit")])
def test_bad_limits_are_refused(world_a, tag, limit, field):
    with pytest.raises(InvalidInput) as error:
        concurrency_limit_set(actor=principal(world_a, Role.DEVELOPER), tag=tag, limit=limit)
    assert field in error.value.details


def test_a_viewer_cannot_set_limits_and_workspaces_do_not_share_them(world_a, world_b):
    with pytest.raises(PermissionDenied):
        concurrency_limit_set(actor=principal(world_a, Role.VIEWER), tag="db", limit=1)
    concurrency_limit_set(actor=principal(world_a, Role.DEVELOPER), tag="db", limit=1)
    assert concurrency_limit_list(actor=principal(world_b, Role.DEVELOPER)) == []
    with pytest.raises(NotFound):
        concurrency_limit_usage(actor=principal(world_b, Role.DEVELOPER), tag="db")
