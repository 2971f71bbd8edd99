"""The browser socket: ``/ws/v1/workspaces/<slug>/events/`` (protocol in docs/live-updates.md).

Authenticated with the Django session (Channels' ``AuthMiddlewareStack``), Origin checked against
ALLOWED_HOSTS before the handshake (E1). Members get the workspace's events, and on demand the
events inside one run (task states, log notifications). Events of restricted projects the member
cannot read are left out, as REST leaves them out.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from accounts.authz import NotFound, PermissionDenied, Principal, principal_for_user
from accounts.models import User, Workspace
from core.event_log import Replay, get_event_log
from core.live.base import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, LiveConsumer
from core.live.groups import flow_run_group, session_group, user_group, workspace_group
from core.live.logs import LogGate
from core.tenancy import workspace_scope
from orchestration.selectors import access_flow_run
from orchestration.selectors.projects import hidden_projects, project_id_of

MAX_RUN_SUBSCRIPTIONS = 50
GAP_MESSAGE = "Missed events are no longer available; reload."
_VISIBILITY_CACHE = 10_000


def _principal(user_id: Any, slug: str) -> Principal | None:
    """A fresh membership check (user row re-read: deactivation counts)."""
    user = User.objects.filter(pk=user_id).first()
    workspace = Workspace.objects.filter(slug=slug).first()
    if user is None or workspace is None:
        return None
    try:
        return principal_for_user(user, workspace)
    except NotFound:
        return None


def _run_readable(principal: Principal, flow_run_id: uuid.UUID) -> bool:
    """The run exists in the principal's workspace and its project is readable (restricted
    projects hide their runs): the same check the REST run views make."""
    with workspace_scope([principal.workspace.pk]):
        try:
            access_flow_run(principal, flow_run_id)
        except (NotFound, PermissionDenied):
            return False
    return True


def _hidden_projects(principal: Principal) -> set[str]:
    with workspace_scope([principal.workspace.pk]):
        return hidden_projects(principal)


def _project_of(workspace_id: Any, kind: str, ident: str) -> str | None:
    """The project an event's subject belongs to, or None when the subject is gone."""
    with workspace_scope([workspace_id]):
        return project_id_of(workspace_id, kind, ident)


def _subject(event: dict[str, Any]) -> tuple[str, str] | None:
    """What a workspace event is about, for the restricted-project filter: (kind, id), or None
    when it is about nothing project-scoped (agents, concurrency limits, workspace-wide incidents)."""
    kind, data = str(event.get("type", "")), event.get("data") or {}
    if kind.startswith("project."):
        return "project", str(data.get("id"))
    if kind.startswith("incident."):
        # An incident about a flow follows its flow; one naming no flow, its policy's project (if any).
        if data.get("flow_id"):
            return "flow", str(data["flow_id"])
        return ("project", str(data["project_id"])) if data.get("project_id") else None
    if kind.startswith(("flow.", "schedule.")) or kind == "flow_run.created":
        return "flow", str(data.get("flow_id") or data.get("id"))
    if kind.startswith("flow_run."):
        if data.get("schedule_id"):
            return "schedule", str(data["schedule_id"])
        return "run", str(data.get("id"))
    return None


