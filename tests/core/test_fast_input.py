"""core.fast_input gives exactly DRF's validated data, or gives up: for generated bodies of every
input serializer of the API (valid ones and ones wrong in every way a client can be wrong), its
answer is either "DRF decides" or what DRF itself returns, value for value and type for type. And
it does answer for the bodies agents send on the hot path (else it would be dead weight)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import fields as f
from rest_framework import serializers

from core.fast_input import fast_validator
from core.serializers import StrictInputSerializer, validated


def _all_input_serializers() -> list[type[serializers.Serializer]]:
    import accounts.api.serializers  # noqa: F401 - each module declares its own
    import orchestration.api.alerts  # noqa: F401
    import orchestration.api.channels  # noqa: F401
    import orchestration.api.serializers  # noqa: F401
    from billing.api.serializers import CheckoutIn  # validated() with a plain (not strict) serializer

    found: list[type[serializers.Serializer]] = [CheckoutIn]
    todo = list(StrictInputSerializer.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: c.__qualname__)


class Everything(StrictInputSerializer):
    """What no API serializer happens to hold: lists of fields DRF checks itself, nullable and
    defaulted ones of every kind, a dict, a nested list of objects."""

    at = serializers.DateTimeField(required=False, allow_null=True)
    ids = serializers.ListField(child=serializers.UUIDField(allow_null=True), required=False, max_length=3)
    whens = serializers.ListField(child=serializers.DateTimeField(), required=False, min_length=1)
    bag = serializers.DictField(required=False)
    count = serializers.IntegerField(required=False, allow_null=True, default=3, min_value=1)
    note = serializers.CharField(required=False, allow_null=True, allow_blank=True, min_length=2, default="n")
    kind = serializers.ChoiceField(choices=["a", "b"], allow_blank=True, required=False)
    flag = serializers.BooleanField(required=False)


class Nested(StrictInputSerializer):
    items = serializers.ListField(child=Everything(), allow_empty=False)
    one = Everything(required=False, allow_null=True)


FAST = [cls for cls in _all_input_serializers() if fast_validator(cls) is not None]
assert Everything in FAST and Nested in FAST

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=5),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_ODD_TEXT = st.sampled_from(["", "  ", " padded ", "nul\x00", "half \ud800", "é€𝄞", "\t\n"])
_CLEAN = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_ABSENT = object()


def _valid_and_odd(field: f.Field, depth: int) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """Values ``field`` usually accepts, and values it may well refuse (or accept differently)."""
    if isinstance(field, serializers.Serializer):
        if depth >= 2:
            return _JUNK, _JUNK
        return _body(type(field), depth + 1, odd=False), _body(type(field), depth + 1)
    if isinstance(field, f.ListField):
        valid_child, odd_child = _valid_and_odd(field.child, depth + 1)
        low = field.min_length or 0
        high = max(low, min(field.max_length if field.max_length is not None else 3, 3))
        return (st.lists(valid_child, min_size=low, max_size=high),
                st.one_of(st.lists(st.one_of(valid_child, odd_child, st.none()), max_size=high + 1), _JUNK))
    if isinstance(field, f.ChoiceField):
        return (st.sampled_from(list(field.choice_strings_to_values)),
                st.one_of(st.just(""), st.text(max_size=4), st.integers(0, 3)))
    if isinstance(field, f.CharField) and not isinstance(field, f.UUIDField):
        longest = field.max_length or 30
        around = st.integers(max(0, longest - 2), longest + 2).map(lambda n: "x" * n)
        return (st.text(_CLEAN, min_size=field.min_length or 0, max_size=min(longest, 12)),
                st.one_of(_ODD_TEXT, around, st.integers(-5, 5), st.floats(allow_nan=False, width=16)))
    if isinstance(field, f.IntegerField):
        low = field.min_value if field.min_value is not None else -50
        high = field.max_value if field.max_value is not None else 50
        edges = [v + d for v in (field.min_value, field.max_value) if v is not None for d in (-1, 0, 1)]
        return (st.integers(low, min(high, low + 100)),
                st.one_of(st.sampled_from(edges or [0]), st.booleans(), st.just(2.0), st.just("7")))
    if isinstance(field, f.DateTimeField):
        return (st.sampled_from(["2026-12-04T10:00:00Z", "2026-12-04T10:00:00.123456+02:00", "2026-12-04T10:00:00"]),
                st.one_of(st.sampled_from(["2026-12-04", "yesterday", "", "  ", "2026-02-30T10:00:00Z",
                                           " 2026-12-04T10:00:00Z", "2026-12-04T10:00:00+14:30", "2026-12-04 10:00",
                                           "20261204T100000Z"]), _JUNK))
    if isinstance(field, f.UUIDField):
        return (st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex)),
                st.one_of(st.just("not-a-uuid"), st.just(""), _JUNK))
    if isinstance(field, f.BooleanField):
        return st.booleans(), st.one_of(st.sampled_from(["true", "no", 1, 0, "maybe"]), _JUNK)
    if isinstance(field, f.DictField):
        return st.dictionaries(st.text(max_size=3), st.integers(), max_size=3), _JUNK
    # A field of our own (the log level …): whatever JSON gives.
    return st.one_of(st.integers(-5, 120), st.text(max_size=8)), _JUNK


def _body(cls: type[serializers.Serializer], depth: int = 0, odd: bool = True) -> st.SearchStrategy[Any]:
    """Bodies for ``cls``: every field valid, then none, one or two of them made absent, null or odd,
    now and then an unknown key, or not an object at all (``odd=False``: only the valid body)."""
    fields = {name: _valid_and_odd(field, depth) for name, field in cls().fields.items() if not field.read_only}
    valid = st.fixed_dictionaries({name: pair[0] for name, pair in fields.items()})
    if not odd or not fields:
        return valid

    @st.composite
    def near_valid(draw: Any) -> Any:
        body = draw(valid)
        for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)):
            change = draw(st.sampled_from(["absent", "null", "odd"]))
            if change == "absent":
                body.pop(name)
            else:
                body[name] = None if change == "null" else draw(fields[name][1])
        if draw(st.integers(0, 9)) == 0:
            body[draw(st.sampled_from(["extra", "workspace"]))] = 1
        return body

    return st.one_of(near_valid(), near_valid(), near_valid(), _JUNK)


def _drf(cls: type[serializers.Serializer], data: Any) -> Any:
    serializer = cls(data=data)
    return dict(serializer.validated_data) if serializer.is_valid() else None


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == True would hide a wrong answer)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("cls", FAST, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_fast_path_answers_as_drf_or_not_at_all(cls, data):
    body = data.draw(_body(cls))
    fast = fast_validator(cls)(body)  # type: ignore[misc]
    if fast is not None:
        drf = _drf(cls, body)
        assert drf is not None, (body, fast)
        assert _same(fast, drf), (body, fast, drf)


LOG_LINE = {"sequence": 7, "level": "INFO", "timestamp": "2026-12-04T10:00:00.5Z", "logger": "flowdeck.task",
            "message": "  loaded 1,200 rows\n", "task_key": "extract", "map_index": -1}


@pytest.mark.parametrize(("name", "body"), [
    ("LogBatchIn", {"lines": [LOG_LINE, {**LOG_LINE, "sequence": 8, "level": 40, "task_run_id": str(uuid.uuid4()),
                                         "task_key": None}]}),
    ("TaskRunBatchIn", {"attempt": 1, "reports": [
        {"task_key": "extract", "map_index": 3, "state": {"type": "RUNNING"}},
        {"task_key": "load", "state": {"type": "COMPLETED", "name": "Done", "result_ref": "s3://x"},
         "expected_version": 2}]}),
    ("SetStateIn", {"state": {"type": "COMPLETED", "message": "ok"}, "attempt": 1}),
    ("FlowRunHeartbeatIn", {"attempt": 2, "lease_seconds": 90}),
    ("ClaimIn", {"limit": 1}),
    # The combined report the SDK's reporter sends (its own validate(): at least one part).
    ("FlowRunReportIn", {"attempt": 1, "heartbeat": {}, "task_runs": [
        {"task_key": "extract", "state": {"type": "COMPLETED", "result_ref": "s3://x"}}],
        "logs": [LOG_LINE], "state": {"type": "COMPLETED"}, "expected_version": 3}),
    ("FlowRunReportIn", {"attempt": 4, "logs": [LOG_LINE, {**LOG_LINE, "sequence": 8}]}),
])
def test_the_bodies_agents_send_take_the_fast_path_with_drfs_answer(name, body):
    cls = next(c for c in FAST if c.__name__ == name)
    fast = fast_validator(cls)(body)  # type: ignore[misc]
    assert fast is not None
    assert _same(fast, _drf(cls, body)) and _same(validated(cls, body), fast)
    if name == "LogBatchIn":  # a message keeps its spaces; a logger is trimmed; defaults filled in
        assert fast["lines"][0]["message"] == "  loaded 1,200 rows\n" and fast["lines"][1]["logger"] == "flowdeck.task"
    if name == "FlowRunReportIn" and "heartbeat" in body:  # nested defaults filled in
        assert fast["heartbeat"] == {"lease_seconds": 60} and fast["task_runs"][0]["map_index"] == -1


@pytest.mark.parametrize(("body", "error"), [
    ({"attempt": 1}, "Send at least one of heartbeat, task_runs, logs, state."),
    ({"attempt": 1, "logs": [LOG_LINE], "expected_version": 2}, "Only with a state."),
])
def test_a_body_its_validate_method_refuses_gets_drfs_errors(body, error):
    from orchestration.api.serializers import FlowRunReportIn

    assert fast_validator(FlowRunReportIn)(body) is None  # type: ignore[misc]  (DRF decides)
    with pytest.raises(serializers.ValidationError) as raised:
        validated(FlowRunReportIn, body)
    assert error in str(raised.value.detail)


def test_an_invalid_body_gets_drfs_errors():
    from orchestration.api.serializers import LogBatchIn

    with pytest.raises(serializers.ValidationError) as raised:
        validated(LogBatchIn, {"lines": [{**LOG_LINE, "message": "bad \x00"}]})
    assert "Null characters are not allowed." in str(raised.value.detail)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/St_Johns"])
def test_times_come_in_the_current_zone_as_drf_puts_them(zone):
    from django.utils import timezone

    from orchestration.api.serializers import LogBatchIn

    body = {"lines": [{**LOG_LINE, "sequence": i, "timestamp": stamp} for i, stamp in enumerate(
        ["2026-12-04T10:00:00.5Z", "2026-07-01T23:30:00+05:30", "2026-03-29T01:30:00"])]}
    with timezone.override(zone):
        fast = fast_validator(LogBatchIn)(body)  # type: ignore[misc]
        drf = _drf(LogBatchIn, body)
    assert fast is not None and _same(fast, drf)
    # equal instants may still be in different zones: the zone each time is given in is DRF's too
    assert [line["timestamp"].tzinfo for line in fast["lines"]] == [line["timestamp"].tzinfo for line in drf["lines"]]
    assert {str(line["timestamp"].tzinfo) for line in fast["lines"]} == {zone}
    # and the zone looked up for one body is not kept for the next
    with timezone.override("Asia/Tokyo"):
        again = fast_validator(LogBatchIn)(body)  # type: ignore[misc]
    assert str(again["lines"][0]["timestamp"].tzinfo) == "Asia/Tokyo"
