"""Validation rules that cap a GraphQL document before it runs (B8): depth, cost, introspection; and
text PostgreSQL cannot store (NUL, lone surrogates) in its variables and string literals."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    specified_rules,
    type_from_ast,
)

from core.text_guard import UnstorableText, escaped, find_in_json, json_text_suspect, unstorable_character

INTROSPECTION_FIELDS = ("__schema", "__type")


# --- Validation rules (B8) ---------------------------------------------------------------------


class _Measure:
    """Depth and cost of one operation, following fragments (each measured once).

    Cost counts every field once, and a field with a ``first`` argument (a page) counts its
    selections that many times. Depth counts nested fields. ``__typename`` costs 1 like any field
    (thousands of aliased ``__typename`` are thousands of fields to answer); when introspection is
    allowed its fields are not measured (they are refused outright otherwise).
    """

    def __init__(self, context: ValidationContext, operation: OperationDefinitionNode, variables: dict[str, Any]):
        self.context = context
        self.schema = context.schema
        self.variables = variables
        self.variable_defaults = {
            d.variable.name.value: d.default_value for d in operation.variable_definitions or () if d.default_value
        }
        self.fragments: dict[str, tuple[int, int]] = {}
        self.visiting: set[str] = set()

    def operation(self, operation: OperationDefinitionNode) -> tuple[int, int]:
        return self.selection_set(operation.selection_set, self.schema.get_root_type(operation.operation))

    def selection_set(self, selection_set: SelectionSetNode | None, parent_type: Any) -> tuple[int, int]:
        depth = cost = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                d, c = self.field(selection, parent_type)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                d, c = self.selection_set(
                    selection.selection_set, self.schema.get_type(condition.name.value) if condition else parent_type
                )
            elif isinstance(selection, FragmentSpreadNode):
                d, c = self.fragment(selection.name.value)
            else:  # pragma: no cover - the AST has no other selection kinds
                continue
            depth, cost = max(depth, d), cost + c
        return depth, cost

    def fragment(self, name: str) -> tuple[int, int]:
        if name in self.fragments:
            return self.fragments[name]
        fragment = self.context.get_fragment(name)
        if fragment is None or name in self.visiting:
            return 0, 0  # unknown fragments and cycles are reported by the standard rules
        self.visiting.add(name)
        measured = self.selection_set(fragment.selection_set, self.schema.get_type(fragment.type_condition.name.value))
        self.visiting.discard(name)
        self.fragments[name] = measured
        return measured

    def field(self, node: FieldNode, parent_type: Any) -> tuple[int, int]:
        name = node.name.value
        if name == "__typename":
            return 1, 1
        if name in INTROSPECTION_FIELDS:
            return 0, 0
        definition = getattr(parent_type, "fields", {}).get(name)
        child_type = get_named_type(definition.type) if definition else None
        depth, cost = self.selection_set(node.selection_set, child_type)
        return 1 + depth, 1 + self.page_size(node, definition) * cost

    def page_size(self, node: FieldNode, definition: Any) -> int:
        if definition is None or "first" not in definition.args:
            return 1
        default = definition.args["first"].default_value
        value: Any = default
        for argument in node.arguments:
            if argument.name.value == "first":
                value = self.argument_value(argument.value, default)
        if value is None:
            value = default  # an explicit null asks for the default page
        return max(value, 0) if isinstance(value, int) and not isinstance(value, bool) else 1

    def argument_value(self, node: Any, default: Any) -> Any:
        """The value an argument will have at execution, as far as validation can know it."""
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self.variables:
                return self.variables[name]
            if name not in self.variable_defaults:
                return default  # an omitted variable leaves the argument's default in place
            node = self.variable_defaults[name]
        if isinstance(node, IntValueNode):
            return int(node.value)
        return None


def _measure(rule: ValidationRule, node: OperationDefinitionNode, variables: dict[str, Any]) -> tuple[int, int] | None:
    try:
        return _Measure(rule.context, node, variables).operation(node)
    except RecursionError:
        rule.report_error(
            GraphQLError("This document is nested too deeply to read.", node, extensions={"code": "query_too_deep"})
        )
        return None


def depth_limit_rule(max_depth: int, variables: dict[str, Any]) -> type[ValidationRule]:
    class DepthLimitRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            measured = _measure(self, node, variables)
            if measured and measured[0] > max_depth:
                self.report_error(
                    GraphQLError(
                        f"This operation nests fields {measured[0]} levels deep; the limit is {max_depth}. "
                        "Ask for fewer nested levels or split it into several operations.",
                        node,
                        extensions={"code": "query_too_deep", "depth": measured[0], "maxDepth": max_depth},
                    )
                )

    return DepthLimitRule


def cost_limit_rule(max_cost: int, variables: dict[str, Any]) -> type[ValidationRule]:
    class CostLimitRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            measured = _measure(self, node, variables)
            if measured and measured[1] > max_cost:
                self.report_error(
                    GraphQLError(
                        f"This operation costs {measured[1]}; the limit is {max_cost} (each field costs 1 and a page "
                        "of 'first: n' counts its fields n times). Ask for fewer fields or smaller pages.",
                        node,
                        extensions={"code": "query_too_costly", "cost": measured[1], "maxCost": max_cost},
                    )
                )

    return CostLimitRule


class NoIntrospectionRule(ValidationRule):
    """``__schema`` and ``__type`` are refused; ``__typename`` stays (clients use it for caching)."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value in INTROSPECTION_FIELDS:
            self.report_error(
                GraphQLError(
                    "Introspection is disabled on this server.", node, extensions={"code": "introspection_disabled"}
                )
            )


