"""The Django admin is for Flowdeck's own operators, never for customers.

Only active superusers get in (has_permission), and only their admin views see across workspaces:
the view runs with the RLS bypass on, so nothing changes for any other code path."""

from __future__ import annotations

from functools import wraps
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.tenancy import rls_bypass


class FlowdeckAdminSite(admin.AdminSite):
    site_header = "Flowdeck operations"
    site_title = "Flowdeck operations"

    def has_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not self.has_permission(request):
                return inner(request, *args, **kwargs)  # redirects to the login page
            with rls_bypass():
                return inner(request, *args, **kwargs)

        return wrapper
