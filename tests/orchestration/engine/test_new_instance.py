"""core/rows.new, the unsaved instance built the way ``from_db`` builds one: for every model of the
project it holds what ``Model(**values)`` holds (each default as ``__init__`` gives it, a callable
default called per instance), it is as unsaved, it saves the same row, and it refuses a name that is
not a field's attname."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.apps import apps
from django.db import models
from django.utils import timezone

from core.rows import new
from core.tenancy import workspace_scope
from orchestration.models import FlowRun, TaskRun, TaskRunState
from tests.orchestration.factories import FlowRunFactory

PROJECT_APPS = ("core", "accounts", "orchestration", "billing")
PROJECT_MODELS = [m for m in apps.get_models() if m._meta.app_label in PROJECT_APPS and not m._meta.proxy]


def _comparable(value: object) -> object:
    # A callable default (uuid4, now, dict, list) makes a fresh value per instance: compare its type.
    if isinstance(value, (uuid.UUID, dt.datetime)):
        return type(value)
    return value


@pytest.mark.parametrize("model", PROJECT_MODELS, ids=lambda m: m._meta.label)
def test_defaults_are_those_model_init_gives(model: type[models.Model]) -> None:
    built, initialised = new(model), model()
    for field in model._meta.concrete_fields:
        ours, theirs = getattr(built, field.attname), getattr(initialised, field.attname)
        assert _comparable(ours) == _comparable(theirs), field.attname
    assert built._state.adding and built._state.db is None


def test_given_values_are_kept_and_mutable_defaults_are_not_shared() -> None:
    at, run_id = timezone.now(), uuid.uuid4()
    one = new(TaskRun, flow_run_id=run_id, task_key="extract", map_index=3, state_timestamp=at)
    two = new(TaskRun, flow_run_id=run_id, task_key="load")
    assert (one.flow_run_id, one.task_key, one.map_index, one.state_timestamp) == (run_id, "extract", 3, at)
    assert one.pk != two.pk  # uuid4 called for each
    assert one.tags == [] and one.tags is not two.tags  # default=list called for each
    assert two.map_index == TaskRun(task_key="load").map_index


def test_an_unknown_name_is_refused_as_model_init_refuses_it() -> None:
    with pytest.raises(TypeError, match="no field"):
        new(TaskRunState, flow_run="x")  # the attname is task_run_id, and there is no flow_run
    with pytest.raises(TypeError, match="no field"):
        new(TaskRunState, task_run=None)  # by attname only: task_run_id


@pytest.mark.django_db
def test_a_built_row_saves_and_reads_back_as_model_init_s(world_a, version_a) -> None:  # type: ignore[no-untyped-def]
    run = FlowRunFactory(flow_version=version_a)
    at = timezone.now()
    values = {"workspace_id": run.workspace_id, "flow_run_id": run.pk, "state_timestamp": at, "created_at": at,
              "tags": ["etl"], "flow_run_attempt": 1}
    with workspace_scope([world_a.workspace.pk]):
        ours = new(TaskRun, task_key="a", **values)
        ours.save(force_insert=True)
        theirs = TaskRun(task_key="b", **values)
        theirs.save(force_insert=True)
        read = {t.task_key: t for t in TaskRun.objects.for_workspace(world_a.workspace.pk).filter(flow_run=run)}
    assert read["a"].pk == ours.pk
    fields = [f.attname for f in TaskRun._meta.concrete_fields if f.attname not in ("id", "task_key")]
    assert {f: getattr(read["a"], f) for f in fields} == {f: getattr(read["b"], f) for f in fields}


def test_flow_run_related_objects_are_set_by_the_caller_not_by_new() -> None:
    # new() takes attnames only: FlowRun(flow=…) keeps the object too, new(FlowRun, flow_id=…) the id.
    flow_id = uuid.uuid4()
    run = new(FlowRun, flow_id=flow_id)
    assert run.flow_id == flow_id and not FlowRun.flow.is_cached(run)
