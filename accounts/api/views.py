"""REST adapters for accounts: validate, authorize (in the guard and the services), call a service,
render. No business logic here."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors
from accounts.api.guard import WorkspaceAPIView
from accounts.authz import NotFound, Principal
from accounts.links import public_url
from accounts.models import Membership, User
from accounts.services import (
    api_keys,
    invitations,
    members,
    object_permissions,
    security,
    service_accounts,
    workspaces,
)
from core import ratelimit
from core.errors import Forbidden, TooManyRequests
from core.openapi import QUOTA_EXCEEDED, error
from core.pagination import CreatedCursorPagination

from . import serializers as s


def _valid(serializer_class: type, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _paginated(view: APIView, request: Request, queryset: QuerySet, out: type) -> Response:
    # The view's own pagination_class: the one the OpenAPI schema documents its envelope from.
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(out(page, many=True).data)


class MeView(APIView):
    @extend_schema(responses=s.MeOut, summary="Who am I: the user and their workspaces")
    def get(self, request: Request) -> Response:
        principal = request.auth if isinstance(request.auth, Principal) else None
        if principal is not None:
            return Response({"user": s.UserOut(principal.user).data if principal.user else None,
                             "workspaces": s.WorkspaceOut([principal.workspace], many=True).data})
        return Response({"user": s.UserOut(request.user).data,
                         "workspaces": s.WorkspaceOut(selectors.workspace_list_for_user(request.user), many=True).data})


def _signed_in_person(request: Request) -> User:
    """The person behind a browser session; a key (even a personal one) is refused, since what it is
    asked for covers every workspace and every session, not the key's own workspace."""
    if isinstance(request.auth, Principal) or not isinstance(request.user, User):
        raise Forbidden(
            "Signing out everywhere is done from a signed-in browser session, not with an API key.",
            code="session_required",
        )
    return request.user


_SESSION_ONLY = error(
    "Sent with an API key (`session_required`: this is done from a signed-in browser session), or a session "
    "request came without its CSRF token."
)


class SignOutEverywhereView(APIView):
    """What a person who suspects a leak needs: every session ended (this one too) and every personal
    API key revoked, in all their workspaces. Service-account keys are left alone."""

    @extend_schema(
        summary="What signing out everywhere would revoke: your personal API keys that still work",
        responses={200: s.SignOutEverywherePreviewOut, 403: _SESSION_ONLY},
    )
    def get(self, request: Request) -> Response:
        counts = selectors.personal_api_key_counts(_signed_in_person(request))
        return Response(s.SignOutEverywherePreviewOut({
            "personal_api_keys": sum(c.active_api_keys for c in counts), "workspaces": counts,
        }).data)

    @extend_schema(
        request=s.SignOutEverywhereIn,
        summary="Sign out everywhere (this session too) and revoke all your personal API keys",
        responses={
            200: s.SignedOutEverywhereOut,
            400: error("Invalid body (`invalid`), or not your current password (`wrong_password`; "
                       "`details.password`). Nothing was changed."),
            403: _SESSION_ONLY,
            429: error("Too many password attempts for your account or from your address (`rate_limited`; "
                       "the same budget as logging in): wait for `Retry-After` seconds."),
        },
    )
    def post(self, request: Request) -> Response:
        user = _signed_in_person(request)
        data = _valid(s.SignOutEverywhereIn, request)
        result = security.sign_out_everywhere(
            user=user, password=data["password"], ip_address=ratelimit.client_ip(request)
        )
        logout(request._request)  # this browser too: the answer clears its session cookie
        return Response(s.SignedOutEverywhereOut(result).data)


class WorkspaceListView(APIView):
    @extend_schema(responses=s.WorkspaceOut(many=True), summary="Workspaces the caller belongs to")
    def get(self, request: Request) -> Response:
        principal = request.auth if isinstance(request.auth, Principal) else None
        if principal is not None:
            return Response(s.WorkspaceOut([principal.workspace], many=True).data)
        return Response(s.WorkspaceOut(selectors.workspace_list_for_user(request.user), many=True).data)

    @extend_schema(request=s.WorkspaceCreateIn, summary="Create a workspace", responses={
        201: s.WorkspaceOut,
        404: error("Sent with an API key: keys act in their own workspace; a person creates workspaces."),
        409: error("The slug is already taken (`slug_taken`)."),
    })
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, Principal):
            raise NotFound()  # keys belong to one workspace; creating workspaces is for people
        data = _valid(s.WorkspaceCreateIn, request)
        workspace = workspaces.workspace_create(user=request.user, ip_address=ratelimit.client_ip(request), **data)
        return Response(s.WorkspaceOut(workspace).data, status=status.HTTP_201_CREATED)


