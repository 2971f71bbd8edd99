"""A fast path for validating request bodies with the serializers we declare (used by
``core.serializers.validated``).

DRF validates each value through several layers of calls and validators: a ``CharField`` looks for
surrogate characters one character at a time in Python, and a batch of 20 log lines spent a fifth
of its request's CPU there. For a serializer made of plain fields, :func:`fast_validator` builds a
function that gives exactly DRF's validated data for the bodies DRF accepts, checking the common
cases directly (a string where a string is expected, an int where an int is …), and gives up
(``None``) on anything else: the serializer then validates as before and words the errors. The
serializers stay the one statement of what a body may hold. A serializer's ``validate`` method
(a rule across its fields: the combined report needs at least one part) is called with the
fields' values as DRF calls it, and a refusal there also lets DRF decide, so it must read nothing
but those values; serializers with validators of their own, ``validate_<field>`` methods, sources
or partial updates get no fast path.
tests/core/test_fast_input.py checks the two agree on generated bodies, valid and not."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinLengthValidator, MinValueValidator
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import ISO_8601, serializers
from rest_framework import fields as f
from rest_framework.settings import api_settings
from rest_framework.validators import ProhibitSurrogateCharactersValidator

Check = Callable[[Any], Any]


class _Defer(Exception):
    """Not sure: DRF decides."""


_SURROGATE = re.compile("[\ud800-\udfff]")
_CHAR_VALIDATORS = (MaxLengthValidator, MinLengthValidator, f.ProhibitNullCharactersValidator,
                    ProhibitSurrogateCharactersValidator)
_NUMBER_VALIDATORS = (MaxValueValidator, MinValueValidator)
_ABSENT = object()


def _DRF(value: Any) -> Any:  # noqa: N802 - a marker: "the field validates this itself"
    raise AssertionError("a marker, never called")

_lock = threading.Lock()
_built: dict[type, Callable[[Any], Any] | None] = {}


def fast_validator(serializer_class: type[serializers.Serializer]) -> Callable[[Any], Any] | None:
    """``validate(data)``: DRF's validated data for ``data``, or ``None`` when DRF must decide. ``None``
    instead of a function when the serializer is not one this path knows."""
    if serializer_class not in _built:
        with _lock:
            if serializer_class not in _built:
                check = _serializer(serializer_class())
                _built[serializer_class] = None if check is None else _run(check)
    return _built[serializer_class]


# The current time zone, looked up once per body: Django keeps it in a context-local whose lookup
# cost a log line 5-10 µs, a twentieth of a batch's CPU (one lookup per line's timestamp).
_zone: ContextVar[Any] = ContextVar("fast_input_zone", default=None)


def _run(check: Check) -> Callable[[Any], Any]:
    def validate(data: Any) -> Any:
        token = _zone.set(None)
        try:
            return check(data)
        except (_Defer, serializers.ValidationError, DjangoValidationError, f.SkipField):
            return None
        finally:
            _zone.reset(token)
    return validate


def _serializer(serializer: serializers.Serializer) -> Check | None:
    from core.serializers import StrictInputSerializer

    cls = type(serializer)
    strict = isinstance(serializer, StrictInputSerializer)
    base: Any = StrictInputSerializer if strict else serializers.Serializer
    if (serializer.get_validators()
            or cls.to_internal_value is not base.to_internal_value
            or cls.run_validation is not serializers.Serializer.run_validation
            or any(hasattr(cls, "validate_" + name) for name in serializer.fields)):
        return None
    plan: list[tuple[str, f.Field, Check]] = []
    for name, field in serializer.fields.items():
        if field.read_only:
            continue
        if field.source != name:
            return None
        check = _field(field)
        if check is None:
            return None
        plan.append((name, field, check))
    known = frozenset(serializer.fields)
    # Its own validate(), else none: DRF's default returns the values as they are.
    across = serializer.validate if cls.validate is not serializers.Serializer.validate else None

    def check_object(data: Any) -> dict[str, Any]:
        if type(data) is not dict or (strict and not known.issuperset(data)):
            raise _Defer
        out: dict[str, Any] = {}
        for name, field, check in plan:
            if check is _DRF:  # the field's own validation, absent and null values included
                try:
                    out[name] = field.run_validation(field.get_value(data))
                except f.SkipField:
                    pass
                continue
            value = data.get(name, _ABSENT)
            if value is _ABSENT:
                if field.required:
                    raise _Defer
                if field.default is f.empty:
                    continue
                out[name] = field.get_default()
            elif value is None:
                if not field.allow_null:
                    raise _Defer
                out[name] = None
            else:
                out[name] = check(value)
        if across is not None:
            out = across(out)
            assert out is not None, ".validate() should return the validated data"  # as DRF asserts
        return out

    return check_object


def _field(field: f.Field) -> Check | None:
    """What checks one present, non-null value of ``field``; ``None`` for a field it cannot check."""
    if isinstance(field, serializers.ListSerializer):
        return None
    if isinstance(field, serializers.Serializer):
        return _serializer(field)
    if _plain(field, f.ListField, "run_child_validation"):
        return _list(field)
    if _plain(field, f.CharField) and _only(field, _CHAR_VALIDATORS):
        return _char(field)
    if _plain(field, f.IntegerField) and _only(field, _NUMBER_VALIDATORS):
        return _integer(field)
    if _plain(field, f.ChoiceField) and not field.validators:
        return _choice(field)
    if _plain(field, f.DateTimeField) and not field.validators and _iso_8601_only(field):
        return _datetime(field)
    if isinstance(field, (f.ListField, f.FileField, f.HiddenField, f.SerializerMethodField, f.ReadOnlyField)):
        return None
    # Any other field (a date, a UUID, a dict …): its own run_validation, so DRF's rules exactly
    # (what is costly in DRF is the layers around it).
    return _DRF


def _plain(field: f.Field, kind: type, *more: str) -> bool:
    """``field`` is a ``kind``, or a subclass that only changes its arguments (``StrList``)."""
    return isinstance(field, kind) and all(
        getattr(type(field), name) is getattr(kind, name)
        for name in ("to_internal_value", "run_validation", "validate_empty_values", "get_value", *more))


def _only(field: f.Field, allowed: tuple[type, ...]) -> bool:
    return all(isinstance(v, allowed) for v in field.validators)


def _char(field: f.CharField) -> Check:
    trim, blank, longest, shortest = field.trim_whitespace, field.allow_blank, field.max_length, field.min_length

    def check(value: Any) -> str:
        if type(value) is not str:
            raise _Defer
        if trim:
            value = value.strip()
        if value == "":
            if not blank:
                raise _Defer
            return ""
        if ((longest is not None and len(value) > longest) or (shortest is not None and len(value) < shortest)
                or "\x00" in value or _SURROGATE.search(value)):
            raise _Defer
        return value

    return check


def _integer(field: f.IntegerField) -> Check:
    low, high = field.min_value, field.max_value

    def check(value: Any) -> int:
        if type(value) is not int or (low is not None and value < low) or (high is not None and value > high):
            raise _Defer
        return value

    return check


def _choice(field: f.ChoiceField) -> Check:
    choices, blank = field.choice_strings_to_values, field.allow_blank

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise _Defer
        if value == "" and blank:
            return ""
        try:
            return choices[value]
        except KeyError:
            raise _Defer from None

    return check


def _iso_8601_only(field: f.DateTimeField) -> bool:
    formats = getattr(field, "input_formats", api_settings.DATETIME_INPUT_FORMATS)
    return [str(fmt).lower() for fmt in formats] == [ISO_8601]


def _datetime(field: f.DateTimeField) -> Check:
    """An ISO 8601 string, parsed as DRF parses it (Django's ``parse_datetime``) and put in the
    field's time zone as the field's ``enforce_timezone`` puts it (a time with an offset: converted
    to the current zone, found once per body); anything else (a date alone, a format error) DRF
    words."""
    own_zone = hasattr(field, "timezone")

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise _Defer
        try:
            parsed = parse_datetime(value)
        except ValueError:  # well formed but no such date
            raise _Defer from None
        if parsed is None:
            raise _Defer
        if own_zone or parsed.tzinfo is None or not settings.USE_TZ:
            return field.enforce_timezone(parsed)
        zone = _zone.get()
        if zone is None:
            zone = timezone.get_current_timezone()
            _zone.set(zone)
        try:
            return parsed.astimezone(zone)
        except OverflowError:
            raise _Defer from None

    return check


def _list(field: f.ListField) -> Check | None:
    if not _only(field, (MaxLengthValidator, MinLengthValidator)):
        return None
    child = _field(field.child)
    if child is None:
        return None
    if child is _DRF:
        return _list_of(field, field.child.run_validation)  # None items included
    return _list_of(field, child, nulls=True)


def _list_of(field: f.ListField, child: Check, nulls: bool = False) -> Check:
    """The list check with ``child`` for each item (``nulls``: a None item is checked here)."""
    allow_empty, longest, shortest = field.allow_empty, field.max_length, field.min_length
    item_null = field.child.allow_null

    def check(value: Any) -> list[Any]:
        if type(value) is not list:
            raise _Defer
        n = len(value)
        if ((not n and not allow_empty) or (longest is not None and n > longest)
                or (shortest is not None and n < shortest)):
            raise _Defer
        out: list[Any] = []
        for item in value:
            if item is None and nulls:
                if not item_null:
                    raise _Defer
                out.append(None)
            else:
                out.append(child(item))
        return out

    return check
