"""TypeScript types for the web app, generated from the GraphQL schema the server serves.

``frontend/app/src/api/schema.generated.ts`` holds one interface per object and input type, one
string union per enum, and the schema's scalars as the JSON values the web app receives; the web
app's API modules build their result types from these (``Pick<FlowRun, …>``), so a field renamed or
retyped on the server breaks the web app's typecheck. ``manage.py graphql_typescript`` writes the
file; ``tests/test_graphql_documents.py`` fails when the committed file is not what it would write.
"""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
)

HEADER = (
    "/* Generated from the server's GraphQL schema by `python manage.py graphql_typescript`: do not edit.\n"
    " * tests/test_graphql_documents.py fails when this file is out of date. */\n"
)
# Scalars as they arrive in JSON.
SCALARS = {
    "ID": "string",
    "String": "string",
    "Boolean": "boolean",
    "Int": "number",
    "Float": "number",
    "DateTime": "string",
    "Date": "string",
    "Time": "string",
    "UUID": "string",
    "Decimal": "string",
    "JSONString": "string",
    "GenericScalar": "unknown",
    "JSON": "unknown",
}


def _type(graphql_type: object, *, nullable: bool = True) -> str:
    if isinstance(graphql_type, GraphQLNonNull):
        return _type(graphql_type.of_type, nullable=False)
    if isinstance(graphql_type, GraphQLList):
        inner = f"Array<{_type(graphql_type.of_type)}>"
    elif isinstance(graphql_type, GraphQLScalarType):
        inner = SCALARS.get(graphql_type.name, "unknown")
    else:
        inner = graphql_type.name  # type: ignore[attr-defined]
    return f"{inner} | null" if nullable else inner


def _doc(description: str | None, indent: str = "") -> str:
    if not description:
        return ""
    text = " ".join(description.split()).replace("*/", "* /")
    return f"{indent}/** {text} */\n"


def typescript(schema: GraphQLSchema) -> str:
    """The TypeScript module for ``schema``: named types in name order, introspection types left out."""
    parts = [HEADER]
    for name in sorted(schema.type_map):
        graphql_type = schema.type_map[name]
        if name.startswith("__") or isinstance(graphql_type, GraphQLScalarType):
            continue
        doc = _doc(graphql_type.description)
        if isinstance(graphql_type, GraphQLEnumType):
            values = " | ".join(f'"{value}"' for value in graphql_type.values) or "never"
            parts.append(f"\n{doc}export type {name} = {values};\n")
        elif isinstance(graphql_type, GraphQLUnionType):
            members = " | ".join(t.name for t in graphql_type.types) or "never"
            parts.append(f"\n{doc}export type {name} = {members};\n")
        elif isinstance(graphql_type, GraphQLInputObjectType):
            lines = []
            for field_name, field in graphql_type.fields.items():
                optional = not isinstance(field.type, GraphQLNonNull)
                lines.append(f"{_doc(field.description, '  ')}  {field_name}{'?' if optional else ''}: "
                             f"{_type(field.type)};\n")
            parts.append(f"\n{doc}export interface {name} {{\n{''.join(lines)}}}\n")
        elif isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType):
            lines = [f"{_doc(field.description, '  ')}  {field_name}: {_type(field.type)};\n"
                     for field_name, field in graphql_type.fields.items()]
            parts.append(f"\n{doc}export interface {name} {{\n{''.join(lines)}}}\n")
    return "".join(parts)