class WorkspaceDetailView(WorkspaceAPIView):
    scope_map = {"GET": "workspace:read", "PATCH": "workspace:update", "DELETE": "workspace:delete"}

    @extend_schema(responses=s.WorkspaceOut)
    def get(self, request: Request, workspace_slug: str) -> Response:
        return Response(s.WorkspaceOut(self.workspace).data)

    @extend_schema(request=s.WorkspaceUpdateIn, responses=s.WorkspaceOut)
    def patch(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.WorkspaceUpdateIn, request)
        workspace = workspaces.workspace_update(actor=self.principal, workspace=self.workspace, **data)
        return Response(s.WorkspaceOut(workspace).data)

    @extend_schema(request=s.WorkspaceDeleteIn, responses={204: None})
    def delete(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.WorkspaceDeleteIn, request)
        workspaces.workspace_delete(actor=self.principal, workspace=self.workspace, **data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(WorkspaceAPIView):
    scope_map = {"GET": "member:read"}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=s.MembershipOut(many=True))
    def get(self, request: Request, workspace_slug: str) -> Response:
        return _paginated(self, request, selectors.membership_list(self.principal), s.MembershipOut)


class MemberDetailView(WorkspaceAPIView):
    # DELETE of one's own membership is leaving, which every member may do: the service decides.
    scope_map = {"GET": "member:read", "PATCH": "member:update_role", "DELETE": "member:read"}

    @extend_schema(responses=s.MembershipOut)
    def get(self, request: Request, workspace_slug: str, member_id: str) -> Response:
        return Response(s.MembershipOut(selectors.membership_get(self.principal, member_id)).data)

    @extend_schema(request=s.RoleIn, responses=s.MembershipOut, summary="Change a member's role")
    def patch(self, request: Request, workspace_slug: str, member_id: str) -> Response:
        data = _valid(s.RoleIn, request)
        membership = selectors.membership_get(self.principal, member_id)
        membership = members.membership_change_role(actor=self.principal, membership=membership, role=data["role"])
        return Response(s.MembershipOut(membership).data)

    @extend_schema(responses={204: None}, summary="Remove a member (or leave, for your own membership)")
    def delete(self, request: Request, workspace_slug: str, member_id: str) -> Response:
        membership = selectors.membership_get(self.principal, member_id)
        members.membership_remove(actor=self.principal, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LeaveView(WorkspaceAPIView):
    scope_map = {"POST": "workspace:read"}

    @extend_schema(request=None, responses={204: None}, summary="Leave the workspace")
    def post(self, request: Request, workspace_slug: str) -> Response:
        if self.principal.user is None or self.principal.api_key is not None:
            raise NotFound()
        membership = Membership.objects.get(workspace=self.workspace, user=self.principal.user)
        members.membership_remove(actor=self.principal, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(WorkspaceAPIView):
    scope_map = {"GET": "invitation:read", "POST": "invitation:create"}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=s.InvitationOut(many=True))
    def get(self, request: Request, workspace_slug: str) -> Response:
        return _paginated(self, request, selectors.invitation_list(self.principal), s.InvitationOut)

    @extend_schema(request=s.InvitationCreateIn, responses={201: s.InvitationOut, 402: QUOTA_EXCEEDED},
                   summary="Invite someone by email")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.InvitationCreateIn, request)
        invitation, _token = invitations.invitation_create(actor=self.principal, base_url=public_url(request), **data)
        return Response(s.InvitationOut(invitation).data, status=status.HTTP_201_CREATED)


class InvitationRevokeView(WorkspaceAPIView):
    scope_map = {"POST": "invitation:revoke"}

    @extend_schema(request=None, responses=s.InvitationOut)
    def post(self, request: Request, workspace_slug: str, invitation_id: str) -> Response:
        invitation = invitations.invitation_revoke(actor=self.principal, invitation_id=invitation_id)
        return Response(s.InvitationOut(invitation).data)


class InvitationResendView(WorkspaceAPIView):
    scope_map = {"POST": "invitation:create"}

    @extend_schema(request=None, responses=s.InvitationOut)
    def post(self, request: Request, workspace_slug: str, invitation_id: str) -> Response:
        invitation, _token = invitations.invitation_resend(
            actor=self.principal, invitation_id=invitation_id, base_url=public_url(request)
        )
        return Response(s.InvitationOut(invitation).data)


def _limit_invitation_attempts(request: Request) -> None:
    from django.conf import settings

    allowed, retry_after = ratelimit.hit(
        "invitation", ratelimit.client_ip(request) or "unknown", limit=settings.INVITATION_ACCEPT_LIMIT_PER_IP,
        window_seconds=60,
    )
    if not allowed:
        raise TooManyRequests("Too many invitation attempts; wait a minute and retry.", retry_after=retry_after)


