"""Text that PostgreSQL cannot store, refused with a clear 400 before any view reads it.

PostgreSQL's ``text`` and ``jsonb`` cannot hold NUL (U+0000), and psycopg cannot encode a lone
UTF-16 surrogate (U+D800–U+DFFF: JSON's ``"\\ud800"`` decodes to one in Python). Either used to
surface as a 500 from whichever query met it first: a run's parameters, a task key, a schedule's
parameters, a slug looked up from the path. :class:`TextGuardMiddleware` looks once, before any
view, at the path, the query string, JSON bodies and form bodies, and names where it found one
("query parameter `name`", "JSON body at $.labels[0]"). GraphQL answers the same in its own error
shape (``core.graphql.limits.text_rule``: variables and the document's string literals).

Ordinary requests pay for substring checks on the raw bytes only: a JSON body is parsed and walked
when it holds a raw NUL byte or a ``\\u0000`` / ``\\ud800``–``\\udfff`` escape (escaped surrogate
*pairs*, e.g. an emoji from ``json.dumps``, are looked at and let through: they decode to one
character). Tabs, newlines and every other character are fine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse

from .errors import error_response

#: What cannot be stored: NUL and any surrogate code point (a valid pair decodes to one character).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# The JSON escapes that decode to NUL or a surrogate; a raw NUL byte also means "look" (UTF-16/32
# bodies, which ``json.loads`` detects, are full of them).
_JSON_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# The GraphQL view checks its variables and document itself, answering in GraphQL's error shape.
_GRAPHQL_PATH = "/graphql"


@dataclass(frozen=True)
class UnstorableText:
    """Where a NUL or lone surrogate was found, and the message and details that say so."""

    where: str  # "query parameter `name`", "JSON body at $.labels[0]" …
    character: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def code_point(self) -> str:
        return f"U+{ord(self.character):04X}"

    @property
    def message(self) -> str:
        if self.character == "\x00":
            what = "a NUL character (U+0000), which cannot be stored; remove it."
        else:
            what = (f"a lone UTF-16 surrogate ({self.code_point}), which is not a character; send UTF-8 text "
                    "(escape a character beyond U+FFFF as a surrogate pair).")
        return f"The {self.where} contains {what}"

    def error_details(self) -> dict[str, Any]:
        return {**self.details, "character": self.code_point}


def unstorable_character(text: str) -> str | None:
    """The first NUL or surrogate in ``text``, if any."""
    match = UNSTORABLE.search(text)
    return match.group() if match else None


def escaped(text: str) -> str:
    """``text`` with its unstorable characters written as escapes, fit to quote in a message."""
    return UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_member(path: str, key: str) -> str:
    """``$.name``, or ``$["odd key"]`` (JSON escapes, so NUL and surrogates print as ``\\u0000``)."""
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"


def find_in_json(value: Any, root: str = "$") -> tuple[str, str, bool] | None:
    """The first string (or object key) in a decoded JSON value that holds an unstorable character:
    ``(path, character, is_key)``. Iterative, so any nesting the parser accepted is walked."""
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            bad = unstorable_character(item)
            if bad:
                return path, bad, False
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                key = str(key)
                bad = unstorable_character(key)
                if bad:
                    return json_member(path, key), bad, True  # json.dumps escapes it
                children.append((child, json_member(path, key)))
            stack.extend(reversed(children))  # report the first one in document order
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in reversed(list(enumerate(item))))
    return None


def json_text_suspect(body: bytes) -> bool:
    """Whether JSON text may decode to NUL or a lone surrogate (cheap; false positives are walked)."""
    return b"\x00" in body or (b"\\u" in body and _JSON_SUSPECT.search(body) is not None)


def _in_pairs(pairs: Iterable[tuple[str, list[str]]], describe: Callable[[str], str],
              details: Callable[[str], dict[str, Any]]) -> UnstorableText | None:
    for key, values in pairs:
        bad = unstorable_character(key)
        if bad:
            return UnstorableText(f"name of {describe(escaped(key))}", bad, details(escaped(key)))
        for value in values:
            bad = unstorable_character(value) if isinstance(value, str) else None
            if bad:
                return UnstorableText(describe(key), bad, details(key))
    return None


def _in_json_body(request: HttpRequest) -> UnstorableText | None:
    body = request.body
    if not json_text_suspect(body):
        return None
    try:
        # A declared charset is what DRF decodes with; without one, json.loads detects UTF-8/16/32.
        data = json.loads(body.decode(request.encoding) if request.encoding else body)
    except (ValueError, RecursionError):  # not JSON: the view answers that
        return None
    found = find_in_json(data)
    if found is None:
        return None
    path, bad, is_key = found
    where = f"key of the JSON body at {path}" if is_key else f"JSON body at {path}"
    return UnstorableText(where, bad, {"location": "body", "path": path})


def _in_form_body(request: HttpRequest) -> UnstorableText | None:
    body = request.body
    if b"%00" not in body and b"\x00" not in body:
        return None  # Django decodes broken UTF-8 as U+FFFD: only NUL can arrive here
    try:
        fields = request.POST
    except Exception:  # noqa: BLE001 - a malformed form: the view (or the CSRF check) answers it
        return None
    return _in_pairs(fields.lists(), lambda name: f"form field `{name}`",
                     lambda name: {"location": "form", "field": name})


def find_unstorable_text(request: HttpRequest) -> UnstorableText | None:
    """The first NUL or lone surrogate in the request's path, query string or body, if any."""
    bad = unstorable_character(request.path_info)
    if bad:
        return UnstorableText("request path", bad, {"location": "path"})
    if request.path_info == _GRAPHQL_PATH:
        return None
    query = request.META.get("QUERY_STRING", "")
    if query and ("%00" in query or not query.isascii()):
        found = _in_pairs(request.GET.lists(), lambda name: f"query parameter `{name}`",
                          lambda name: {"location": "query", "parameter": name})
        if found:
            return found
    content_type = request.content_type or ""
    if "json" in content_type:
        return _in_json_body(request)
    if content_type in _FORM_TYPES:
        return _in_form_body(request)
    return None


class TextGuardMiddleware:
    """Answer 400 ``invalid_text`` for a NUL or lone surrogate anywhere a view would read it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        found = find_unstorable_text(request)
        if found is not None:
            return error_response("invalid_text", found.message, 400, found.error_details())
        return self.get_response(request)
