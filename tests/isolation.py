"""The reusable cross-workspace helper (C1).

Every REST route under ``/api/v1/workspaces/{slug}/`` is found through the URL resolver, so a new
route is covered without anyone remembering. For each route and each method its view declares, a
member of workspace B calls it on workspace A (A's slug, A's object ids) and must get 404: not 403,
not data. Object ids come from ``ID_PROVIDERS``: one function per URL keyword that returns the id of
an object belonging to workspace A. A route with a keyword that has no provider fails the meta-test,
so later issues add their provider here alongside their routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from core.tenancy import rls_bypass

IdProvider = Callable[[Any], str]
ID_PROVIDERS: dict[str, IdProvider] = {}


def id_provider(kwarg: str) -> Callable[[IdProvider], IdProvider]:
    def register(fn: IdProvider) -> IdProvider:
        ID_PROVIDERS[kwarg] = fn
        return fn

    return register


@dataclass(frozen=True)
class Route:
    template: str  # e.g. "api/v1/workspaces/<slug:workspace_slug>/members/<uuid:member_id>/"
    view_class: type
    kwargs: tuple[str, ...]

    @property
    def methods(self) -> list[str]:
        scope_map = getattr(self.view_class, "scope_map", {})
        return sorted(m for m in scope_map if m not in ("OPTIONS", "HEAD"))

    def url_for(self, world: Any) -> str:
        values = {"workspace_slug": world.workspace.slug}
        with rls_bypass():
            for name in self.kwargs:
                if name != "workspace_slug":
                    values[name] = ID_PROVIDERS[name](world)
        path = self.template
        for name, value in values.items():
            for converter in ("slug", "uuid", "str", "int", "path"):
                path = path.replace(f"<{converter}:{name}>", str(value))
        return "/" + path


def _walk(patterns: list, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def workspace_routes() -> list[Route]:
    import re

    routes = []
    for template, pattern in _walk(get_resolver().url_patterns):
        if "<slug:workspace_slug>" not in template:
            continue
        view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
        kwargs = tuple(re.findall(r"<\w+:(\w+)>", template))
        routes.append(Route(template=template, view_class=view_class, kwargs=kwargs))
    return routes


# --- providers for accounts routes (later apps register theirs in their own test helpers) --------


@id_provider("member_id")
def _member(world: Any) -> str:
    from accounts.models import Membership

    return str(Membership.objects.filter(workspace=world.workspace, role="viewer").values_list("id", flat=True)[0])


@id_provider("invitation_id")
def _invitation(world: Any) -> str:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Invitation

    invitation = Invitation.all_objects.create(
        workspace=world.workspace, email="invitee@example.com", role="viewer",
        token_hash=f"h{timezone.now().timestamp()}", expires_at=timezone.now() + timedelta(days=7),
    )
    return str(invitation.pk)


@id_provider("account_id")
def _service_account(world: Any) -> str:
    return str(world.agent.pk)


@id_provider("key_id")
def _key(world: Any) -> str:
    from accounts.models import ApiKey

    keys = ApiKey.all_objects.filter(workspace=world.workspace, user=world.users["viewer"])
    return str(keys.values_list("id", flat=True)[0])


# --- providers for orchestration routes -----------------------------------------------------------


def _iso_flow(world: Any) -> Any:
    """One flow (with a version, a schedule and a run) per world, reused by every orchestration
    provider so that nested ids (flow + version, flow + schedule) belong together."""
    from orchestration.models import Flow

    flow = Flow.all_objects.filter(workspace=world.workspace, name="isolation-flow").first()
    if flow is not None:
        return flow
    from orchestration.models import Schedule
    from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory

    project = ProjectFactory(workspace=world.workspace, name="isolation-project")
    version = FlowVersionFactory(flow__project=project, flow__workspace=world.workspace, flow__name="isolation-flow")
    Schedule.all_objects.create(workspace=world.workspace, flow=version.flow, kind="interval", interval_seconds=60)
    FlowRunFactory(flow_version=version)
    return version.flow


@id_provider("project_id")
def _project(world: Any) -> str:
    return str(_iso_flow(world).project_id)


@id_provider("flow_id")
def _flow(world: Any) -> str:
    return str(_iso_flow(world).pk)


@id_provider("version_id")
def _flow_version(world: Any) -> str:
    return str(_iso_flow(world).versions.values_list("id", flat=True)[0])


@id_provider("schedule_id")
def _schedule(world: Any) -> str:
    return str(_iso_flow(world).schedules.values_list("id", flat=True)[0])


@id_provider("flow_run_id")
def _flow_run(world: Any) -> str:
    return str(_iso_flow(world).runs.values_list("id", flat=True)[0])


@id_provider("agent_id")
def _agent(world: Any) -> str:
    from orchestration.models import Agent
    from tests.orchestration.factories import AgentFactory

    agent = Agent.all_objects.filter(workspace=world.workspace, name="isolation-agent").first()
    if agent is None:
        agent = AgentFactory(workspace=world.workspace, name="isolation-agent", service_account=world.agent)
    return str(agent.pk)


@id_provider("bulk_action_id")
def _bulk_action(world: Any) -> str:
    from accounts.models import Role
    from orchestration.models import BulkAction

    bulk = BulkAction.all_objects.filter(workspace=world.workspace).first()
    if bulk is None:
        bulk = BulkAction.all_objects.create(workspace=world.workspace, action="cancel", actor_role=Role.ADMIN,
                                             status=BulkAction.Status.FINISHED)
    return str(bulk.pk)


@id_provider("policy_id")
def _sla_policy(world: Any) -> str:
    from orchestration.alerts.models import SlaPolicy

    policy = SlaPolicy.all_objects.filter(workspace=world.workspace, name="isolation-policy").first()
    if policy is None:
        policy = SlaPolicy.all_objects.create(workspace=world.workspace, name="isolation-policy", kind="start",
                                              threshold_seconds=300, flow=_iso_flow(world))
    return str(policy.pk)


@id_provider("incident_id")
def _incident(world: Any) -> str:
    from orchestration.alerts.models import Incident

    incident = Incident.all_objects.filter(workspace=world.workspace, subject_key="isolation").first()
    if incident is None:
        incident = Incident.all_objects.create(
            workspace=world.workspace, policy_id=_sla_policy(world), policy_name="isolation-policy", kind="start",
            subject_key="isolation", flow=_iso_flow(world), title="isolation incident",
        )
    return str(incident.pk)


@id_provider("channel_id")
def _channel(world: Any) -> str:
    from orchestration.alerts.models import NotificationChannel

    channel = NotificationChannel.all_objects.filter(workspace=world.workspace, name="isolation-channel").first()
    if channel is None:
        channel = NotificationChannel.all_objects.create(workspace=world.workspace, name="isolation-channel",
                                                         kind="email", config={"addresses": ["ops@example.com"]})
    return str(channel.pk)
