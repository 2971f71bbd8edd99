"""No N+1 over GraphQL: the workspace lists are loaded per request in one query each, however many
workspaces the document walks through."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from accounts.models import Role, User
from tests.accounts.test_graphql import gql, login, ok
from tests.factories import MembershipFactory, ServiceAccountFactory, UserFactory, WorkspaceFactory

WORKSPACES = "{ workspaces { slug members { role user { email } } serviceAccounts { name } } }"
EVERY_LIST = """{ workspaces { slug viewerRole members { user { email } } serviceAccounts { name }
                              apiKeys { owner } invitations { email } } }"""


def _user_in_workspaces(count: int, role: str = Role.OWNER) -> User:
    """A user with ``role`` in ``count`` workspaces, each with two more members and two service
    accounts (one restricted and shared with the user)."""
    user = UserFactory()
    for _ in range(count):
        workspace = WorkspaceFactory()
        MembershipFactory(workspace=workspace, user=user, role=role)
        MembershipFactory(workspace=workspace, role=Role.ADMIN)
        MembershipFactory(workspace=workspace, role=Role.VIEWER)
        ServiceAccountFactory(workspace=workspace)
        shared = ServiceAccountFactory(workspace=workspace, is_restricted=True)
        assign_perm("view_serviceaccount", user, shared)
    return user


def _queries(user: User, document: str) -> int:
    client = login(user)
    with CaptureQueriesContext(connection) as captured:
        data = ok(gql(client, document))
    assert data["workspaces"]
    return len(captured.captured_queries)


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_workspaces_members_and_service_accounts_cost_the_same_for_1_and_5_workspaces(
    db, django_assert_num_queries, role
):
    one = _queries(_user_in_workspaces(1, role), WORKSPACES)
    five_user = _user_in_workspaces(5, role)
    client = login(five_user)
    with django_assert_num_queries(one):
        data = ok(gql(client, WORKSPACES))
    assert len(data["workspaces"]) == 5
    assert all(len(w["members"]) == 3 and len(w["serviceAccounts"]) == 2 for w in data["workspaces"])


def test_every_workspace_list_costs_the_same_for_1_and_5_workspaces(db, django_assert_num_queries):
    one = _queries(_user_in_workspaces(1), EVERY_LIST)
    client = login(_user_in_workspaces(5))
    with django_assert_num_queries(one):
        data = ok(gql(client, EVERY_LIST))
    assert len(data["workspaces"]) == 5


def test_the_query_count_is_small_and_bounded(db, django_assert_max_num_queries):
    client = login(_user_in_workspaces(5))
    # session + user, RLS scope in and out, workspaces, principals, members, service accounts
    with django_assert_max_num_queries(14):
        ok(gql(client, WORKSPACES))
