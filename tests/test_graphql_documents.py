"""The web app's GraphQL documents against the server's schema: every query and mutation written in
``frontend/app/src`` must validate (fields, arguments, variable types) against the schema the server
serves, so renaming a field or an argument on the server fails here, not in a person's browser.
And the web app's TypeScript types for the schema (``src/api/schema.generated.ts``, with the SDL
copy ``frontend/app/schema.graphql``; ``manage.py graphql_typescript`` writes both) must be what the
server's current schema gives.

Documents are the template literals that start with ``query`` or ``mutation``; a ``${NAME}`` inside
one must be a module-level string constant of the same file (a fragment of fields such as
``RUN_SUMMARY``), so every document can be read without running the app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from graphql import GraphQLError, parse, validate

from config.schema import schema
from core.graphql_typescript import typescript
from frontend.management.commands.graphql_typescript import SCHEMA_FILE, TYPES_FILE, schema_sdl

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "frontend" / "app" / "src"

TEMPLATE = re.compile(r"`((?:[^`\\]|\\.)*)`", re.S)
CONSTANT = re.compile(r"^(?:export )?const ([A-Z][A-Z0-9_]*)\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|`((?:[^`\\]|\\.)*)`)",
                      re.M | re.S)
PLACEHOLDER = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")


def _constants(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in CONSTANT.finditer(text)}


def _expand(body: str, constants: dict[str, str], seen: frozenset[str] = frozenset()) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in constants or name in seen:
            raise LookupError(name)
        return _expand(constants[name], constants, seen | {name})

    return PLACEHOLDER.sub(one, body)


def documents() -> list[tuple[str, str]]:
    """(where, document) for every GraphQL document in the web app's sources."""
    found = []
    for path in sorted([*SOURCES.rglob("*.ts"), *SOURCES.rglob("*.tsx")]):
        text = path.read_text()
        constants = _constants(text)
        for match in TEMPLATE.finditer(text):
            body = match.group(1).strip()
            if not re.match(r"(query|mutation)\s+[A-Za-z_]\w*\s*[({]", body):
                continue
            line = text.count("\n", 0, match.start()) + 1
            where = f"{path.relative_to(ROOT)}:{line}"
            try:
                found.append((where, _expand(body, constants)))
            except LookupError as exc:
                found.append((where, f"!unresolvable ${{{exc.args[0]}}}"))
    return found


DOCUMENTS = documents()


def test_the_web_app_has_documents_to_check() -> None:
    assert len(DOCUMENTS) > 40, DOCUMENTS  # the extractor still finds what the app sends


@pytest.mark.parametrize(("where", "document"), DOCUMENTS, ids=[w for w, _ in DOCUMENTS])
def test_document_matches_the_servers_schema(where: str, document: str) -> None:
    assert not document.startswith("!unresolvable"), (
        f"{where}: {document[1:]} — write the document with module-level string constants only (use "
        "@include/@skip for optional parts), so that it can be checked against the schema")
    try:
        errors = validate(schema.graphql_schema, parse(document))
    except GraphQLError as exc:
        errors = [exc]
    assert [e.message for e in errors] == [], f"{where}:\n{document}"


def test_the_web_apps_schema_types_are_current() -> None:
    """The generated types (and SDL copy) are exactly what the server's schema gives today."""
    stale = [path.relative_to(ROOT).as_posix() for path, content in
             ((TYPES_FILE, typescript(schema.graphql_schema)), (SCHEMA_FILE, schema_sdl()))
             if not path.exists() or path.read_text() != content]
    assert stale == [], f"{', '.join(stale)} out of date: run `python manage.py graphql_typescript`"
