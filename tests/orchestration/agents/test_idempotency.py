"""D4: agent POSTs carry idempotency keys. A replay returns the stored response and redoes
nothing; the same key with another body is 422; concurrent identical calls apply once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections

from core.tenancy import rls_bypass
from orchestration.models import IdempotencyRecord, LogEntry
from orchestration.services.idempotency import IdempotencyKeyReused, idempotent_call, purge_idempotency_records
from orchestration.services.logs import logs_ingest
from tests.orchestration.agents.conftest import agent_principal, due_runs

LINES = [{"sequence": 1, "level": "INFO", "timestamp": "2026-01-01T00:00:00Z", "logger": "flow", "message": "hi"}]


def _report(actor, run, lines):  # type: ignore[no-untyped-def]
    """What the log endpoint does: ingest under the request's idempotency key."""
    return lambda: (201, {"stored": logs_ingest(actor=actor, flow_run=run, lines=lines)})


@pytest.mark.django_db
def test_a_replay_returns_the_stored_response_without_redoing_anything(world_a, actor_a, version_a):
    # given
    (run,) = due_runs(version_a, 1)
    calls = []

    def compute():  # type: ignore[no-untyped-def]
        calls.append(1)
        return 201, {"call": len(calls)}

    first = idempotent_call(workspace=world_a.workspace, scope="logs", key="k1", body={"a": 1}, compute=compute)
    # when
    replay = idempotent_call(workspace=world_a.workspace, scope="logs", key="k1", body={"a": 1}, compute=compute)
    # then
    assert first == replay == (201, {"call": 1})
    assert len(calls) == 1


@pytest.mark.django_db
def test_the_same_key_with_a_different_body_is_422(world_a):
    # given
    idempotent_call(workspace=world_a.workspace, scope="logs", key="k1", body={"a": 1}, compute=lambda: (200, {}))
    # when / then
    with pytest.raises(IdempotencyKeyReused) as excinfo:
        idempotent_call(workspace=world_a.workspace, scope="logs", key="k1", body={"a": 2},
                        compute=lambda: (200, {}))
    assert (excinfo.value.status_code, excinfo.value.code) == (422, "idempotency_key_reused")


@pytest.mark.django_db
def test_keys_are_per_workspace_and_per_scope(world_a, world_b):
    # when
    results = [
        idempotent_call(workspace=world_a.workspace, scope="logs", key="k", body={}, compute=lambda: (200, {"n": 1})),
        idempotent_call(workspace=world_a.workspace, scope="state", key="k", body={}, compute=lambda: (200, {"n": 2})),
        idempotent_call(workspace=world_b.workspace, scope="logs", key="k", body={}, compute=lambda: (200, {"n": 3})),
    ]
    # then
    assert [body["n"] for _, body in results] == [1, 2, 3]


@pytest.mark.django_db
def test_a_failed_compute_stores_nothing_so_a_retry_computes_again(world_a):
    # given
    def boom():  # type: ignore[no-untyped-def]
        raise RuntimeError("lost connection")

    with pytest.raises(RuntimeError):
        idempotent_call(workspace=world_a.workspace, scope="logs", key="k", body={}, compute=boom)
    # when
    result = idempotent_call(workspace=world_a.workspace, scope="logs", key="k", body={}, compute=lambda: (200, {}))
    # then
    assert result == (200, {})


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 201])
def test_a_bad_key_is_a_clear_error(world_a, key):
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        idempotent_call(workspace=world_a.workspace, scope="logs", key=key, body={}, compute=lambda: (200, {}))


@pytest.mark.django_db
def test_purge_removes_only_old_records(world_a):
    # given
    idempotent_call(workspace=world_a.workspace, scope="logs", key="old", body={}, compute=lambda: (200, {}))
    with rls_bypass():
        IdempotencyRecord.objects.unscoped().filter(key="old").update(
            created_at=IdempotencyRecord.objects.unscoped().get(key="old").created_at - timedelta(days=2))
    idempotent_call(workspace=world_a.workspace, scope="logs", key="new", body={}, compute=lambda: (200, {}))
    # when
    deleted = purge_idempotency_records(older_than=timedelta(days=1))
    # then
    assert deleted == 1
    with rls_bypass():
        assert list(IdempotencyRecord.objects.unscoped().values_list("key", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
def test_five_concurrent_identical_reports_apply_once(world_a, version_a):
    # given
    (run,) = due_runs(version_a, 1)
    actor = agent_principal(world_a)
    results: list[tuple[int, dict]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(5)

    def report() -> None:
        try:
            barrier.wait()
            results.append(idempotent_call(workspace=world_a.workspace, scope="logs", key="batch-1",
                                           body={"lines": LINES}, compute=_report(actor, run, LINES)))
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=report) for _ in range(5)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert errors == []
    assert results == [(201, {"stored": 1})] * 5
    with rls_bypass():
        assert IdempotencyRecord.objects.unscoped().count() == 1
        assert LogEntry.objects.unscoped().count() == 1
