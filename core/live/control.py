"""Closing live sockets when access ends (C4 in docs/reliability.md).

The accounts services call these inside their transaction; the control message is sent after
commit to a group only the affected sockets joined, and each socket closes itself with 4403. A
socket that misses the message (Redis blip) still re-checks its access every
``REVALIDATE_SECONDS`` (see :mod:`core.live.base`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.events import send_after_commit

from .groups import api_key_group, service_account_group, session_group, user_group

CLOSE_FORBIDDEN = 4403


def _control(reason: str, workspace_id: Any = None) -> dict[str, Any]:
    return {
        "type": "flowdeck.control",
        "workspace_id": None if workspace_id is None else str(workspace_id),
        "code": CLOSE_FORBIDDEN,
        "reason": reason,
    }


def close_user_sockets(*, user_id: Any, workspace_id: Any = None, reason: str = "access_revoked") -> None:
    """Close a person's sockets to ``workspace_id`` (or to every workspace when None)."""
    send_after_commit(user_group(user_id), _control(reason, workspace_id))


def close_session_sockets(*, session_key: str, reason: str = "logged_out") -> None:
    send_after_commit(session_group(session_key), _control(reason))


def close_api_key_sockets(*, key_ids: Iterable[Any], reason: str = "api_key_revoked") -> None:
    for key_id in key_ids:
        send_after_commit(api_key_group(key_id), _control(reason))


def close_service_account_sockets(*, service_account_id: Any, reason: str = "service_account_deleted") -> None:
    send_after_commit(service_account_group(service_account_id), _control(reason))
