"""Channel-layer group names used by the live sockets. Named by the server only (E1): a client
never chooses a group, it asks for a workspace or a run and is checked."""

from __future__ import annotations

import hashlib
from typing import Any

from core.events import flow_run_group, workspace_group

__all__ = [
    "agent_group",
    "agents_group",
    "api_key_group",
    "flow_run_group",
    "service_account_group",
    "session_group",
    "user_group",
    "workspace_group",
]


def agents_group(workspace_id: Any) -> str:
    """Every agent socket of a workspace (work-available pushes; each socket filters by labels)."""
    return f"live.agents.{workspace_id}"


def agent_group(agent_id: Any) -> str:
    """One agent's sockets (cancel pushes)."""
    return f"live.agent.{agent_id}"


def user_group(user_id: Any) -> str:
    """Control messages for a person's browser sockets (membership removed, deactivated)."""
    return f"live.user.{user_id}"


def session_group(session_key: str) -> str:
    """Control messages for the sockets of one browser session (logged out). Hashed: the session
    key is a credential and group names are stored in Redis."""
    return "live.session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def api_key_group(key_id: Any) -> str:
    """Control messages for sockets authenticated with one API key (revoked, rotated)."""
    return f"live.key.{key_id}"


def service_account_group(service_account_id: Any) -> str:
    """Control messages for sockets of one service account (deleted)."""
    return f"live.sa.{service_account_id}"
