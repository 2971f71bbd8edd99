"""Serializer helpers shared by every app's API."""

from __future__ import annotations

import threading
from typing import Any

from rest_framework import serializers

from core.fast_input import fast_validator
from core.fast_output import fast_renderer


class StrictInputSerializer(serializers.Serializer):
    """A request body with only the fields listed here: any other field is refused with 400, never
    ignored."""

    # Why (A1, B7): a client can never slip in workspace, role, owner or state through an extra key.

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Send a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


_SHARED_LOCK = threading.Lock()
_shared: dict[type[serializers.BaseSerializer], serializers.BaseSerializer] = {}


def represent(serializer_class: type[serializers.BaseSerializer], instance: Any, *, many: bool = False) -> Any:
    """What ``serializer_class(instance, many=many).data`` gives, from one serializer per class
    kept for the process. A ``ModelSerializer`` builds its fields from the model on every
    instantiation, which costs more than rendering a run; rendering only reads the bound fields, so
    one instance serves every request and thread. For output serializers that read no context.
    The fields are rendered by :func:`core.fast_output.fast_renderer`: DRF's output, fewer calls."""
    serializer = _shared.get(serializer_class)
    if serializer is None:
        with _SHARED_LOCK:
            serializer = _shared.get(serializer_class)
            if serializer is None:
                serializer = serializer_class()
                _bind_all(serializer)
                _shared[serializer_class] = serializer
    render = fast_renderer(serializer)
    if many:
        return render(instance)
    return render([instance])[0]


def _bind_all(serializer: Any) -> None:
    """Build the fields of ``serializer`` and of the serializers nested in it now, before any thread
    shares them (each serializer builds its fields on first use)."""
    child = getattr(serializer, "child", None)
    if isinstance(child, serializers.BaseSerializer):
        _bind_all(child)
    for field in getattr(serializer, "fields", {}).values():
        if isinstance(field, serializers.BaseSerializer):
            _bind_all(field)


_per_thread = threading.local()


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """``serializer_class(data=data)``'s validated data (a ``ValidationError`` as from
    ``is_valid(raise_exception=True)``), from one serializer per class and thread: building the
    fields again on every request cost more than validating a body. Validation keeps its state on
    the serializer itself (reset here), never on the fields, so a thread reuses its instance."""
    fast = fast_validator(serializer_class)
    if fast is not None:
        result = fast(data)
        if result is not None:
            return result
    cache: dict[type, serializers.Serializer] = _per_thread.__dict__.setdefault("serializers", {})
    serializer = cache.get(serializer_class)
    if serializer is None:
        serializer = cache[serializer_class] = serializer_class(data=data)
    else:
        for name in ("_validated_data", "_errors", "_data"):
            serializer.__dict__.pop(name, None)
        serializer.initial_data = data
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
