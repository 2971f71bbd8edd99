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


def _per_workspace(principals: Sequence[Principal], selector: Callable[[Principal], QuerySet]) -> list[Any]:
    refused: dict[Principal, Exception] = {}
    querysets: list[QuerySet] = []
    for principal in principals:
        try:
            querysets.append(selector(principal))
        except EXPECTED_ERRORS as exc:
            refused[principal] = graphql_error(exc)
    rows: dict[Any, list[Any]] = defaultdict(list)
    if querysets:
        # Each selector's queryset is already filtered to its workspace; OR-ing them keeps those
        # filters (and the selectors' select_related and ordering) in one SQL query.
        for row in reduce(operator.or_, querysets):
            rows[row.workspace_id].append(row)
    return [refused[p] if p in refused else rows.get(p.workspace.pk, []) for p in principals]


def load_members(principals: Sequence[Principal]) -> list[Any]:
    return _per_workspace(principals, selectors.membership_list)


def load_invitations(principals: Sequence[Principal]) -> list[Any]:
    return _per_workspace(principals, selectors.invitation_list)


def load_api_keys(principals: Sequence[Principal]) -> list[Any]:
    return _per_workspace(principals, selectors.api_key_list)


def load_service_accounts(principals: Sequence[Principal]) -> list[Any]:
    """What :func:`accounts.selectors.service_account_list` returns, for many workspaces at once:
    the active accounts, each kept only if ``authorize`` lets the principal read it."""
    by_workspace = {p.workspace.pk: p for p in principals}
    querysets = [ServiceAccount.objects.for_workspace(p.workspace).filter(is_active=True) for p in principals]
    visible: dict[Any, list[ServiceAccount]] = defaultdict(list)
    for account in reduce(operator.or_, querysets):
        if can(by_workspace[account.workspace_id], "service_account:read", account):
            visible[account.workspace_id].append(account)
    return [visible.get(p.workspace.pk, []) for p in principals]


class Loaders:
    """One set per request (renewed after each mutation)."""

    def __init__(self) -> None:
        self.members = SyncDataLoader(load_members)
        self.invitations = SyncDataLoader(load_invitations)
        self.service_accounts = SyncDataLoader(load_service_accounts)
        self.api_keys = SyncDataLoader(load_api_keys)
