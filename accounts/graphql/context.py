"""Per-request state of a GraphQL operation: who is asking, their Principal in each workspace, and the
request-scoped DataLoaders.

It hangs off the Django request (graphene-django's ``info.context``), so it lives exactly as long as
one HTTP request. Mutations call :meth:`GraphQLContext.reset` so that what a mutation changed (a
role, a membership) is read afresh by its payload and by the mutations after it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest

from accounts import selectors
from accounts.authz import NotFound, Principal, principal_for_user
from accounts.models import Membership, User, Workspace
from core import ratelimit, tenancy
from core.errors import TooManyRequests

from .dataloaders import Loaders

_ATTRIBUTE = "_flowdeck_graphql_context"


class GraphQLContext:
    def __init__(self, request: HttpRequest):
        self.request = request
        self.user: User | AnonymousUser = getattr(request, "user", None) or AnonymousUser()
        self.ip_address = ratelimit.client_ip(request)
        self.reset()

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user.is_authenticated and self.user.is_active)

    def reset(self) -> None:
        """Forget cached principals and loaded rows (after a write)."""
        self._principals: dict[Any, Principal | NotFound] = {}
        self.loaders = Loaders()

    def principal(self, workspace: Workspace) -> Principal:
        """The viewer's Principal in ``workspace``; NotFound when they are not a member."""
        cached = self._principals.get(workspace.pk)
        if cached is None:
            try:
                cached = principal_for_user(self.user, workspace, self.ip_address)
            except NotFound as exc:
                cached = exc
            self._principals[workspace.pk] = cached
        if isinstance(cached, NotFound):
            raise NotFound()
        return cached

    def member_principal(self, slug: str) -> Principal | None:
        """The viewer's Principal in the workspace ``slug``, or None when they are signed out or
        not a member: the root fields that take a slug answer null for any other (no leak)."""
        if not self.is_authenticated or "\x00" in slug:
            return None
        try:
            return self.principal(selectors.workspace_get_for_user(self.user, slug))  # type: ignore[arg-type]
        except NotFound:
            return None

    def prime_principals(self, workspaces: list[Workspace]) -> None:
        """Build the Principals for a list of workspaces with one query instead of one per workspace.

        The same rule as :func:`accounts.authz.principal_for_user`: an active, signed-in user with a
        membership gets that membership's role; otherwise there is no principal."""
        missing = [w for w in workspaces if w.pk not in self._principals]
        if not missing:
            return
        roles: dict[Any, str] = {}
        if self.is_authenticated:
            roles = dict(
                Membership.objects.filter(user=self.user, workspace__in=[w.pk for w in missing]).values_list(  # type: ignore[misc]
                    "workspace_id", "role"
                )
            )
        for workspace in missing:
            role = roles.get(workspace.pk)
            self._principals[workspace.pk] = (
                NotFound()
                if role is None
                else Principal(workspace=workspace, role=role, user=self.user, ip_address=self.ip_address)  # type: ignore[arg-type]
            )

    def limit_invitation_attempts(self) -> None:
        """Count one invitation-token attempt in the same per-IP bucket as REST's invitation
        endpoints (B5); TooManyRequests over the limit."""
        allowed, retry_after = ratelimit.hit(
            "invitation", self.ip_address or "unknown", limit=settings.INVITATION_ACCEPT_LIMIT_PER_IP, window_seconds=60
        )
        if not allowed:
            raise TooManyRequests("Too many invitation attempts; wait a minute and retry.", retry_after=retry_after)

    def member_workspace_ids(self) -> list[Any]:
        if not self.is_authenticated:
            return []
        return list(selectors.workspace_list_for_user(self.user).values_list("pk", flat=True))  # type: ignore[arg-type]

    def widen_scope(self) -> None:
        """Let row-level security see every workspace the viewer belongs to now (after joining or
        creating one). The view restores the request's original setting when the operation ends."""
        tenancy.enter_workspaces(self.member_workspace_ids())


def get_context(info: Any) -> GraphQLContext:
    """The operation's context (``info.context`` is the Django request)."""
    return context_for(info.context)


def context_for(request: HttpRequest) -> GraphQLContext:
    """The request's GraphQL context, created on first use."""
    context = getattr(request, _ATTRIBUTE, None)
    if context is None:
        context = GraphQLContext(request)
        setattr(request, _ATTRIBUTE, context)
    return context
