"""core/rows.insert_many, the hand-written bulk insert of task runs, their history and log lines:
the rows it writes read back exactly as those bulk_create writes, conflicts are skipped and only the
new rows come back, and its statement is one text whatever the number of rows (so it is prepared
once per connection)."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.rows import insert_many
from core.tenancy import workspace_scope
from orchestration.models import LogEntry, TaskRun
from tests.orchestration.factories import FlowRunFactory

pytestmark = pytest.mark.django_db

FIELDS = [f.attname for f in TaskRun._meta.concrete_fields if f.attname != "id"]


def _task_runs(run, keys: list[str], now=None) -> list[TaskRun]:  # type: ignore[no-untyped-def]
    now = now or timezone.now()
    return [TaskRun(workspace_id=run.workspace_id, flow_run_id=run.pk, task_key=key, map_index=i - 1,
                    tags=["etl", {"nested": [1, None]}] if i else [], state_timestamp=now - timedelta(seconds=i),
                    start_time=None if i else now, created_at=now)
            for i, key in enumerate(keys)]


def test_rows_read_back_as_bulk_create_writes_them(world_a, version_a):
    run = FlowRunFactory(flow_version=version_a)
    now = timezone.now()
    ours, theirs = _task_runs(run, ["a", "b", "c"], now), _task_runs(run, ["x", "y", "z"], now)
    with workspace_scope([world_a.workspace.pk]):
        insert_many(TaskRun, ours)
        TaskRun.objects.unscoped().bulk_create(theirs)
        read = {t.task_key: t for t in TaskRun.objects.for_workspace(world_a.workspace.pk).filter(flow_run=run)}
    for mine, orm in zip(ours, theirs, strict=True):
        a, b = read[mine.task_key], read[orm.task_key]
        assert a.pk == mine.pk  # the ids made in Python, as bulk_create keeps them
        assert {f: getattr(a, f) for f in FIELDS if f != "task_key"} == {
            f: getattr(b, f) for f in FIELDS if f != "task_key"}


def test_conflicting_rows_are_skipped_and_only_new_ones_come_back(world_a, version_a):
    run = FlowRunFactory(flow_version=version_a)
    now = timezone.now()

    def lines(sequences: list[int]) -> list[LogEntry]:
        return [LogEntry(workspace_id=run.workspace_id, flow_run=run, sequence=s, level=20, timestamp=now,
                         message=f"line {s}", created_at=now) for s in sequences]

    with workspace_scope([world_a.workspace.pk]):
        assert sorted(insert_many(LogEntry, lines([1, 2, 3]), ignore_conflicts=True, returning="sequence")) == [1, 2, 3]
        # when: a batch re-sent with two more lines
        again = insert_many(LogEntry, lines([2, 3, 4, 5]), ignore_conflicts=True, returning="sequence")
        stored = list(LogEntry.objects.for_workspace(world_a.workspace.pk).filter(flow_run=run)
                      .order_by("sequence").values_list("sequence", "message"))
    assert sorted(again) == [4, 5]
    assert stored == [(s, f"line {s}") for s in (1, 2, 3, 4, 5)]


def test_one_statement_text_for_any_number_of_rows(world_a, version_a):
    run = FlowRunFactory(flow_version=version_a)
    sent: list[str] = []

    def capture(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        sent.append(sql)
        return execute(sql, params, many, context)

    with workspace_scope([world_a.workspace.pk]), connection.execute_wrapper(capture):
        insert_many(TaskRun, _task_runs(run, ["one"]))
        insert_many(TaskRun, _task_runs(run, [f"k{i}" for i in range(50)]))
    assert len(sent) == 2 and sent[0] == sent[1]
    with workspace_scope([world_a.workspace.pk]):
        assert TaskRun.objects.for_workspace(world_a.workspace.pk).filter(flow_run=run).count() == 51


# Any text a person can send (the API refuses NUL and lone surrogates, which PostgreSQL cannot
# store), any time to the microsecond, any sequence up to bigint's limit.
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.tuples(_TEXT, _TEXT.map(lambda s: s[:200]),
                                st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1),
                                             timezones=st.just(dt.UTC)),
                                st.integers(min_value=0, max_value=2**63 - 1)), min_size=1, max_size=5))
def test_any_text_time_and_number_read_back_as_written(world_a, version_a, lines):
    run = FlowRunFactory(flow_version=version_a)
    entries = [LogEntry(workspace_id=run.workspace_id, flow_run=run, sequence=sequence, level=20, timestamp=at,
                        logger=logger, message=message) for message, logger, at, sequence in lines]
    with workspace_scope([world_a.workspace.pk]):
        inserted = insert_many(LogEntry, entries, ignore_conflicts=True, returning="sequence")
        stored = {e.sequence: (e.message, e.logger, e.timestamp)
                  for e in LogEntry.objects.for_workspace(world_a.workspace.pk).filter(flow_run=run)}
    # the first line of each sequence is kept (the rest conflict), exactly as it was sent
    first = {}
    for message, logger, at, sequence in lines:
        first.setdefault(sequence, (message, logger, at))
    assert sorted(inserted) == sorted(first) and stored == first


def test_an_over_long_value_fails_as_bulk_create_does_and_writes_nothing(world_a, version_a):
    from django.db import DataError, transaction

    run = FlowRunFactory(flow_version=version_a)
    long_key = _task_runs(run, ["ok", "k" * 201])
    with workspace_scope([world_a.workspace.pk]):
        for insert in (lambda: insert_many(TaskRun, long_key),
                       lambda: TaskRun.objects.unscoped().bulk_create(long_key)):
            with pytest.raises(DataError, match="too long"), transaction.atomic():
                insert()
        assert not TaskRun.objects.for_workspace(world_a.workspace.pk).filter(flow_run=run).exists()


def test_update_many_writes_what_bulk_update_writes_and_only_under_its_condition(world_a, version_a):
    from core.rows import update_many

    run, other = FlowRunFactory(flow_version=version_a), FlowRunFactory(flow_version=version_a)
    now = timezone.now()
    fields = ["state_type", "state_name", "state_message", "tags", "start_time", "end_time", "attempt"]
    with workspace_scope([world_a.workspace.pk]):
        ours, theirs = _task_runs(run, ["a", "b"], now), _task_runs(run, ["x", "y"], now)
        stray = _task_runs(other, ["s"], now)
        insert_many(TaskRun, ours + theirs + stray)
        for i, task in enumerate(ours + theirs + stray):
            task.state_type, task.state_name, task.state_message = "COMPLETED", "Done", f"it's \"done\"\n{i % 2}"
            task.tags, task.start_time, task.end_time = {"k": [i % 2, None]}, None, now + timedelta(microseconds=7)
            task.attempt = 3
        # when: ours by update_many, limited to the run; theirs by bulk_update; the stray one is of another run
        update_many(TaskRun, ours + stray, fields, where="t.flow_run_id = %s", params=[run.pk])
        TaskRun.objects.unscoped().bulk_update(theirs, fields)
        read = {t.task_key: t for t in TaskRun.objects.for_workspace(world_a.workspace.pk)}
    for mine, orm in zip(ours, theirs, strict=True):
        assert {f: getattr(read[mine.task_key], f) for f in FIELDS if f != "task_key"} == {
            f: getattr(read[orm.task_key], f) for f in FIELDS if f != "task_key"}
        assert read[mine.task_key].state_message.startswith("it's \"done\"\n")
    assert read["s"].state_type == "PENDING"  # outside the condition: untouched


def test_insert_and_update_in_one_statement_write_what_the_two_write_apart(world_a, version_a):
    from django.test.utils import CaptureQueriesContext

    from core.rows import insert_many_and_update_many, update_many
    from orchestration.models import TaskRunState

    run = FlowRunFactory(flow_version=version_a)
    now = timezone.now()
    fields = ["state_type", "state_name", "state_message", "end_time"]
    with workspace_scope([world_a.workspace.pk]):
        together, apart = _task_runs(run, ["a", "b"], now), _task_runs(run, ["x", "y"], now)
        insert_many(TaskRun, together + apart)
        history = {}
        for task in together + apart:
            task.state_type, task.state_name, task.state_message = "COMPLETED", "Done", f"{task.task_key} it's done"
            task.end_time = now + timedelta(microseconds=7)
            history[task.task_key] = TaskRunState(workspace_id=run.workspace_id, task_run=task, type="COMPLETED",
                                                  name="Done", message=task.state_message, timestamp=now)
        # when: the first pair's history and states in one statement, the second pair's in two
        with CaptureQueriesContext(connection) as one:
            insert_many_and_update_many([history["a"], history["b"]], together, fields,
                                        where="t.flow_run_id = %s", params=[run.pk])
        insert_many(TaskRunState, [history["x"], history["y"]])
        update_many(TaskRun, apart, fields, where="t.flow_run_id = %s", params=[run.pk])
        read = {t.task_key: t for t in TaskRun.objects.for_workspace(world_a.workspace.pk)}
        states = {s.task_run.task_key: s for s in TaskRunState.objects.for_workspace(world_a.workspace.pk)
                  .select_related("task_run")}
    assert len(one.captured_queries) == 1, one.captured_queries
    for mine, other in (("a", "x"), ("b", "y")):
        assert {f: getattr(read[mine], f) for f in FIELDS if f not in ("task_key", "state_message")} == {
            f: getattr(read[other], f) for f in FIELDS if f not in ("task_key", "state_message")}
        assert read[mine].state_message == f"{mine} it's done"
        assert (states[mine].type, states[mine].message, states[mine].timestamp) == (
            states[other].type, f"{mine} it's done", states[other].timestamp)


def test_insert_values_writes_what_insert_many_writes_and_fills_defaults(world_a, version_a):
    from core.rows import insert_values

    run = FlowRunFactory(flow_version=version_a)
    at = timezone.now() - timedelta(minutes=3)
    line = {"workspace_id": run.workspace_id, "flow_run_id": run.pk, "level": 30, "timestamp": at,
            "logger": "etl", "message": "it's \"quoted\"\n", "task_run_id": None}
    with workspace_scope([world_a.workspace.pk]):
        assert insert_values(LogEntry, [{**line, "sequence": 1}], returning="sequence") == [1]
        insert_many(LogEntry, [LogEntry(**line, sequence=2, created_at=at)])
        # a row without created_at gets the field's default (now), as a new instance would
        insert_values(LogEntry, [{**line, "sequence": 3, "created_at": at}, {**line, "sequence": 4}])
        stored = {e.sequence: e for e in LogEntry.objects.for_workspace(world_a.workspace.pk).filter(flow_run=run)}
    fields = [f.attname for f in LogEntry._meta.concrete_fields if f.attname not in ("id", "sequence", "created_at")]
    assert {f: getattr(stored[1], f) for f in fields} == {f: getattr(stored[2], f) for f in fields}
    assert stored[3].created_at == at and abs(stored[4].created_at - timezone.now()) < timedelta(minutes=1)


def test_json_columns_and_text_read_back_as_written_past_what_orjson_writes(world_a, version_a):
    from orchestration.models import TaskRunState

    run = FlowRunFactory(flow_version=version_a)
    now = timezone.now()
    plain = {"city": "Zürich ☃", "n": [1, 2.5, None, True], "nested": {"deep": ["ok"]}}
    huge = {"id": 2**70, "neg": -(2**65)}  # past 64 bits: orjson refuses, the standard library writes it
    with workspace_scope([world_a.workspace.pk]):
        [task] = _task_runs(run, ["é-task ✓"], now)
        insert_many(TaskRun, [task])
        rows = [TaskRunState(workspace_id=run.workspace_id, task_run=task, type="RUNNING", name="Running",
                             message="naïve “quotes” \\ and\ttabs", details=details, timestamp=now)
                for details in (plain, huge)]
        insert_many(TaskRunState, rows)
        stored = list(TaskRunState.objects.for_workspace(world_a.workspace.pk).filter(task_run=task).order_by("id"))
        assert TaskRun.objects.for_workspace(world_a.workspace.pk).get(pk=task.pk).task_key == "é-task ✓"
    assert [s.details for s in stored] == [plain, huge]
    assert {s.message for s in stored} == {"naïve “quotes” \\ and\ttabs"}
    assert stored[0].timestamp == now
