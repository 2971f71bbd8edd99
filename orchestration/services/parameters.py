"""Flow parameters: the types a version may declare and the check of a run's values against them.

Registration (``services/flows.py``) checks that each declared default matches its type; run
creation (``services/runs.py``) and schedules check the values they are given against the
version's schema. Both use :func:`value_matches_type`, so a default that registers is a value a run
accepts.
"""

from __future__ import annotations

import json
from typing import Any

PARAMETER_TYPES = ("str", "int", "float", "bool", "list", "dict", "any")
MAX_PARAMETERS_BYTES = 512 * 1024  # parameters are small metadata, never data
_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict,
}


def value_matches_type(kind: str, value: Any) -> bool:
    """Whether ``value`` fits a parameter declared as ``kind``. ``None`` (no value) fits every type,
    and so does anything for ``any``. A type this server does not know also accepts anything:
    registration refuses such a declaration, so only a version stored by an older release could
    carry one, and its runs should not fail for it. ``True`` is not a number."""
    python_type = _PYTHON_TYPES.get(kind)
    if python_type is None or value is None:
        return True
    if kind in ("int", "float") and isinstance(value, bool):
        return False
    return isinstance(value, python_type)


def validate_parameters(schema: list[dict[str, Any]], parameters: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check ``parameters`` against a version's parameter schema. Returns the parameters with the
    defaults of omitted optional ones filled in, and the errors by field (empty when valid)."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        return {}, {"parameters": ["Must be an object of parameter names to values."]}
    try:
        size = len(json.dumps(parameters, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return {}, {"parameters": ["Must be JSON."]}
    if size > MAX_PARAMETERS_BYTES:
        return {}, {"parameters": [f"At most {MAX_PARAMETERS_BYTES // 1024} KB of JSON ({size} bytes given); "
                                   "pass references to data, not data."]}
    specs = {p["name"]: p for p in schema or [] if isinstance(p, dict) and "name" in p}
    errors: dict[str, list[str]] = {}
    for name in parameters:
        if name not in specs:
            errors[f"parameters.{name}"] = [f"Unknown parameter '{name}'; the flow takes: "
                                            f"{', '.join(sorted(specs)) or 'none'}."]
    clean: dict[str, Any] = {}
    for name, spec in specs.items():
        kind = spec.get("type", "any")
        if name in parameters:
            value = parameters[name]
            if not value_matches_type(kind, value):
                errors[f"parameters.{name}"] = [f"Must be of type '{kind}', got {type(value).__name__}."]
            clean[name] = value
        elif spec.get("required"):
            errors[f"parameters.{name}"] = ["This parameter is required."]
        elif "default" in spec:
            clean[name] = spec.get("default")
    return clean, errors


__all__ = ["MAX_PARAMETERS_BYTES", "PARAMETER_TYPES", "validate_parameters", "value_matches_type"]