class InvitationTokenView(APIView):
    """What an invitation link is for, shown before accepting (no sign-in needed)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(summary="Preview an invitation by its token", responses={
        200: s.InvitationPreviewOut,
        404: error("No invitation has this token."),
        429: error("Too many invitation attempts from your address (`rate_limited`); wait for `Retry-After`."),
    })
    def get(self, request: Request, token: str) -> Response:
        _limit_invitation_attempts(request)
        invitation = invitations.invitation_by_token(token)
        return Response(s.InvitationPreviewOut(invitation).data)


class InvitationAcceptView(APIView):
    @extend_schema(
        request=None, responses={
            200: s.WorkspaceOut,
            404: error("No invitation has this token, or it was sent with an API key (accepting is for a person)."),
            410: error("Used, revoked or expired (`invitation_used`, `invitation_revoked`, `invitation_expired`)."),
        }
    )
    def post(self, request: Request, token: str) -> Response:
        _limit_invitation_attempts(request)
        if isinstance(request.auth, Principal) or not isinstance(request.user, User):
            raise NotFound()  # accepting is for a signed-in person, not a key
        membership = invitations.invitation_accept(
            token=token, user=request.user, ip_address=ratelimit.client_ip(request)
        )
        return Response(s.WorkspaceOut(membership.workspace).data)


class ServiceAccountListView(WorkspaceAPIView):
    # Listing is open to members: the selector shows each person what their role or grants allow.
    scope_map = {"GET": "workspace:read", "POST": "service_account:create"}

    @extend_schema(responses=s.ServiceAccountOut(many=True))
    def get(self, request: Request, workspace_slug: str) -> Response:
        return Response(s.ServiceAccountOut(selectors.service_account_list(self.principal), many=True).data)

    @extend_schema(request=s.ServiceAccountCreateIn, responses={201: s.ServiceAccountOut})
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.ServiceAccountCreateIn, request)
        account = service_accounts.service_account_create(actor=self.principal, **data)
        return Response(s.ServiceAccountOut(account).data, status=status.HTTP_201_CREATED)


class ServiceAccountDetailView(WorkspaceAPIView):
    # Reading and updating can be granted on one account: the guard leaves those to the service.
    scope_map = {"GET": "service_account:read", "PATCH": "service_account:update", "DELETE": "service_account:delete"}

    def _account(self, account_id: str):
        return service_accounts.service_account_get(actor=self.principal, service_account_id=account_id)

    @extend_schema(responses=s.ServiceAccountOut)
    def get(self, request: Request, workspace_slug: str, account_id: str) -> Response:
        return Response(s.ServiceAccountOut(self._account(account_id)).data)

    @extend_schema(request=s.ServiceAccountUpdateIn, responses=s.ServiceAccountOut)
    def patch(self, request: Request, workspace_slug: str, account_id: str) -> Response:
        data = _valid(s.ServiceAccountUpdateIn, request)
        account = service_accounts.service_account_update(
            actor=self.principal, account=self._account(account_id), **data
        )
        return Response(s.ServiceAccountOut(account).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, account_id: str) -> Response:
        service_accounts.service_account_delete(actor=self.principal, account=self._account(account_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServiceAccountKeysView(WorkspaceAPIView):
    scope_map = {"GET": "service_account:manage_keys", "POST": "service_account:manage_keys"}

    @extend_schema(responses=s.ApiKeyOut(many=True))
    def get(self, request: Request, workspace_slug: str, account_id: str) -> Response:
        account = service_accounts.service_account_get(actor=self.principal, service_account_id=account_id)
        from accounts.authz import authorize

        authorize(self.principal, "service_account:manage_keys", account)
        return Response(s.ApiKeyOut(account.api_keys.all().select_related("service_account"), many=True).data)

    @extend_schema(request=s.ServiceAccountKeyCreateIn, responses={201: s.ApiKeyCreatedOut})
    def post(self, request: Request, workspace_slug: str, account_id: str) -> Response:
        data = _valid(s.ServiceAccountKeyCreateIn, request)
        account = service_accounts.service_account_get(actor=self.principal, service_account_id=account_id)
        created = api_keys.api_key_create_for_service_account(actor=self.principal, account=account, **data)
        return Response(
            s.ApiKeyCreatedOut(created.key, context={"secret": created.secret}).data, status=status.HTTP_201_CREATED
        )


class ServiceAccountPermissionsView(WorkspaceAPIView):
    scope_map = {
        "GET": "object_permission:manage", "POST": "object_permission:manage", "DELETE": "object_permission:manage"
    }

    def _target(self, account_id: str, user_id: Any = None):
        account = service_accounts.service_account_get(actor=self.principal, service_account_id=account_id)
        if user_id is None:
            return account, None
        membership = Membership.objects.filter(workspace=self.workspace, user_id=user_id).select_related("user").first()
        if membership is None:
            raise NotFound()
        return account, membership.user

    @extend_schema(responses=s.ObjectGrantOut(many=True), summary="Who has object-level grants on this service account")
    def get(self, request: Request, workspace_slug: str, account_id: str) -> Response:
        account, _ = self._target(account_id)
        grants = object_permissions.object_permission_list(actor=self.principal, obj=account)
        return Response([{"user_id": str(u.pk), "email": u.email, "permissions": sorted(p)} for u, p in grants.items()])

    @extend_schema(request=s.ObjectPermissionIn, responses={204: None}, summary="Grant view or manage on this account")
    def post(self, request: Request, workspace_slug: str, account_id: str) -> Response:
        data = _valid(s.ObjectPermissionIn, request)
        account, user = self._target(account_id, data["user_id"])
        object_permissions.object_permission_grant(actor=self.principal, obj=account, user=user, level=data["level"])
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.ObjectPermissionIn, responses={204: None}, summary="Take a grant back")
    def delete(self, request: Request, workspace_slug: str, account_id: str) -> Response:
        data = _valid(s.ObjectPermissionIn, request)
        account, user = self._target(account_id, data["user_id"])
        object_permissions.object_permission_revoke(actor=self.principal, obj=account, user=user, level=data["level"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyListView(WorkspaceAPIView):
    scope_map = {"GET": "workspace:read", "POST": "api_key:create_own"}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=s.ApiKeyOut(many=True), summary="Your keys (Admins: every key)")
    def get(self, request: Request, workspace_slug: str) -> Response:
        return _paginated(self, request, selectors.api_key_list(self.principal), s.ApiKeyOut)

    @extend_schema(request=s.ApiKeyCreateIn, responses={201: s.ApiKeyCreatedOut}, summary="Create a personal key")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.ApiKeyCreateIn, request)
        created = api_keys.api_key_create_for_user(actor=self.principal, **data)
        return Response(
            s.ApiKeyCreatedOut(created.key, context={"secret": created.secret}).data, status=status.HTTP_201_CREATED
        )


class ApiKeyDetailView(WorkspaceAPIView):
    # Everyone may revoke their own keys (Admins any key): the service decides per key.
    scope_map = {"GET": "workspace:read", "DELETE": "workspace:read"}

    @extend_schema(responses=s.ApiKeyOut)
    def get(self, request: Request, workspace_slug: str, key_id: str) -> Response:
        return Response(s.ApiKeyOut(api_keys.api_key_get(actor=self.principal, key_id=key_id)).data)

    @extend_schema(responses={204: None}, summary="Revoke a key (effective on the next request)")
    def delete(self, request: Request, workspace_slug: str, key_id: str) -> Response:
        key = api_keys.api_key_get(actor=self.principal, key_id=key_id)
        api_keys.api_key_revoke(actor=self.principal, key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyRotateView(WorkspaceAPIView):
    # Like revoking: one's own keys, or any key for Admins; the service decides per key.
    scope_map = {"POST": "workspace:read"}

    @extend_schema(
        request=s.ApiKeyRotateIn, responses={201: s.ApiKeyCreatedOut}, summary="Rotate a key with a grace period"
    )
    def post(self, request: Request, workspace_slug: str, key_id: str) -> Response:
        data = _valid(s.ApiKeyRotateIn, request)
        key = api_keys.api_key_get(actor=self.principal, key_id=key_id)
        created = api_keys.api_key_rotate(actor=self.principal, key=key, **data)
        response = Response(
            s.ApiKeyCreatedOut(created.key, context={"secret": created.secret}).data, status=status.HTTP_201_CREATED
        )
        # The new secret is in this answer only: no cache (browser, proxy) may keep a copy.
        response["Cache-Control"] = "no-store"
        return response


class AuditLogFilterIn(serializers.Serializer):
    area = serializers.ChoiceField(choices=sorted(selectors.AUDIT_LOG_AREAS), required=False)


class AuditLogView(WorkspaceAPIView):
    scope_map = {"GET": "audit_log:read"}
    pagination_class = CreatedCursorPagination

    @extend_schema(
        parameters=[OpenApiParameter("area", OpenApiTypes.STR, enum=sorted(selectors.AUDIT_LOG_AREAS),
                                     description="Only this area's entries (by action).")],
        responses=s.AuditLogEntryOut(many=True),
    )
    def get(self, request: Request, workspace_slug: str) -> Response:
        given = request.query_params
        filters = AuditLogFilterIn(data={"area": given["area"]} if "area" in given else {})
        filters.is_valid(raise_exception=True)
        entries = selectors.audit_log_list(self.principal, area=filters.validated_data.get("area"))
        return _paginated(self, request, entries, s.AuditLogEntryOut)


