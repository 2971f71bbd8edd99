"""Concurrent registrations of the same metadata (an SDK retried by CI, two deploy jobs at once)
create exactly one version: the flow row is locked while the content hash is checked. Real
parallel connections on PostgreSQL."""

from __future__ import annotations

import copy
import threading

import pytest
from django.db import connection

from accounts.authz import Principal
from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.models import Flow, FlowVersion, Project
from orchestration.services.flows import flow_register
from tests.orchestration.api.conftest import METADATA


@pytest.mark.django_db(transaction=True)
def test_parallel_registrations_of_one_flow_create_one_version(world_a):
    actor = Principal(workspace=world_a.workspace, role=Role.DEVELOPER, user=world_a.users[Role.DEVELOPER])
    barrier = threading.Barrier(6)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def register() -> None:
        try:
            barrier.wait()
            with workspace_scope([world_a.workspace.pk]):
                version, created = flow_register(actor=actor, project_name="etl", name="nightly",
                                                 metadata=copy.deepcopy(METADATA))
            results.append((version.version, created))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=register) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert sorted(results) == [(1, False)] * 5 + [(1, True)]
    with rls_bypass():
        assert Project.all_objects.filter(workspace=world_a.workspace).count() == 1
        assert Flow.all_objects.filter(workspace=world_a.workspace).count() == 1
        assert FlowVersion.all_objects.filter(workspace=world_a.workspace).count() == 1
