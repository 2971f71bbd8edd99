"""Hostile input on every endpoint the schemas list: no 5xx, and no GraphQL ``internal_error``.

Every REST operation in the OpenAPI schema, every GraphQL field that takes arguments (the roots'
and, below the query roots, theirs two levels down), and every allauth headless route (browser and
app clients, enumerated from the URL resolver) is sent, with an Owner's key, with an Owner's session
and anonymously:

* JSON nested 10,000 levels deep (arrays and objects) and a body just over
  ``MAX_REQUEST_BODY_BYTES`` (to /graphql once per caller: one endpoint, refused before parsing);
* a NUL and a lone surrogate in every string it documents: each body field (nested ones, keys of
  free-form objects, unknown fields too), each path and query parameter, each allauth form field,
  each GraphQL argument as a variable, as a literal and inside a ``JSONString`` (the session, the
  one GraphQL signs in with, one position per request; the key and nobody, all at once); and the
  surrogate as raw (invalid UTF-8) bytes as well as escaped.

Around the hostile value the request is plausible (the world's real workspace, flow, run … ids,
required fields filled in), so that without the guard (``core.text_guard``) it would reach the code
that stores it. The operations are read from the schemas each run, so a new endpoint is covered
without editing this file; each test asserts it covered at least as many operations as its schema
lists. No randomness: the same requests every run, answered in-process by the Django test client.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    get_named_type,
    is_leaf_type,
)

from accounts.models import Role
from tests.conftest import WorkspaceWorld, build_world

pytestmark = pytest.mark.django_db

NUL = "\x00"
SURROGATE = "\ud800"
HOSTILE = (NUL, SURROGATE)
DEPTH = 10_000
DEEP_BODIES = ("[" * DEPTH + "]" * DEPTH, '{"a": ' * DEPTH + "1" + "}" * DEPTH)
RAW_SURROGATE_BODY = b'{"name": "\xed\xa0\x80", "\xed\xa0\x80": "x"}'  # a surrogate as (invalid) UTF-8
UUID = "00000000-0000-4000-8000-000000000000"
PATH_HOSTILE = ("a%00b", "%ED%A0%80")  # NUL and the surrogate's UTF-8 bytes, percent-encoded
QUERY_NUL = ("{name}=a%00b", "%00=1&{name}=x")  # in a value, in a name
QUERY_SURROGATE = "%ED%A0%80"  # Django decodes it as U+FFFD: the view runs, so all parameters go at once
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class Findings:
    """Every request sent and every answer that was a server error."""

    sent: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)

    def check(self, label: str, response: Any, *, graphql: bool = False) -> None:
        self.sent += 1
        if response.status_code >= 500:
            self.failures.append(f"{label} -> {response.status_code}: {response.content[:200]!r}")
            return
        if graphql and response.get("Content-Type", "").startswith("application/json"):
            codes = [(e.get("extensions") or {}).get("code") for e in response.json().get("errors") or ()]
            if "internal_error" in codes:
                self.failures.append(f"{label} -> internal_error: {response.content[:200]!r}")

    def assert_clean(self) -> None:
        assert not self.failures, f"{len(self.failures)} of {self.sent} requests failed:\n" + "\n".join(
            self.failures[:40]
        )


@pytest.fixture
def world(db: None, caplog: pytest.LogCaptureFixture) -> WorkspaceWorld:
    # Thousands of 4xx answers would each be logged (and captured) as a warning; 5xx still are.
    caplog.set_level(logging.ERROR, logger="django.request")
    return build_world("hostile")


def _known_ids(world: WorkspaceWorld) -> dict[str, str]:
    """The world's objects by the names paths, bodies and arguments give their ids."""
    from tests.orchestration.factories import AgentFactory, FlowRunFactory, TaskRunFactory

    # Parameters named as the samples name them ("a" in GraphQL's JSON, "k" in free-form REST objects).
    parameters = [{"name": name, "type": "any", "default": None, "required": False} for name in ("a", "k")]
    task_run: Any = TaskRunFactory(flow_run=FlowRunFactory(
        flow_version__flow__project__workspace=world.workspace, flow_version__parameters=parameters))
    run = task_run.flow_run
    flow = run.flow
    assert world.agent is not None
    member = world.workspace.memberships.get(user=world.users[Role.VIEWER])
    ids = {
        "workspace_slug": world.workspace.slug, "workspace": world.workspace.slug,
        "project_id": flow.project_id, "project": flow.project_id, "flow_id": flow.pk, "flow": flow.pk,
        "version_id": run.flow_version_id, "flow_version": run.flow_version_id, "flow_run_id": run.pk,
        "flow_run": run.pk, "task_run_id": task_run.pk, "task_run": task_run.pk,
        "agent_id": AgentFactory.create(workspace=world.workspace).pk, "account_id": world.agent.pk,
        "service_account": world.agent.pk, "member_id": member.pk, "user_id": world.users[Role.VIEWER].pk,
    }
    return {name: str(value) for name, value in ids.items()}


