"""Request-scoped DataLoaders: a list field asked for on many workspaces costs one query, not one per
workspace.

Each loader is keyed by the viewer's :class:`~accounts.authz.Principal` for a workspace. Its batch
function asks the selector for every principal (the selector authorizes and scopes to that
workspace, exactly as for REST), ORs the resulting querysets into a single query and hands each
workspace its rows. A principal the selector refuses gets the error for that field only.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any

from django.db.models import QuerySet
from graphql_sync_dataloaders import SyncDataLoader

from accounts import selectors
from accounts.authz import Principal, can
from accounts.models import ServiceAccount

from .errors import EXPECTED_ERRORS, graphql_error


def _per_workspace(principals: Sequence[Principal], selector: Callable[[Principal], Any]) -> list[Any]:
    refused: dict[Principal, Exception] = {}
    ready: dict[Principal, list[Any]] = {}
    querysets: list[QuerySet] = []
    for principal in principals:
        try:
            found = selector(principal)
        except EXPECTED_ERRORS as exc:
            refused[principal] = graphql_error(exc)
            continue
        if isinstance(found, QuerySet):
            querysets.append(found)
        else:
            ready[principal] = list(found)
    rows: dict[Any, list[Any]] = defaultdict(list)
    if querysets:
        # Each selector's queryset is already filtered to its workspace; OR-ing them keeps those
        # filters (and the selectors' select_related and ordering) in one SQL query.
        for row in reduce(operator.or_, querysets):
            rows[row.workspace_id].append(row)
    return [
        refused[p] if p in refused else ready[p] if p in ready else rows.get(p.workspace.pk, []) for p in principals
    ]


def load_members(principals: Sequence[Principal]) -> list[Any]:
    return _per_workspace(principals, selectors.membership_list)


def load_invitations(principals: Sequence[Principal]) -> list[Any]:
    return _per_workspace(principals, selectors.invitation_list)


def load_api_keys(principals: Sequence[Principal]) -> list[Any]:
    return _per_workspace(principals, selectors.api_key_list)


def _service_accounts(principal: Principal) -> QuerySet[ServiceAccount] | list[ServiceAccount]:
    """:func:`accounts.selectors.service_account_list`, kept lazy where the role decides.

    The selector returns a list (already evaluated), which would cost a query per workspace. For a
    role that reads every service account it is exactly "the workspace's active accounts", so that
    case is handed back as a queryset to batch; people below Admin, who see only the accounts shared
    with them, get the selector's own answer."""
    if can(principal, "service_account:read", principal.workspace):
        return ServiceAccount.objects.for_workspace(principal.workspace).filter(is_active=True)
    return selectors.service_account_list(principal)


def load_service_accounts(principals: Sequence[Principal]) -> list[Any]:
    return _per_workspace(principals, _service_accounts)


def _each_key_fails_alone(
    batch: Callable[[Sequence[Principal]], list[Any]],
) -> Callable[[Sequence[Principal]], list[Any]]:
    """An exception escaping a batch would abort the whole operation; hand it to every key
    instead, so it becomes an error on the fields that asked (and is reported as a bug)."""

    def load(principals: Sequence[Principal]) -> list[Any]:
        try:
            return batch(principals)
        except Exception as exc:
            return [exc] * len(principals)

    return load


class Loaders:
    """One set per request (renewed after each mutation)."""

    def __init__(self) -> None:
        self.members = SyncDataLoader(_each_key_fails_alone(load_members))
        self.invitations = SyncDataLoader(_each_key_fails_alone(load_invitations))
        self.service_accounts = SyncDataLoader(_each_key_fails_alone(load_service_accounts))
        self.api_keys = SyncDataLoader(_each_key_fails_alone(load_api_keys))
