"""The fast renderer (core/fast_output.py) gives exactly what DRF's ``to_representation`` gives:
for the API's output serializers on real rows, on generated values of every kind it converts
itself, in other time zones, and for what it leaves to DRF (method fields, nested and dotted
sources, formats, dicts, skipped attributes, a rendering of the serializer's own)."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from core.fast_output import build
from core.serializers import represent
from core.tenancy import workspace_scope
from orchestration.api import serializers as s
from orchestration.api.channels import DeliveryOut
from orchestration.models import Flow, FlowRun, FlowVersion, Project, TaskRun
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, TaskRunFactory


def _drf(serializer_class: type[serializers.Serializer], instances: list[Any]) -> list[dict[str, Any]]:
    serializer = serializer_class()
    return [dict(serializer.to_representation(instance)) for instance in instances]


def _fast(serializer_class: type[serializers.Serializer], instances: list[Any]) -> list[dict[str, Any]]:
    return build(serializer_class())(instances)


def _same_json(a: Any, b: Any) -> bool:
    # Equal values of the same types (1 == 1.0 == True would hide a wrong conversion).
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.django_db
def test_the_api_output_serializers_render_real_rows_as_drf_does(world_a):
    version = FlowVersionFactory(flow__workspace=world_a.workspace, flow__project__workspace=world_a.workspace,
                                 parameters=[{"name": "n", "default": 3}])
    runs = [FlowRunFactory(flow_version=version, parameters={"n": i, "deep": [{"x": None}]}, labels=["a", "é"],
                           scheduled_start=timezone.now() + timedelta(seconds=i), idempotency_key=None if i else "k")
            for i in range(3)]
    TaskRunFactory(flow_run=runs[1], task_key="load", map_index=2, tags=["t"])
    with workspace_scope([world_a.workspace.pk]):
        rows = {
            s.ProjectOut: list(Project.objects.for_workspace(world_a.workspace)),
            s.FlowOut: list(Flow.objects.for_workspace(world_a.workspace).select_related("project")),
            s.FlowVersionOut: list(FlowVersion.objects.for_workspace(world_a.workspace)),
            s.FlowVersionSummaryOut: list(FlowVersion.objects.for_workspace(world_a.workspace)),
            s.FlowRunOut: list(FlowRun.objects.for_workspace(world_a.workspace)),
            s.TaskRunOut: list(TaskRun.objects.for_workspace(world_a.workspace)),
        }
        for serializer_class, instances in rows.items():
            assert instances, serializer_class
            expected = _drf(serializer_class, instances)
            assert all(_same_json(a, b) for a, b in zip(_fast(serializer_class, instances), expected, strict=True))
            # and through the shared serializer the views use
            assert represent(serializer_class, instances, many=True) == expected
            assert represent(serializer_class, instances[0]) == expected[0]


@pytest.mark.django_db
def test_a_page_of_runs_over_the_api_is_drf_s_rendering(world_a):
    version = FlowVersionFactory(flow__workspace=world_a.workspace, flow__project__workspace=world_a.workspace)
    FlowRunFactory.create_batch(5, flow_version=version, labels=["x"])
    body = world_a.client("developer", key=True).get(world_a.url("flow-runs/")).json()
    with workspace_scope([world_a.workspace.pk]):
        runs = {str(run.pk): run for run in FlowRun.objects.for_workspace(world_a.workspace)}
    assert len(body["results"]) == 5
    for item in body["results"]:
        assert item == dict(s.FlowRunOut(runs[item["id"]]).data)


aware_times = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                           timezones=st.sampled_from([dt.UTC, zoneinfo.ZoneInfo("Asia/Kolkata"),
                                                      zoneinfo.ZoneInfo("America/St_Johns"),
                                                      dt.timezone(timedelta(hours=-3, minutes=-30))]))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                        max_size=3), max_leaves=8)


class Kinds(serializers.Serializer):
    """One field of each kind the renderer converts itself, and of each it leaves to DRF."""

    an_id = serializers.UUIDField(allow_null=True)
    hex_id = serializers.UUIDField(format="hex")
    text = serializers.CharField(allow_null=True)
    number = serializers.IntegerField(allow_null=True)
    ratio = serializers.FloatField()
    flag = serializers.BooleanField(allow_null=True)
    choice = serializers.ChoiceField(choices=[(1, "one"), ("b", "bee")], allow_null=True, allow_blank=True)
    data = serializers.JSONField(allow_null=True)
    packed = serializers.JSONField(binary=True)
    when = serializers.DateTimeField(allow_null=True)
    year = serializers.DateTimeField(format="%Y")
    in_kolkata = serializers.DateTimeField(default_timezone=zoneinfo.ZoneInfo("Asia/Kolkata"))
    as_is = serializers.ReadOnlyField()
    nested_name = serializers.CharField(source="inner.name")
    whole = serializers.SerializerMethodField()
    maybe = serializers.CharField(required=False)

    def get_whole(self, obj: Any) -> str:
        return f"{obj.text}/{obj.number}"


@settings(max_examples=150, deadline=None)
@given(an_id=st.none() | st.uuids(), text=st.none() | st.text(max_size=8), number=st.none() | st.integers(),
       ratio=st.floats(allow_nan=False) | st.integers(),
       flag=st.none() | st.booleans() | st.sampled_from(["true", "false", "", 0]),
       choice=st.none() | st.sampled_from([1, "1", "b", "", "other", 2]), data=json_values,
       when=st.none() | aware_times | st.datetimes() | st.just("2026-01-01T00:00:00Z"),
       zone=st.sampled_from(["UTC", "Europe/Paris", "Pacific/Chatham"]), has_maybe=st.booleans())
def test_every_kind_renders_as_drf_renders_it(an_id, text, number, ratio, flag, choice, data, when, zone, has_maybe):
    instance = SimpleNamespace(an_id=an_id, hex_id=uuid.uuid4(), text=text, number=number, ratio=ratio, flag=flag,
                               choice=choice, data=data, packed={"a": [1]}, when=when,
                               year=dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
                               in_kolkata=dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
                               as_is=(1, 2), inner=SimpleNamespace(name="in"))
    if has_maybe:
        instance.maybe = "here"
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        expected = _drf(Kinds, [instance])
        assert all(_same_json(a, b) for a, b in zip(_fast(Kinds, [instance]), expected, strict=True)), expected
    assert ("maybe" in expected[0]) is has_maybe


def test_a_dict_in_place_of_an_instance_is_read_by_key():
    class Row(serializers.Serializer):
        id = serializers.UUIDField()
        name = serializers.CharField()
        at = serializers.DateTimeField(allow_null=True)
        count = serializers.IntegerField(required=False)

    row = {"id": uuid.uuid4(), "name": "ops", "at": timezone.now(), "keys": 1}
    assert _fast(Row, [row]) == _drf(Row, [row])
    assert _fast(Row, [row])[0]["name"] == "ops" and "count" not in _fast(Row, [row])[0]


def test_a_serializer_with_a_rendering_of_its_own_is_rendered_by_it_whole():
    # DeliveryOut renders a view of the delivery through its own to_representation
    assert DeliveryOut.to_representation is not serializers.Serializer.to_representation

    class Own(serializers.Serializer):
        name = serializers.CharField()

        def to_representation(self, instance: Any) -> dict[str, Any]:
            return {"own": instance.name.upper()}

    assert _fast(Own, [SimpleNamespace(name="a")]) == [{"own": "A"}]


def test_a_callable_attribute_is_called_as_drf_calls_it():
    class Named(serializers.Serializer):
        label = serializers.CharField()

    assert _fast(Named, [SimpleNamespace(label=lambda: "called")]) == [{"label": "called"}]