#: The scalar whose string is JSON text, decoded only when the argument is read: a ``"\\u0000"``
#: inside it is no NUL to the string check, yet one once decoded (and stored as jsonb).
JSON_STRING_SCALAR = "JSONString"


def _unstorable_error(found: UnstorableText, node: Any = None, **extensions: Any) -> GraphQLError:
    return GraphQLError(
        found.message, node, extensions={"code": "invalid_text", "character": found.code_point, **extensions}
    )


def _in_json_text(text: str, where: str) -> UnstorableText | None:
    if not json_text_suspect(text.encode("utf-8", "surrogatepass")):
        return None  # no escape that decodes to NUL or a surrogate: nothing to parse twice
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):  # the scalar reports bad JSON itself
        return None
    found = find_in_json(decoded)
    if found is None:
        return None
    path, bad, is_key = found
    return UnstorableText(f"{'key of the ' if is_key else ''}JSON in {where} at {path}", bad)


def _in_typed_value(value: Any, type_: Any, where: str) -> UnstorableText | None:
    """JSON text inside a variable's value, following its declared type (lists, input objects)."""
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    if isinstance(type_, GraphQLList):
        items = value if isinstance(value, list) else [value]  # a single value coerces to a list of one
        for index, item in enumerate(items):
            found = _in_typed_value(item, type_.of_type, f"{where}[{index}]" if isinstance(value, list) else where)
            if found:
                return found
        return None
    if isinstance(type_, GraphQLInputObjectType):
        if isinstance(value, dict):
            for name, field_type in type_.fields.items():
                found = _in_typed_value(value.get(name), field_type.type, f"{where}.{name}") if name in value else None
                if found:
                    return found
        return None
    if getattr(type_, "name", None) == JSON_STRING_SCALAR and isinstance(value, str):
        return _in_json_text(value, where)
    return None


def text_rule(variables: dict[str, Any]) -> type[ValidationRule]:
    """Refuse NUL and lone surrogates (``core.text_guard``) in the variables, in the document's
    string literals (GraphQL's ``\\u0000`` and block strings can carry NUL) and in the JSON text a
    ``JSONString`` argument decodes."""

    class TextRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_args: Any) -> None:
            for name, value in variables.items():
                bad = unstorable_character(name)
                if bad:
                    where = f"name of GraphQL variable ${escaped(name)}"
                    self.report_error(_unstorable_error(UnstorableText(where, bad), variable=escaped(name)))
                    continue
                found = find_in_json(value, f"${name}")
                if found:
                    path, bad, is_key = found
                    where = f"{'key of the ' if is_key else ''}GraphQL variable {path}"
                    self.report_error(_unstorable_error(UnstorableText(where, bad), variable=name))

        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            for definition in node.variable_definitions or ():
                name = definition.variable.name.value
                type_ = type_from_ast(self.context.schema, definition.type)
                found = _in_typed_value(variables.get(name), type_, f"${name}") if name in variables else None
                if found:
                    self.report_error(_unstorable_error(found, definition, variable=name))

        def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
            bad = unstorable_character(node.value)
            if bad:
                self.report_error(_unstorable_error(UnstorableText("string in the GraphQL document", bad), node))
                return
            input_type = self.context.get_input_type()
            if input_type is not None and get_named_type(input_type).name == JSON_STRING_SCALAR:
                found = _in_json_text(node.value, "a JSONString argument")
                if found:
                    self.report_error(_unstorable_error(found, node))

    return TextRule


def validation_rules(variables: dict[str, Any], *, anonymous: bool = False) -> list[type[ValidationRule]]:
    """The limits a document must pass before it runs; a caller without a session gets the tighter
    cost cap (what anonymous visitors may ask is small: an invitation, the viewer)."""
    max_cost = settings.GRAPHQL_MAX_COST_ANONYMOUS if anonymous else settings.GRAPHQL_MAX_COST
    rules: list[type[ValidationRule]] = [
        depth_limit_rule(settings.GRAPHQL_MAX_DEPTH, variables),
        cost_limit_rule(max_cost, variables),
        text_rule(variables),
    ]
    if not settings.GRAPHQL_INTROSPECTION:
        rules.append(NoIntrospectionRule)
    return [*rules, *specified_rules]  # type: ignore[list-item]
