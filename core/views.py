from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .errors import error_response


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@csrf_exempt
def not_found_json(request: HttpRequest) -> JsonResponse:
    return error_response("not_found", "No API endpoint at this path.", 404)


def server_error(request: HttpRequest) -> HttpResponse:
    """500 in the one error shape for API clients; a plain page for people."""
    if request.path.startswith(("/api/", "/graphql", "/_allauth/")):
        return error_response("server_error", "Something went wrong on our side; it has been logged. Retry shortly.", 500)
    return HttpResponse("Something went wrong on our side. Please retry shortly.", status=500, content_type="text/plain")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if request.path.startswith(("/api/", "/graphql", "/_allauth/")):
        return error_response(
            "csrf_failed", "CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken header.", 403
        )
    return HttpResponse("CSRF check failed. Reload the page and try again.", status=403, content_type="text/plain")
