from django.urls import path

from . import views

ws = "workspaces/<slug:workspace_slug>/"

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("me/sign-out-everywhere/", views.SignOutEverywhereView.as_view(), name="sign-out-everywhere"),
    path("workspaces/", views.WorkspaceListView.as_view(), name="workspace-list"),
    path(ws, views.WorkspaceDetailView.as_view(), name="workspace-detail"),
    path(ws + "members/", views.MemberListView.as_view(), name="member-list"),
    path(ws + "members/<uuid:member_id>/", views.MemberDetailView.as_view(), name="member-detail"),
    path(ws + "leave/", views.LeaveView.as_view(), name="workspace-leave"),
    path(ws + "invitations/", views.InvitationListView.as_view(), name="invitation-list"),
    path(
        ws + "invitations/<uuid:invitation_id>/revoke/", views.InvitationRevokeView.as_view(), name="invitation-revoke"
    ),
    path(
        ws + "invitations/<uuid:invitation_id>/resend/", views.InvitationResendView.as_view(), name="invitation-resend"
    ),
    path(ws + "service-accounts/", views.ServiceAccountListView.as_view(), name="service-account-list"),
    path(
        ws + "service-accounts/<uuid:account_id>/",
        views.ServiceAccountDetailView.as_view(),
        name="service-account-detail",
    ),
    path(
        ws + "service-accounts/<uuid:account_id>/keys/",
        views.ServiceAccountKeysView.as_view(),
        name="service-account-keys",
    ),
    path(
        ws + "service-accounts/<uuid:account_id>/permissions/",
        views.ServiceAccountPermissionsView.as_view(),
        name="service-account-permissions",
    ),
    path(ws + "api-keys/", views.ApiKeyListView.as_view(), name="api-key-list"),
    path(ws + "api-keys/<uuid:key_id>/", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
    path(ws + "api-keys/<uuid:key_id>/rotate/", views.ApiKeyRotateView.as_view(), name="api-key-rotate"),
    path(ws + "audit-log/", views.AuditLogView.as_view(), name="audit-log"),
    path("invitations/<str:token>/", views.InvitationTokenView.as_view(), name="invitation-token"),
    path("invitations/<str:token>/accept/", views.InvitationAcceptView.as_view(), name="invitation-accept"),
]
