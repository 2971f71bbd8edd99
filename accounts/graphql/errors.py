"""How accounts errors look in GraphQL.

Mutations return the errors a person can act on inside their payload (Saleor style: ``errors: [Error!]!``,
``[]`` on success). Reads cannot carry a payload, so a field the viewer may not read raises a
:class:`graphql.GraphQLError` whose ``extensions.code`` says why; only that field becomes null.
Both shapes use the same codes as REST (``not_found``, ``permission_denied``, a service's own code).
"""

from __future__ import annotations

from typing import Any

import graphene
from graphene.utils.str_converters import to_camel_case
from graphql import GraphQLError

from accounts.authz import NotFound, PermissionDenied
from core.errors import ServiceError

NOT_FOUND_MESSAGE = "Not found."

#: What an adapter may turn into an error a client can act on; anything else is a bug.
EXPECTED_ERRORS = (ServiceError, NotFound, PermissionDenied)


class Error(graphene.ObjectType):
    """One problem with a mutation's input or with what it asked for."""

    code = graphene.String(required=True, description="Stable, machine-readable: switch on this.")
    message = graphene.String(required=True, description="A sentence a person can act on.")
    field = graphene.String(description="The argument the problem is about, when there is one.")


def _field_of(details: Any) -> str | None:
    if isinstance(details, dict):
        for key in details:
            return to_camel_case(str(key))
    return None


def describe(exc: Exception) -> tuple[str, str, str | None]:
    """``(code, message, field)`` for an expected error."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message, _field_of(exc.details)
    if isinstance(exc, PermissionDenied):
        return "permission_denied", str(exc), None
    return "not_found", NOT_FOUND_MESSAGE, None


def error_list(exc: Exception) -> list[Error]:
    code, message, field = describe(exc)
    return [Error(code=code, message=message, field=field)]


def graphql_error(exc: Exception) -> GraphQLError:
    """The field error for a read that failed for an expected reason."""
    code, message, _field = describe(exc)
    return GraphQLError(message, extensions={"code": code})


def not_authenticated() -> list[Error]:
    return [Error(code="not_authenticated", message="Sign in to do this.", field=None)]
