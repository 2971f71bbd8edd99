"""The guarded base for every workspace-scoped REST endpoint (PostHog/Sentry style).

The workspace comes from the URL (``/api/v1/workspaces/{slug}/…``). Before any handler runs, the
base view resolves it, turns the request's credentials into a :class:`Principal` (a key only ever
acts in its own workspace; a user must be a member), checks the scope the endpoint declares for
the HTTP method, and scopes the database transaction to that workspace for row-level security.
Subclasses declare ``scope_map`` and write handlers; they cannot override the guard.

It lives in accounts, not core, because it turns credentials into a Principal and checks roles:
both are accounts' business, and core imports no app (tests/test_architecture.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts import key_cache
from accounts.api.authentication import refused, user_of
from accounts.authz import OBJECT_GRANTS, NotFound, Principal, authorize, principal_for_user
from accounts.models import Workspace
from accounts.services.api_keys import api_key_confirm
from core import ratelimit, tenancy
from core.errors import ServiceError

GUARDED = ("initial", "perform_authentication", "finalize_response", "get_principal", "confirm_cached_key",
           "confirms_cached_keys")


class WorkspaceAPIView(APIView):
    #: HTTP method -> the action the method performs, checked before the handler. An action that a
    #: grant on one object can allow (``OBJECT_GRANTS``: a Viewer with ``manage`` on a project may
    #: edit it) cannot be refused here, before the object is known: for those the guard checks
    #: membership only and the service, which authorizes on the object, decides.
    scope_map: ClassVar[dict[str, str]] = {}
    #: Tells ApiKeyAuthentication that a key from the cache may come unconfirmed: initial() reads its
    #: workspace's generation in the statement that scopes the request, before anything else runs.
    confirms_cached_keys: ClassVar[bool] = True
    principal: Principal
    workspace: Workspace

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in GUARDED:
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} must not override {name}: the workspace guard lives there.")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, DRF permissions, throttles
        self.principal = self.get_principal(request, kwargs["workspace_slug"])
        self.workspace = self.principal.workspace
        token = admit(self.principal, type(self).scope_map, request.method or "", custom_plans=_custom_plans(request))
        self.__dict__.setdefault("_rls_token", token)

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        # Before DRF's permissions and throttles look at the principal.
        self.confirm_cached_key(request)

    def confirm_cached_key(self, request: Request) -> None:
        """Confirm a key served from the cache: its workspace's generation is read in the statement
        that scopes the transaction to that workspace (the key's own, the only one it may act in).
        A key acting on another workspace's URL is refused just after (get_principal)."""
        principal = request.auth
        if not isinstance(principal, Principal) or principal.unconfirmed is None:
            return
        try:
            self._rls_token, confirmed = scope_to_key(principal, custom_plans=_custom_plans(request))
        except ServiceError as exc:
            raise refused(request, exc) from None
        request.user, request.auth = user_of(confirmed), confirmed

    def get_principal(self, request: Request, slug: str) -> Principal:
        principal = request.auth
        if isinstance(principal, Principal):
            if principal.workspace.slug != slug:
                raise NotFound()  # a key acts only within its own workspace
            return principal
        workspace = Workspace.objects.filter(slug=slug).first()
        if workspace is None:
            raise NotFound()
        return principal_for_user(request.user, workspace, ratelimit.client_ip(request))

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        token = self.__dict__.pop("_rls_token", None)
        if token is not None:
            # With ATOMIC_REQUESTS the request's transaction, and the setting, end as the view returns.
            tenancy.restore_unless_request_ends(token)
        return super().finalize_response(request, response, *args, **kwargs)


def scope_to_key(principal: Principal, *, custom_plans: bool) -> tuple[tenancy.RlsToken, Principal]:
    """Scope the transaction to the workspace of a key served from the cache, reading that
    workspace's generation in the same statement, and confirm the key with it (a ServiceError when
    the key no longer holds)."""
    workspace_id = principal.workspace.pk
    token, generation = tenancy.enter_workspaces_reading(
        [workspace_id], *key_cache.generation_read(workspace_id), custom_plans=custom_plans)
    return token, api_key_confirm(principal, generation)


def admit(principal: Principal, scope_map: dict[str, str], method: str, *, custom_plans: bool) -> tenancy.RlsToken:
    """The guard's checks once the principal is known to belong to the URL's workspace: the
    transaction scoped to it (no statement when confirming a cached key has already done so), and
    the method's action on the workspace. Returns what restores the previous scope."""
    workspace = principal.workspace
    token = tenancy.enter_workspaces([workspace.pk], custom_plans=custom_plans)
    action = scope_map.get(method)
    if action is None and method not in ("OPTIONS", "HEAD"):
        # Only said once membership is proven, so it reveals nothing about other workspaces.
        raise MethodNotAllowed(method)
    if action and action not in OBJECT_GRANTS:
        authorize(principal, action, workspace)
    return token


def _custom_plans(request: Request) -> bool:
    # Reads plan each statement for its values (lists filter by selective values); the agents'
    # writes keep the prepared statements' generic plans (tenancy.enter_workspaces).
    return request.method in ("GET", "HEAD")
