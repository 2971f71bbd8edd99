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


def _all_input_serializers() -> list[type[StrictInputSerializer]]:
    import accounts.api.serializers  # noqa: F401 - each module declares its own
    import orchestration.api.alerts  # noqa: F401
    import orchestration.api.channels  # noqa: F401
    import orchestration.api.serializers  # noqa: F401

    found: list[type[StrictInputSerializer]] = []
    todo = list(StrictInputSerializer.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: c.__qualname__)


FAST = [cls for cls in _all_input_serializers() if fast_validator(cls) is not None]

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=5),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_ANY_TEXT = st.text(max_size=12)
_ODD_TEXT = st.sampled_from(["", "  ", " padded ", "nul\x00", "half \ud800", "é€𝄞", "\t\n"])


def _text(field: f.CharField) -> st.SearchStrategy[Any]:
    longest = field.max_length or 30
    around = st.integers(max(0, longest - 2), longest + 2).map(lambda n: "x" * n)
    return st.one_of(_ANY_TEXT, _ODD_TEXT, around, st.integers(-5, 5), st.floats(allow_nan=False, width=16))


def _number(field: f.IntegerField) -> st.SearchStrategy[Any]:
    edges = [v + d for v in (field.min_value, field.max_value) if v is not None for d in (-1, 0, 1)]
    return st.one_of(st.integers(-10, 10), st.sampled_from(edges or [0]), st.booleans(), st.just(2.0), st.just("7"))


def _value(field: f.Field, depth: int) -> st.SearchStrategy[Any]:
    if isinstance(field, serializers.Serializer):
        return _body(type(field), depth + 1) if depth < 3 else _JUNK
    if isinstance(field, f.ListField):
        child = _value(field.child, depth + 1) if depth < 3 else _JUNK
        return st.one_of(st.lists(st.one_of(child, st.none()), max_size=3), _JUNK)
    if isinstance(field, f.ChoiceField):
        return st.one_of(st.sampled_from([*field.choice_strings_to_values, ""]), _ANY_TEXT, st.integers(0, 3))
    if isinstance(field, f.CharField) and not isinstance(field, (f.UUIDField,)):
        return _text(field)
    if isinstance(field, f.IntegerField):
        return _number(field)
    if isinstance(field, f.DateTimeField):
        return st.one_of(st.sampled_from(["2026-12-04T10:00:00Z", "2026-12-04T10:00:00.123456+02:00",
                                          "2026-12-04T10:00:00", "2026-12-04", "yesterday", ""]), _JUNK)
    if isinstance(field, f.UUIDField):
        return st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.just("not-a-uuid"), _JUNK)
    if isinstance(field, f.BooleanField):
        return st.one_of(st.booleans(), st.sampled_from(["true", "no", 1, 0]), _JUNK)
    return _JUNK


def _body(cls: type[serializers.Serializer], depth: int = 0) -> st.SearchStrategy[Any]:
    parts = {name: st.one_of(st.just(_ABSENT), st.none(), _value(field, depth))
             for name, field in cls().fields.items() if not field.read_only}
    fixed = st.fixed_dictionaries(parts).map(lambda d: {k: v for k, v in d.items() if v is not _ABSENT})
    extra = st.dictionaries(st.sampled_from(["extra", "workspace"]), st.integers(), max_size=1)
    return st.one_of(st.builds(lambda d, e: {**d, **e}, fixed, extra), _JUNK)


_ABSENT = object()


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
])
def test_the_bodies_agents_send_take_the_fast_path_with_drfs_answer(name, body):
    cls = next(c for c in FAST if c.__name__ == name)
    fast = fast_validator(cls)(body)  # type: ignore[misc]
    assert fast is not None
    assert _same(fast, _drf(cls, body)) and _same(validated(cls, body), fast)
    if name == "LogBatchIn":  # a message keeps its spaces; a logger is trimmed; defaults filled in
        assert fast["lines"][0]["message"] == "  loaded 1,200 rows\n" and fast["lines"][1]["logger"] == "flowdeck.task"


def test_an_invalid_body_gets_drfs_errors():
    from orchestration.api.serializers import LogBatchIn

    with pytest.raises(serializers.ValidationError) as raised:
        validated(LogBatchIn, {"lines": [{**LOG_LINE, "message": "bad \x00"}]})
    assert "Null characters are not allowed." in str(raised.value.detail)