def _clients(world: WorkspaceWorld) -> dict[str, Client]:
    """An Owner's key, an Owner's session, nobody; a server error is answered, not raised."""
    session = Client(raise_request_exception=False)
    session.force_login(world.users[Role.OWNER])
    return {
        "key": Client(raise_request_exception=False, headers={"Authorization": f"Bearer {world.keys[Role.OWNER]}"}),
        "session": session,
        "anonymous": Client(raise_request_exception=False),
    }


def _send_bodies(client: Client, method: str, url: str, bodies: Iterator[tuple[str, bytes | str]], label: str,
                 findings: Findings, *, graphql: bool = False) -> None:
    for what, body in bodies:
        response = client.generic(method.upper(), url, body, content_type="application/json")
        findings.check(f"{label} [{what}]", response, graphql=graphql)


@functools.cache
def _oversized(limit: int) -> bytes:
    return b'{"a": "' + b"x" * limit + b'"}'


def _transport_bodies(*, reads_a_body: bool = True) -> Iterator[tuple[str, bytes | str]]:
    """What every endpoint gets whatever it reads: deep JSON, too much JSON, unknown fields, and
    (where it reads a body) a surrogate as invalid UTF-8."""
    for index, deep in enumerate(DEEP_BODIES):
        yield f"deep #{index}", deep
    yield "oversized", _oversized(settings.MAX_REQUEST_BODY_BYTES)
    for bad in HOSTILE:
        yield f"unknown field {bad!r}", json.dumps({"unknown": bad, bad: "x"})
    if reads_a_body:
        yield "raw surrogate bytes", RAW_SURROGATE_BODY


def _send_queries(client: Client, method: str, url: str, unknown_url: str, names: list[str], label: str,
                  findings: Findings) -> None:
    for name in names:
        for template in QUERY_NUL:
            query = template.format(name=name)
            findings.check(f"{label} ?{query}", client.generic(method.upper(), f"{url}?{query}"))
    query = "&".join(f"{name}={QUERY_SURROGATE}" for name in names)
    findings.check(f"{label} ?{query}", client.generic(method.upper(), f"{unknown_url}?{query}"))


# --- REST: the OpenAPI schema -------------------------------------------------------------------


def _openapi() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator
    from rest_framework.utils.encoders import JSONEncoder

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), cls=JSONEncoder))


