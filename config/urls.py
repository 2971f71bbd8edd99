from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config.graphql_view import FlowdeckGraphQLView
from core.views import healthz, not_found_json, readyz
from frontend.views import spa

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("_allauth/", include("allauth.headless.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (core/security_headers.py).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # The agents' endpoints are matched first: Django tries the patterns in order, and they are
    # most of the traffic (no two of these includes share a pattern, so the order changes no match).
    path("api/v1/", include(("orchestration.api.urls", "orchestration"), namespace="orchestration")),
    path("api/v1/", include(("accounts.api.urls", "accounts"), namespace="v1")),
    path("api/v1/", include(("billing.api.urls", "billing"), namespace="billing")),
    re_path(r"^api/", not_found_json),
    path("graphql", FlowdeckGraphQLView.as_view(), name="graphql"),
    re_path(r"^(?!static/)(?P<path>.*)$", spa, name="spa"),
]

handler500 = "core.views.server_error"
