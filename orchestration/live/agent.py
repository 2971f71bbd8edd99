"""The agent socket: ``/ws/v1/workspaces/<slug>/agents/<agent_id>/``.

Authenticated like the REST API's agent calls: ``Authorization: Bearer fd_sa_…`` on the handshake,
resolved by :func:`accounts.services.api_keys.api_key_authenticate`, and only the service account
that registered the agent may listen as it (``ensure_own_agent``). Cookies are ignored and no
Origin is required (a browser cannot set the header; agents are not browsers). Pushes:
``work_available`` for runs whose labels the agent covers, ``cancel`` for runs it holds.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.authz import NotFound, PermissionDenied, Principal
from accounts.services.api_keys import api_key_authenticate
from core import ratelimit
from core.errors import ServiceError
from core.live.base import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, LiveConsumer
from core.live.groups import agent_group, agents_group, api_key_group, service_account_group
from core.tenancy import workspace_scope
from orchestration.models import Agent
from orchestration.selectors import access_agent
from orchestration.selectors.agents import agent_of_workspace, upcoming_work
from orchestration.services.agents import ensure_own_agent
from orchestration.services.live import MAX_PUSHES_PER_COMMIT, work_push

CLOSE_TOO_MANY_FAILURES = 4429


def _authenticate(secret: str, ip: str | None) -> Principal | str:
    """The key's principal, or the close reason."""
    try:
        return api_key_authenticate(secret, ip_address=ip)
    except ServiceError as exc:
        allowed, _ = ratelimit.hit("api-key-failures", ip or "unknown",
                                   limit=settings.API_KEY_FAILURE_LIMIT_PER_IP, window_seconds=60)
        return exc.code if allowed else "too_many_failures"


def _own_agent(principal: Principal, agent_id: Any) -> Agent | None:
    """The agent, if this key's service account registered it; None for a malformed id, a missing
    agent, another workspace's or another service account's. The caller scopes the transaction."""
    try:
        agent = access_agent(principal, agent_id, "agent:heartbeat")
        ensure_own_agent(principal, agent, "agent:heartbeat")
    except (NotFound, PermissionDenied, ServiceError):
        return None
    return agent


def _agent(principal: Principal, slug: str, agent_id: str) -> tuple[Agent, list[dict[str, Any]]] | None:
    """The agent this key may listen as, with the pushes it gets on connect; None when the key
    acts in another workspace, the agent does not exist, or it is not this service account's."""
    if principal.workspace.slug != slug:
        return None  # a key acts only within its own workspace
    with workspace_scope([principal.workspace.pk]):
        agent = _own_agent(principal, agent_id)
        return None if agent is None else (agent, _pushes_waiting(agent))


def _pushes_waiting(agent: Agent) -> list[dict[str, Any]]:
    """The pushes for the work waiting for ``agent`` now (sent on connect and after a resync)."""
    return [work_push(labels, at) for labels, at in upcoming_work(agent, limit=MAX_PUSHES_PER_COMMIT)]


def _upcoming(workspace_id: Any, agent_id: str) -> list[dict[str, Any]]:
    with workspace_scope([workspace_id]):
        agent = agent_of_workspace(workspace_id, agent_id)
        return [] if agent is None else _pushes_waiting(agent)


def _key_still_valid(secret: str, agent_id: Any) -> bool:
    try:
        principal = api_key_authenticate(secret)
    except (ServiceError, NotFound, PermissionDenied):
        return False
    with workspace_scope([principal.workspace.pk]):
        return _own_agent(principal, agent_id) is not None


class AgentConsumer(LiveConsumer):
    async def connect(self) -> None:
        headers = dict(self.scope.get("headers") or [])
        scheme, _, secret = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        self.secret = secret.strip()
        client = self.scope.get("client") or (None, None)
        found = await database_sync_to_async(_authenticate)(self.secret, client[0])
        if isinstance(found, str):
            await self.refuse(CLOSE_TOO_MANY_FAILURES if found == "too_many_failures" else CLOSE_UNAUTHENTICATED)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        resolved = await database_sync_to_async(_agent)(found, str(kwargs["slug"]), str(kwargs["agent_id"]))
        if resolved is None:
            await self.refuse(CLOSE_FORBIDDEN)
            return
        agent, upcoming = resolved
        self.agent_id = str(agent.pk)
        self.workspace_id = agent.workspace_id
        self.labels = set(agent.labels or [])
        groups = [agents_group(agent.workspace_id), agent_group(agent.pk)]
        if found.api_key is not None:
            groups.append(api_key_group(found.api_key.pk))
        if found.service_account is not None:
            groups.append(service_account_group(found.service_account.pk))
        await self.join(*groups)
        await self.accept()
        self.start()
        await self.push({"type": "hello", "agent_id": self.agent_id})
        for push in upcoming:
            await self.push(push)
        self.start_inbox()

    async def still_allowed(self) -> bool:
        return bool(await database_sync_to_async(_key_still_valid)(self.secret, self.agent_id))

    async def flowdeck_resync(self, message: dict[str, Any]) -> None:
        # Pushes sent while Redis was away are lost: send the work waiting now, as on connect.
        for push in await database_sync_to_async(_upcoming)(self.workspace_id, self.agent_id):
            await self.push(push)

    async def flowdeck_agent(self, message: dict[str, Any]) -> None:
        push = message.get("push") or {}
        if push.get("type") == "work_available" and not set(push.get("labels") or []) <= self.labels:
            return  # this agent could not claim it
        await self.push(push)
