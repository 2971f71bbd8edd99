from django.db import connection
from django.http import HttpRequest, JsonResponse

from .errors import error_response


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def not_found_json(request: HttpRequest) -> JsonResponse:
    return error_response("not_found", "No API endpoint at this path.", 404)
