"""The web app is one HTML shell; React routes everything under it."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie
def spa(request: HttpRequest, path: str = "") -> HttpResponse:
    """Every browser route renders the same shell (it sets the CSRF cookie the app sends back).

    The shell names content-hashed assets, so it must never be served stale after a deploy;
    the assets themselves are cached for good by ServeStatic."""
    manifest = settings.DJANGO_VITE["default"]["manifest_path"]
    if not settings.DJANGO_VITE["default"]["dev_mode"] and not manifest.exists():
        return HttpResponse(
            "The web app is not built yet: run `npm --prefix frontend/app ci && npm --prefix frontend/app run build`.",
            status=503,
            content_type="text/plain",
        )
    response = render(request, "frontend/index.html")
    patch_cache_control(response, no_cache=True, private=True)
    return response