def _deref(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _string_slots(schema: dict[str, Any], spec: dict[str, Any], depth: int = 0) -> Iterator[list[str | int | None]]:
    """Paths (keys and list indexes) to every place in a request body that holds a string: string
    fields, items of string lists, and the values and keys of free-form objects (``"k"`` / None)."""
    schema = _deref(schema, spec)
    if depth > 6:
        return
    for combined in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(combined, ()):
            yield from _string_slots(part, spec, depth + 1)
    kind = schema.get("type")
    if kind == "string" or (kind is None and "enum" in schema):
        yield []
    elif kind == "array":
        for slot in _string_slots(schema.get("items", {}), spec, depth + 1):
            yield [0, *slot]
    elif kind == "object" or "properties" in schema:
        for name, child in schema.get("properties", {}).items():
            for slot in _string_slots(child, spec, depth + 1):
                yield [name, *slot]
        extra = schema.get("additionalProperties")
        if extra is not None or not schema.get("properties"):
            yield ["k"]  # a free-form value
            yield [None]  # a free-form key
    elif kind is None and not schema.get("allOf") and not schema.get("oneOf") and not schema.get("anyOf"):
        yield []  # any JSON value: a string is one


def _sample_json(schema: dict[str, Any], spec: dict[str, Any], name: str, known: dict[str, str],
                 depth: int = 0) -> Any:
    """A plausible value: required properties filled in, ids of the world's objects by field name
    (so that a field further down is read, not a 404 or a missing field answered first)."""
    schema = _deref(schema, spec)
    for combined in ("allOf", "oneOf", "anyOf"):
        if schema.get(combined):
            return _sample_json(schema[combined][0], spec, name, known, depth + 1)
    kind = schema.get("type")
    if "enum" in schema:
        return next((value for value in schema["enum"] if value not in (None, "")), None)
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2026-01-01T00:00:00Z"
        return known.get(name, UUID if schema.get("format") == "uuid" else "x")
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "array":
        minimum = schema.get("minItems", 0)
        return [_sample_json(schema.get("items", {}), spec, name, known, depth + 1) for _ in range(minimum)]
    if (kind == "object" or "properties" in schema) and depth < 6:
        return {key: _sample_json(child, spec, key, known, depth + 1)
                for key, child in schema.get("properties", {}).items() if key in schema.get("required", ())}
    return {}


def _body_with(base: Any, slot: list[str | int | None], value: str) -> Any:
    """``base`` with ``value`` at ``slot`` (``None``: as a key), creating what is missing."""
    if not slot:
        return value
    head, rest = slot[0], slot[1:]
    if head is None:
        return {**(base if isinstance(base, dict) else {}), value: "x"}
    if isinstance(head, int):
        items = list(base) if isinstance(base, list) else []
        first = items[0] if items else None
        return [_body_with(first, rest, value), *items[1:]]
    container = dict(base) if isinstance(base, dict) else {}
    container[head] = _body_with(container.get(head), rest, value)
    return container


def _rest_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, item in spec["paths"].items()
            for method, operation in item.items() if method in HTTP_METHODS]


def _rest_url(path: str, operation: dict[str, Any], known: dict[str, str],
              hostile: tuple[str, str] | None = None) -> str:
    for parameter in operation.get("parameters", ()):
        if parameter["in"] != "path":
            continue
        name = parameter["name"]
        value = hostile[1] if hostile and hostile[0] == name else known.get(name, UUID)
        path = path.replace("{" + name + "}", value)
    return path