class BrowserConsumer(LiveConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        self.slug = str(self.scope["url_route"]["kwargs"]["slug"])
        self.user_id = user.pk
        principal = await database_sync_to_async(_principal)(self.user_id, self.slug)
        if principal is None:
            await self.refuse(CLOSE_FORBIDDEN)  # not a member (or no such workspace: same answer)
            return
        self.principal = principal
        self.workspace_id = str(principal.workspace.pk)
        self.hidden = await database_sync_to_async(_hidden_projects)(principal)
        self.project_cache: dict[tuple[str, str], str | None] = {}
        self.runs: dict[str, int] = {}  # subscribed run -> replay boundary
        self.logs = LogGate()
        self.log = get_event_log()
        after = self._after_param()

        session = self.scope.get("session")
        groups = [workspace_group(self.workspace_id), user_group(self.user_id)]
        if session is not None and session.session_key:
            groups.append(session_group(session.session_key))
        # Join before reading the replay: an event published in between is then both replayed and
        # delivered live, and the live copy is dropped by seq (``self.boundary``).
        await self.join(*groups)
        await self.accept()
        self.start()
        replay = await self._replay(after, None)
        self.boundary = replay.latest
        for item in replay.events:
            if await self._visible(item["event"]):
                await self.push({"type": "event", "seq": item["seq"], "event": item["event"]})
        if replay.gap:
            await self.push({"type": "gap", "message": GAP_MESSAGE})
        await self.push({"type": "hello", "seq": replay.latest, "workspace": self.slug})
        self.start_inbox()

    def _after_param(self) -> int | None:
        values = parse_qs((self.scope.get("query_string") or b"").decode("latin-1")).get("after")
        return _as_seq(values[0]) if values else None

    async def _replay(self, after: int | None, flow_run_id: str | None) -> Replay:
        if self.log is None:
            return Replay()
        try:
            if after is None:
                return Replay(latest=await self.log.latest(self.workspace_id))
            return await self.log.replay(self.workspace_id, after, flow_run_id)
        except Exception:  # the store is down: go live, say the past is unknown (G3)
            # Numbering never goes back below what this process has seen, whatever the store says later.
            return Replay(gap=after is not None, latest=self.log.floor(self.workspace_id))

    async def still_allowed(self) -> bool:
        session = self.scope.get("session")
        # The session ended (expired, flushed elsewhere): it no longer authenticates this socket.
        if session is not None and session.session_key and not await database_sync_to_async(session.exists)(
            session.session_key
        ):
            return False
        return await database_sync_to_async(_principal)(self.user_id, self.slug) is not None

    async def flowdeck_resync(self, message: dict[str, Any]) -> None:
        # Events committed while Redis was away were never numbered nor sent: reload (covers the
        # subscribed runs too; one message, so the page refetches once).
        await self.push({"type": "gap", "message": GAP_MESSAGE})

    async def flowdeck_control(self, message: dict[str, Any]) -> None:
        workspace = message.get("workspace_id")
        if workspace is None or workspace == getattr(self, "workspace_id", None):
            await super().flowdeck_control(message)

    async def flowdeck_membership(self, message: dict[str, Any]) -> None:
        # This person's role here changed: filter with the new role from now on and tell the page,
        # which re-reads what it may do. Sent to the person's group, so other workspaces drop it.
        if message.get("workspace_id") != getattr(self, "workspace_id", None):
            return
        principal = await database_sync_to_async(_principal)(self.user_id, self.slug)
        if principal is None:
            await self.shut(CLOSE_FORBIDDEN)
            return
        self.principal = principal
        self.hidden = await database_sync_to_async(_hidden_projects)(principal)
        await self.push({"type": "membership", "workspace": self.slug, "role": principal.role})

    # --- client actions --------------------------------------------------------------------------

    async def act(self, action: str, message: dict[str, Any]) -> None:
        if action == "subscribe_run":
            await self._subscribe(message)
        elif action == "unsubscribe_run":
            run = _as_uuid(message.get("flow_run_id"))
            if run is not None and str(run) in self.runs:
                self.runs.pop(str(run))
                self.logs.forget(str(run))
                await self.leave(flow_run_group(run))
            await self.push({"type": "unsubscribed", "flow_run_id": None if run is None else str(run)})
        else:
            await super().act(action, message)

    async def _subscribe(self, message: dict[str, Any]) -> None:
        run = _as_uuid(message.get("flow_run_id"))
        after = message.get("after")
        if run is None or (after is not None and _as_seq(after) is None):
            await self.push({"type": "error", "code": "bad_request",
                             "message": "subscribe_run needs a flow_run_id (UUID) and an optional integer 'after'."})
            return
        # Membership re-checked on every subscribe: a removed member learns nothing more.
        principal = await database_sync_to_async(_principal)(self.user_id, self.slug)
        if principal is None:
            await self.shut(CLOSE_FORBIDDEN)
            return
        self.principal = principal
        if not await database_sync_to_async(_run_readable)(principal, run):
            await self.push({"type": "error", "code": "not_found", "flow_run_id": str(run),
                             "message": "No such flow run in this workspace."})
            return
        key = str(run)
        if key not in self.runs and len(self.runs) >= MAX_RUN_SUBSCRIPTIONS:
            await self.push({"type": "error", "code": "too_many_subscriptions",
                             "message": f"At most {MAX_RUN_SUBSCRIPTIONS} runs per socket; unsubscribe first."})
            return
        await self.join(flow_run_group(run))
        replay = await self._replay(_as_seq(after) if after is not None else None, key)
        self.runs[key] = replay.latest
        for item in replay.events:
            await self._deliver_run_event(key, item["seq"], item["event"])
        if replay.gap:
            await self.push({"type": "gap", "flow_run_id": key, "message": GAP_MESSAGE})
        await self.push({"type": "subscribed", "flow_run_id": key, "seq": replay.latest})

    # --- events from the channel layer -----------------------------------------------------------

    async def flowdeck_event(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        seq, event, run = int(message.get("seq") or 0), message.get("event") or {}, message.get("flow_run_id")
        if run is None:
            if seq and seq <= self.boundary:
                return  # already replayed
            if await self._visible(event):
                await self._forward(message, seq, event)
            return
        boundary = self.runs.get(run)
        if boundary is None or (seq and seq <= boundary):
            return  # not (or no longer) subscribed, or already replayed
        await self._deliver_run_event(run, seq, event, message)

    async def _forward(self, message: dict[str, Any] | None, seq: int, event: dict[str, Any]) -> None:
        text = None if message is None else message.get("text")
        if isinstance(text, str):
            await self.push_text(text)  # encoded once by the hub for every socket
        else:
            await self.push({"type": "event", "seq": seq, "event": event})

    async def _deliver_run_event(self, run: str, seq: int, event: dict[str, Any],
                                 message: dict[str, Any] | None = None) -> None:
        if event.get("type") != "logs.appended":
            await self._forward(message, seq, event)
            return
        delay = self.logs.offer(run, seq, event)
        if delay is None:
            return
        if delay <= 0:
            await self._flush_logs(run)
        else:
            self.spawn(self._flush_logs_later(run, delay))

    async def _flush_logs_later(self, run: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._flush_logs(run)

    async def _flush_logs(self, run: str) -> None:
        if run not in self.runs:
            return
        for payload in self.logs.flush(run):
            await self.push(payload)

    async def _visible(self, event: dict[str, Any]) -> bool:
        """Leave out events about restricted projects this member cannot read."""
        if str(event.get("type", "")).startswith("project."):
            # Restriction or sharing may have changed: recompute what is hidden.
            self.hidden = await database_sync_to_async(_hidden_projects)(self.principal)
            self.project_cache.clear()
        if not self.hidden:
            return True
        subject = _subject(event)
        if subject is None:
            return True
        kind, ident = subject
        if kind == "project":
            return ident not in self.hidden
        if (kind, ident) not in self.project_cache:
            if len(self.project_cache) >= _VISIBILITY_CACHE:
                self.project_cache.clear()
            project_of = database_sync_to_async(_project_of)
            self.project_cache[(kind, ident)] = await project_of(self.workspace_id, kind, ident)
        project = self.project_cache[(kind, ident)]
        # Unknown (deleted before we could look): only said when nothing is hidden, i.e. not here.
        return project is not None and project not in self.hidden


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def _as_seq(value: Any) -> int | None:
    try:
        seq = int(value)
    except (TypeError, ValueError):
        return None
    return seq if seq >= 0 else None
