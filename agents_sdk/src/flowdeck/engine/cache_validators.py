"""Cache validators decide whether a cached state may be reused (Prefect 1's
``prefect.engine.cache_validators``).

A validator is ``fn(cached_state, inputs, parameters) -> bool``. ``cached_state`` is a ``Cached``
state holding the cached ``result``, the ``cached_inputs`` and ``cached_parameters`` it was computed
with, and ``cached_result_expiration`` (None: never expires).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from flowdeck.engine.state import State


def _not_expired(state: State) -> bool:
    expiration = getattr(state, "cached_result_expiration", None)
    return expiration is None or expiration > datetime.now(UTC)


def never_use(state: State, inputs: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None) -> bool:
    """Never reuse a cached result."""
    return False


def duration_only(state: State, inputs: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None) -> bool:
    """Reuse while the cache has not expired, whatever the inputs (the default)."""
    return _not_expired(state)


def all_inputs(state: State, inputs: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None) -> bool:
    """Reuse while not expired and the task's inputs are the same."""
    return _not_expired(state) and dict(state.cached_inputs or {}) == dict(inputs or {})


def all_parameters(state: State, inputs: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None) -> bool:
    """Reuse while not expired and the flow's parameters are the same."""
    cached = getattr(state, "cached_parameters", None) or {}
    return _not_expired(state) and dict(cached) == dict(parameters or {})


Validator = Callable[[State, Mapping[str, Any] | None, Mapping[str, Any] | None], bool]


def partial_inputs_only(validate_on: Iterable[str] | None = None) -> Validator:
    """Reuse while not expired and the named inputs are the same."""
    names = list(validate_on or ())

    def validator(state: State, inputs: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None) -> bool:
        cached = state.cached_inputs or {}
        given = inputs or {}
        return _not_expired(state) and all(cached.get(n) == given.get(n) for n in names)

    validator.__name__ = "partial_inputs_only"
    return validator


def partial_parameters_only(validate_on: Iterable[str] | None = None) -> Validator:
    """Reuse while not expired and the named flow parameters are the same."""
    names = list(validate_on or ())

    def validator(state: State, inputs: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None) -> bool:
        cached = getattr(state, "cached_parameters", None) or {}
        given = parameters or {}
        return _not_expired(state) and all(cached.get(n) == given.get(n) for n in names)

    validator.__name__ = "partial_parameters_only"
    return validator


__all__ = [
    "never_use",
    "duration_only",
    "all_inputs",
    "all_parameters",
    "partial_inputs_only",
    "partial_parameters_only",
]
