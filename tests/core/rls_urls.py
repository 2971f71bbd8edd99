"""A test-only route whose handler 'forgets' the workspace filter, to prove RLS catches it."""

from django.urls import include, path
from rest_framework.response import Response

from accounts.api.guard import WorkspaceAPIView
from accounts.models import ApiKey, AuditLogEntry, ServiceAccount


class ForgetfulView(WorkspaceAPIView):
    scope_map = {"GET": "workspace:read"}

    def get(self, request, workspace_slug):  # type: ignore[no-untyped-def]
        # Deliberately unscoped: the bug RLS exists to contain.
        return Response(
            {
                "service_accounts": sorted(
                    str(w) for w in ServiceAccount.objects.unscoped().values_list("workspace_id", flat=True)
                ),
                "api_keys": sorted({str(w) for w in ApiKey.objects.unscoped().values_list("workspace_id", flat=True)}),
                "audit": sorted(
                    {str(w) for w in AuditLogEntry.objects.unscoped().values_list("workspace_id", flat=True)}
                ),
            }
        )


urlpatterns = [
    path("api/v1/workspaces/<slug:workspace_slug>/forgetful/", ForgetfulView.as_view()),
    path("", include("config.urls")),
]