def test_rest_operations_answer_hostile_input_without_a_server_error(world: WorkspaceWorld) -> None:
    """Hostile text goes to the world's real objects, in an otherwise plausible body, so that without
    the guard it would reach the code that stores it; what the guard lets through (invalid UTF-8,
    U+FFFD) goes to ids that do not exist, so that no request deletes what the next one needs."""
    spec = _openapi()
    operations = _rest_operations(spec)
    known = _known_ids(world)
    clients = _clients(world)
    findings = Findings()
    covered: set[tuple[str, str]] = set()
    for path, method, operation in operations:
        label = f"{method.upper()} {path}"
        url = _rest_url(path, operation, known)
        unknown_url = _rest_url(path, operation, {"workspace_slug": known["workspace_slug"]})
        slots: list[list[str | int | None]] = []
        base: Any = {}
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            body_schema = content["application/json"]["schema"]
            slots = list(_string_slots(body_schema, spec))
            base = _sample_json(body_schema, spec, "", known)
        queries = [p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"] + ["unknown"]
        paths = [p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"]
        for mode, client in clients.items():
            bodies = _transport_bodies(reads_a_body=bool(content))
            _send_bodies(client, method, unknown_url, bodies, f"{label} as {mode}", findings)
            for bad in HOSTILE:
                for slot in slots:
                    body = json.dumps(_body_with(base, slot, bad))
                    response = client.generic(method.upper(), url, body, content_type="application/json")
                    findings.check(f"{label} as {mode} body {slot} = {bad!r}", response)
            _send_queries(client, method, url, unknown_url, queries, f"{label} as {mode}", findings)
            for name in paths:
                for value in PATH_HOSTILE:
                    hostile_url = _rest_url(path, operation, known, (name, value))
                    findings.check(f"{label} as {mode} {name}={value}", client.generic(method.upper(), hostile_url))
        covered.add((method, path))
    findings.assert_clean()
    assert len(covered) >= len(operations) > 50


# --- GraphQL: every field that takes arguments --------------------------------------------------

_SCALAR_SAMPLES: dict[str, Any] = {
    "Int": 1, "Float": 1.5, "Boolean": False, "ID": UUID, "String": "x", "JSONString": '{"a": "b"}',
    "GenericScalar": {"a": "b"}, "DateTime": "2026-01-01T00:00:00+00:00", "Date": "2026-01-01", "UUID": UUID,
    "Decimal": "1.5",
}
_STRING_SCALARS = {"ID", "String", "DateTime", "Date", "UUID", "Decimal"}


def _sample(type_: Any) -> Any:
    """A value of the right type for a variable."""
    if isinstance(type_, GraphQLNonNull):
        return _sample(type_.of_type)
    if isinstance(type_, GraphQLList):
        return [_sample(type_.of_type)]
    if isinstance(type_, GraphQLInputObjectType):
        return {name: _sample(field.type) for name, field in type_.fields.items()}
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    return _SCALAR_SAMPLES.get(type_.name, "x")


# Which object an ``id`` argument names, by the words in its field's name (first match wins).
_ID_BY_FIELD_WORD = (("flowrun", "flow_run"), ("taskrun", "task_run"), ("version", "flow_version"),
                     ("project", "project"), ("serviceaccount", "service_account"), ("agent", "agent_id"),
                     ("flow", "flow"))
_KNOWN_ARGUMENTS = {"workspace": "workspace", "slug": "workspace", "flowId": "flow", "versionId": "flow_version",
                    "memberId": "member_id", "serviceAccountId": "service_account", "flowRunId": "flow_run",
                    "taskRunId": "task_run", "projectId": "project", "agentId": "agent_id"}


def _argument_sample(field_name: str, name: str, type_: Any, known: dict[str, str]) -> Any:
    """The world's object where the argument names one (so that the field reads further than a
    404), a value of the right type otherwise."""
    key = _KNOWN_ARGUMENTS.get(name)
    if name == "id":
        key = next((k for word, k in _ID_BY_FIELD_WORD if word in field_name.lower()), None)
    return known[key] if key in known else _sample(type_)


def _hostile_variants(type_: Any, bad: str) -> Iterator[tuple[str, Any]]:
    """Each string position in a value of ``type_`` made hostile, the rest sampled."""
    if isinstance(type_, GraphQLNonNull):
        yield from _hostile_variants(type_.of_type, bad)
    elif isinstance(type_, GraphQLList):
        for where, value in _hostile_variants(type_.of_type, bad):
            yield f"[0]{where}", [value]
    elif isinstance(type_, GraphQLInputObjectType):
        base = _sample(type_)
        for name, field in type_.fields.items():
            for where, value in _hostile_variants(field.type, bad):
                yield f".{name}{where}", {**base, name: value}
    elif getattr(type_, "name", None) == "JSONString":
        yield " (JSON value)", json.dumps({"a": bad})
        yield " (JSON key)", json.dumps({bad: 1})
        yield " (JSON text)", bad
    elif getattr(type_, "name", None) == "GenericScalar":
        yield "", {"a": bad}
    elif getattr(type_, "name", None) in _STRING_SCALARS or not isinstance(type_, GraphQLEnumType):
        yield "", bad


@dataclass(frozen=True)
class _Target:
    """A field that takes arguments, and the document around it (its parent's arguments filled in)."""

    operation: str  # "query" / "mutation"
    path: tuple[tuple[str, GraphQLField], ...]

    @property
    def label(self) -> str:
        return f"{self.operation} " + ".".join(name for name, _ in self.path)

    @property
    def field(self) -> GraphQLField:
        return self.path[-1][1]

    def _arguments(self) -> Iterator[tuple[int, str, Any]]:
        """(depth, name, argument): the target's own, and its parents' required ones."""
        for depth, (_name, field) in enumerate(self.path):
            for name, argument in field.args.items():
                if depth == len(self.path) - 1 or isinstance(argument.type, GraphQLNonNull):
                    yield depth, name, argument

    def document(self, literals: dict[str, str] | None = None) -> str:
        """The operation with every argument a variable (but the target's ``literals``), selecting
        ``__typename`` where the field is an object."""
        literals = literals or {}
        last = len(self.path) - 1
        declarations = [f"$v{depth}_{name}: {argument.type}" for depth, name, argument in self._arguments()
                        if not (depth == last and name in literals)]
        selection = "__typename"
        for depth, (name, field) in reversed(list(enumerate(self.path))):
            arguments = [f"{arg}: {literals[arg]}" if depth == last and arg in literals else f"{arg}: $v{depth}_{arg}"
                         for d, arg, _ in self._arguments() if d == depth]
            args = f"({', '.join(arguments)})" if arguments else ""
            leaf = depth == last and is_leaf_type(get_named_type(field.type))
            selection = f"{name}{args}" + ("" if leaf else f" {{ {selection} }}")
        variables = f"({', '.join(declarations)})" if declarations else ""
        return f"{self.operation} Fuzz{variables} {{ {selection} }}"

    def variables(self, known: dict[str, str], literals: dict[str, str] | None = None,
                  **hostile: Any) -> dict[str, Any]:
        last = len(self.path) - 1
        values = {f"v{depth}_{name}": _argument_sample(self.path[depth][0], name, argument.type, known)
                  for depth, name, argument in self._arguments() if not (depth == last and name in (literals or {}))}
        values.update({f"v{last}_{name}": value for name, value in hostile.items()})
        return values

    def string_arguments(self) -> Iterator[tuple[str, str]]:
        for name, argument in self.field.args.items():
            named = get_named_type(argument.type).name
            if named in _STRING_SCALARS or named == "JSONString":
                yield name, named


def _graphql_targets() -> tuple[list[_Target], int]:
    """Every root field, and every field with arguments below the query roots that return an object
    (two levels down: ``orchestration { flowRun(id) { taskRuns(first) } }``)."""
    from config.schema import schema

    graphql_schema = schema.graphql_schema
    targets: list[_Target] = []
    roots = 0
    for operation, root in (("query", graphql_schema.query_type), ("mutation", graphql_schema.mutation_type)):
        assert root is not None
        for name, field in root.fields.items():
            roots += 1
            targets.append(_Target(operation, ((name, field),)))
            if operation == "query":
                targets.extend(_Target(operation, path) for path in _below(((name, field),), 2))
    return targets, roots


def _below(path: tuple[tuple[str, GraphQLField], ...], levels: int) -> Iterator[tuple[tuple[str, GraphQLField], ...]]:
    if levels == 0:
        return
    named = get_named_type(path[-1][1].type)
    if not isinstance(named, GraphQLObjectType):
        return
    for name, field in named.fields.items():
        child = (*path, (name, field))
        if field.args:
            yield child
        yield from _below(child, levels - 1)


def _literals(bad: str, scalar: str) -> Iterator[tuple[str, str]]:
    """The ways a GraphQL document spells a hostile string (a lone surrogate escape is a syntax error)."""
    yield "escaped literal", f'"\\u{ord(bad):04X}"'
    yield "block string", f'"""{bad}"""'
    if scalar == "JSONString":  # "{\"a\": \"\\u0000\"}": JSON text whose value decodes to the character
        yield "JSON in a literal", json.dumps(json.dumps({"a": bad}))


def _graphql_requests(target: _Target, bad: str, known: dict[str, str], *,
                      thorough: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what, request body): thorough, one hostile position per request (every variable position,
    every literal spelling, variable and operation names); otherwise every position at once."""
    document = target.document()
    if not thorough:
        hostile = {name: next(_hostile_variants(argument.type, bad))[1] for name, argument in target.field.args.items()
                   if next(_hostile_variants(argument.type, bad), None)}
        yield "every argument", {"query": document, "variables": target.variables(known, **hostile)}
        literals = {name: next(reversed(list(_literals(bad, scalar))))[1] for name, scalar in target.string_arguments()}
        if literals:
            yield "every literal", {"query": target.document(literals), "variables": target.variables(known, literals)}
        return
    for name, argument in target.field.args.items():
        for where, value in _hostile_variants(argument.type, bad):
            yield f"${name}{where}", {"query": document, "variables": target.variables(known, **{name: value})}
    for name, scalar in target.string_arguments():
        for what, literal in _literals(bad, scalar):
            literals = {name: literal}
            yield f"{name}: {what}", {"query": target.document(literals),
                                      "variables": target.variables(known, literals)}
    yield "variable and operation names", {"query": document, "variables": {**target.variables(known), bad: "x"},
                                            "operationName": f"Fuzz{bad}"}


def test_graphql_fields_answer_hostile_input_without_a_server_error(world: WorkspaceWorld) -> None:
    """GraphQL signs in with the session only: the session gets every hostile position one by one,
    the key and nobody every position at once (one request per field and character)."""
    clients = _clients(world)
    known = _known_ids(world)
    targets, roots = _graphql_targets()
    findings = Findings()
    covered_roots: set[str] = set()
    for target in targets:
        for mode, client in clients.items():
            for bad in HOSTILE:
                for what, body in _graphql_requests(target, bad, known, thorough=mode == "session"):
                    response = client.post("/graphql", json.dumps(body), content_type="application/json")
                    findings.check(f"{target.label} as {mode} {what} = {bad!r}", response, graphql=True)
        if len(target.path) == 1:
            covered_roots.add(f"{target.operation}.{target.path[0][0]}")
    document = targets[0].document()
    for mode, client in clients.items():  # the endpoint's own answers, whatever the document
        _send_bodies(client, "post", "/graphql", _transport_bodies(), f"/graphql as {mode}", findings, graphql=True)
        for index, deep in enumerate(DEEP_BODIES):
            deep_variables = '{"query": ' + json.dumps(document) + ', "variables": {"v": ' + deep + "}}"
            response = client.post("/graphql", deep_variables, content_type="application/json")
            findings.check(f"/graphql as {mode} deep variables #{index}", response, graphql=True)
    findings.assert_clean()
    assert len(covered_roots) >= roots > 40


# --- allauth: the headless routes of both clients ----------------------------------------------


def _allauth_routes() -> list[tuple[str, str, Any]]:
    """(URL, method, view class) of every headless route, from the URL resolver."""
    routes: list[tuple[str, str, Any]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and prefix.startswith("_allauth/"):
                view = getattr(pattern.callback, "view_class", None)
                assert view is not None, f"{prefix}{pattern.pattern} is not a class-based view"
                assert "<" not in str(pattern.pattern), "a headless route with a parameter: give it a value here"
                for method in HTTP_METHODS:
                    if hasattr(view, method):
                        routes.append(("/" + prefix + str(pattern.pattern), method, view))

    walk(get_resolver().url_patterns, "")
    return routes


def _form_fields(view: Any, method: str) -> list[str]:
    inputs = getattr(view, "input_class", None)
    if isinstance(inputs, dict):
        inputs = inputs.get(method.upper())
    return list(getattr(inputs, "base_fields", {})) if inputs is not None else []


def test_allauth_endpoints_answer_hostile_input_without_a_server_error(world: WorkspaceWorld) -> None:
    clients = _clients(world)
    routes = _allauth_routes()
    findings = Findings()
    covered: set[tuple[str, str]] = set()
    for url, method, view in routes:
        fields = _form_fields(view, method) + ["unknown"]
        label = f"{method.upper()} {url}"
        for mode, client in clients.items():
            bodies = _transport_bodies(reads_a_body=len(fields) > 1)
            _send_bodies(client, method, url, bodies, f"{label} as {mode}", findings)
            for bad in HOSTILE:
                for name in fields:
                    base = {field: "x" for field in fields}
                    for what, body in (("value", {**base, name: bad}), ("in a list", {**base, name: [bad]})):
                        response = client.generic(method.upper(), url, json.dumps(body),
                                                  content_type="application/json")
                        findings.check(f"{label} as {mode} {name} ({what}) = {bad!r}", response)
            _send_queries(client, method, url, url, ["key"], f"{label} as {mode}", findings)
        covered.add((url, method))
    findings.assert_clean()
    assert len(covered) >= len(routes) > 30
