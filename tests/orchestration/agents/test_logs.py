"""Logs: batched ingestion deduplicated by (run, sequence), bounded sizes with clear errors, log
upload off stores nothing (A3), listing with filters and a cursor, retention purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.authz import NotFound, PermissionDenied, principal_for_user
from accounts.models import Role, Workspace
from core.errors import InvalidInput
from core.tenancy import rls_bypass
from orchestration.models import LogEntry
from orchestration.services.logs import (
    MAX_BATCH_LINES,
    MAX_MESSAGE_LENGTH,
    logs_ingest,
    logs_list,
    purge_expired_logs,
)
from tests.orchestration.agents.conftest import due_runs
from tests.orchestration.factories import TaskRunFactory

pytestmark = pytest.mark.django_db


def line(sequence: int, message: str = "hello", level: int | str = "INFO", **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"sequence": sequence, "level": level, "timestamp": f"2026-01-01T00:00:{sequence % 60:02d}Z",
            "logger": "flowdeck.flow", "message": message, **extra}


def stored(run) -> list[int]:  # type: ignore[no-untyped-def]
    with rls_bypass():
        return list(LogEntry.objects.unscoped().filter(flow_run=run).order_by("sequence")
                    .values_list("sequence", flat=True))


@pytest.fixture
def run_a(version_a):  # type: ignore[no-untyped-def]
    return due_runs(version_a, 1)[0]


def test_a_batch_is_stored_and_announced_once(actor_a, run_a, django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        count = logs_ingest(actor=actor_a, flow_run=run_a, lines=[line(1), line(2, level=40), line(3)])
    # then
    assert count == 3
    assert stored(run_a) == [1, 2, 3]
    assert len(callbacks) == 1
    with rls_bypass():
        error = LogEntry.objects.unscoped().get(sequence=2)
    assert (error.level, error.logger, error.message) == (40, "flowdeck.flow", "hello")


def test_a_resent_batch_inserts_nothing_twice(actor_a, run_a, django_capture_on_commit_callbacks):
    # given
    logs_ingest(actor=actor_a, flow_run=run_a, lines=[line(1), line(2)])
    # when: the same batch, plus one new line, plus a duplicate inside the batch
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again = logs_ingest(actor=actor_a, flow_run=run_a, lines=[line(1), line(2), line(3), line(3)])
    # then
    assert again == 1
    assert stored(run_a) == [1, 2, 3]
    assert len(callbacks) == 1


def test_a3_with_log_upload_off_posts_are_accepted_and_nothing_is_stored(world_a, actor_a, run_a,
                                                                         django_capture_on_commit_callbacks):
    # given
    Workspace.objects.filter(pk=world_a.workspace.pk).update(log_upload_enabled=False)
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        count = logs_ingest(actor=actor_a, flow_run=run_a, lines=[line(1), line(2)])
    # then
    assert count == 0
    assert stored(run_a) == []
    assert callbacks == []


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([line(1, message="x" * (MAX_MESSAGE_LENGTH + 1))], "log_message_too_long"),
        ([line(i) for i in range(MAX_BATCH_LINES + 1)], "log_batch_too_large"),
        ([line(-1)], "invalid_log_line"),
        ([line(1, level="LOUD")], "invalid_log_line"),
        ([{**line(1), "timestamp": "yesterday"}], "invalid_log_line"),
        ([line(1, task_run_id="not-a-uuid")], "invalid_log_line"),
        ([line(1, task_key="")], "invalid_log_line"),
        ([line(1, task_key="extract", map_index=-2)], "invalid_log_line"),
        ([line(1, task_key="extract", task_run_id="6f1c5b1e-1111-4111-8111-111111111111")], "invalid_log_line"),
        ("not a list", "invalid"),
    ],
)
def test_bad_batches_are_clear_errors_and_store_nothing(actor_a, run_a, lines, code):
    # when / then
    with pytest.raises(InvalidInput) as excinfo:
        logs_ingest(actor=actor_a, flow_run=run_a, lines=lines)
    assert excinfo.value.code == code
    assert excinfo.value.message
    assert stored(run_a) == []


def test_limits_themselves_are_accepted(actor_a, run_a):
    # when
    count = logs_ingest(actor=actor_a, flow_run=run_a,
                        lines=[line(i, message="x" * MAX_MESSAGE_LENGTH) for i in range(MAX_BATCH_LINES)])
    # then
    assert count == MAX_BATCH_LINES


def test_a_task_run_of_another_flow_run_is_refused(actor_a, run_a, version_a):
    # given
    (other_run,) = due_runs(version_a, 1)
    foreign_task = TaskRunFactory(flow_run=other_run)
    # when / then
    with pytest.raises(InvalidInput) as excinfo:
        logs_ingest(actor=actor_a, flow_run=run_a, lines=[line(1, task_run_id=str(foreign_task.pk))])
    assert excinfo.value.code == "unknown_task_run"


def test_lines_name_their_task_run_by_key_and_map_index(actor_a, run_a):
    # given: the flow-run process knows task keys, not task-run ids
    parent = TaskRunFactory(flow_run=run_a, task_key="load", map_index=-1)
    child = TaskRunFactory(flow_run=run_a, task_key="load", map_index=3)
    # when
    count = logs_ingest(actor=actor_a, flow_run=run_a, lines=[
        line(1, task_key="load"), line(2, task_key="load", map_index=3),
        line(3, task_key="not-reported-yet", map_index=0), line(4),
    ])
    # then: resolved where the task run exists; a line whose task run is still on its way is kept
    assert count == 4
    with rls_bypass():
        links = dict(LogEntry.objects.unscoped().filter(flow_run=run_a).values_list("sequence", "task_run_id"))
    assert links == {1: parent.pk, 2: child.pk, 3: None, 4: None}


def test_another_workspaces_run_is_not_found(actor_b, run_a):
    with pytest.raises(NotFound):
        logs_ingest(actor=actor_b, flow_run=run_a, lines=[line(1)])
    with pytest.raises(NotFound):
        logs_list(actor=actor_b, flow_run=run_a)


def test_the_agent_role_cannot_read_logs(world_a, actor_a, run_a):
    with pytest.raises(PermissionDenied):
        logs_list(actor=actor_a, flow_run=run_a)


def test_listing_filters_and_pages_by_sequence(world_a, actor_a, run_a):
    # given
    task = TaskRunFactory(flow_run=run_a)
    logs_ingest(actor=actor_a, flow_run=run_a, lines=[
        line(1, "starting", "DEBUG"), line(2, "loading rows", "INFO", task_run_id=str(task.pk)),
        line(3, "row 7 failed", "ERROR", task_run_id=str(task.pk)), line(4, "done", "INFO"),
    ])
    viewer = principal_for_user(world_a.users[Role.VIEWER], world_a.workspace)

    def seqs(**filters):  # type: ignore[no-untyped-def]
        return [entry.sequence for entry in logs_list(actor=viewer, flow_run=run_a, **filters)]

    # when / then
    assert seqs() == [1, 2, 3, 4]
    assert seqs(level_gte="INFO") == [2, 3, 4]
    assert seqs(level_gte=40) == [3]
    assert seqs(task_run_id=task.pk) == [2, 3]
    assert seqs(search="ROW") == [2, 3]
    assert seqs(limit=2) == [1, 2]
    assert seqs(limit=2, after_sequence=2) == [3, 4]
    assert seqs(after_sequence=4) == []


def test_listing_limit_is_bounded(world_a, run_a):
    viewer = principal_for_user(world_a.users[Role.VIEWER], world_a.workspace)
    with pytest.raises(InvalidInput):
        logs_list(actor=viewer, flow_run=run_a, limit=0)


def test_retention_purges_logs_older_than_the_retention_period(actor_a, run_a):
    # given: logs stored now, and a purge that runs the retention period (7 days without billing) later
    logs_ingest(actor=actor_a, flow_run=run_a, lines=[line(1), line(2)])
    # when: a day before expiry, nothing goes; after it, everything does
    early = purge_expired_logs(now=timezone.now() + timedelta(days=settings.LOG_RETENTION_DAYS_UNBILLED - 1))
    late = purge_expired_logs(now=timezone.now() + timedelta(days=settings.LOG_RETENTION_DAYS_UNBILLED, minutes=1))
    # then
    assert (early, late) == (0, 2)
    assert stored(run_a) == []


def test_retention_days_can_be_passed_per_call(actor_a, run_a):
    # given
    logs_ingest(actor=actor_a, flow_run=run_a, lines=[line(1)])
    # when
    deleted = purge_expired_logs(now=timezone.now() + timedelta(days=2), retention_days=1)
    # then
    assert deleted == 1
