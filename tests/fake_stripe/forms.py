"""Stripe's form encoding, read back into nested values.

The stripe library sends v1 parameters as `application/x-www-form-urlencoded` with bracketed keys:
`metadata[workspace]=w1`, `line_items[0][price]=price_x`, `lookup_keys[0]=pro` (it always indexes
lists; hand-written clients may send `lookup_keys[]=pro`). Booleans arrive as "true"/"false" and
numbers as their decimal text: values stay strings here, as Stripe's own parser sees them, and each
endpoint converts what it reads.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

# Under these keys a numeric subkey is a map key, not a list index (`metadata[0]=x` is metadata).
_MAP_KEYS = frozenset({"metadata", "payload"})
_KEY_PART = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A key that cannot be read (unbalanced brackets, a value and a map under one name)."""


def _split_key(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    rest = "[" + rest
    parts = _KEY_PART.findall(rest)
    if "".join(f"[{part}]" for part in parts) != rest or not head:
        raise FormError(f"Invalid parameter name: {key}")
    return [head, *parts]


def parse_form(body: str) -> dict[str, Any]:
    """Nested dicts and lists from a form-encoded body or query string."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = _split_key(key)
        node: dict[str, Any] = root
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if part == "":  # `name[]`: append to the list under the previous part
                part = str(len(node))
            if last:
                if isinstance(node.get(part), dict):
                    raise FormError(f"Invalid parameter: {key} is both a value and a hash")
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise FormError(f"Invalid parameter: {key} is both a value and a hash")
                node = child
    return _listify(root, parent=None)


def _listify(value: Any, parent: str | None) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {key: _listify(item, key) for key, item in value.items()}
    if parent not in _MAP_KEYS and converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted
