"""Logging out closes that session's sockets (the session no longer authenticates them)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from .control import close_session_sockets


@receiver(user_logged_out, dispatch_uid="flowdeck-live-logout")
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        close_session_sockets(session_key=session.session_key)
