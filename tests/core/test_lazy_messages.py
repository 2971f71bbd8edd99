"""The message storage (Django's messages framework, used by the admin) is built only when a view
uses it: API requests never pay for it, and a message still reaches the next page."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty

from core.middleware import LazyMessageMiddleware


def _through_middleware(view) -> tuple[HttpRequest, HttpResponse]:
    request = RequestFactory().get("/admin/")
    request.session = {}  # the fallback storage's second half; the cookie takes short messages
    response = LazyMessageMiddleware(lambda r: view(r))(request)
    return request, response


def test_a_request_that_uses_no_message_never_builds_the_storage():
    request, response = _through_middleware(lambda r: HttpResponse("ok"))
    assert request._messages._wrapped is empty
    assert "messages" not in response.cookies


def test_a_message_added_by_a_view_is_stored_for_the_next_page():
    def view(request):
        messages.success(request, "The key was revoked.")
        return HttpResponse("ok")

    _, response = _through_middleware(view)
    next_request = RequestFactory().get("/admin/", HTTP_COOKIE=f"messages={response.cookies['messages'].value}")
    next_request.session = {}
    seen: list[str] = []

    def next_view(request):
        seen.extend(str(m) for m in messages.get_messages(request))
        return HttpResponse("ok")

    LazyMessageMiddleware(next_view)(next_request)
    assert seen == ["The key was revoked."]
