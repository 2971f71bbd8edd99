"""SLA policy writes: create, change, pause/resume and delete, and the policies a flow declares at
registration. Each write is one transaction that authorizes ``sla:manage``, validates every field
(:func:`validate_policy`, one answer listing every problem), writes, and leaves an audit row
(``sla_policy.created|updated|paused|resumed|deleted``, the data being the settings or the
``{field: [old, new]}`` diff).

The rules, per field (the messages say the same):

- ``name``: 1–200 characters, unique in the workspace (a clash is 409 ``name_taken``).
- ``kind``: start, duration, failure, freshness, agent or prestart. Each kind uses some of the
  kind-specific fields: ``threshold_seconds`` (start, duration, freshness, agent: required, one
  minute to 30 days), ``consecutive_failures`` (failure: 1–100), ``predictive`` and
  ``history_size`` (duration: 5–1000 runs), ``agent_labels`` (agent: required, 1–50 labels). A
  kind-specific field another kind uses is refused when given with a value; otherwise it goes back
  to its default, so switching kinds never leaves stale settings behind.
- scope: ``project_id`` or ``flow_id`` (at most one; none means the whole workspace). The project
  or flow must be one the actor sees in its workspace; any other id, another workspace's included,
  is "not found" on that field. Setting one clears the other unless both are given.
- ``labels``: runs must carry all of them (at most 50 of 1–100 characters). Agent policies watch
  agents, not runs, so they take ``agent_labels`` instead.
- ``action`` on a breach: ``cancel_run`` and ``fail_run`` act on the one run that is late or
  overrunning, so only start and duration policies take them (a failed run is already over; a
  freshness, agent or prestart breach names no run to act on). ``pause_schedules`` pauses the
  schedules of the flow an incident is about: any kind but agent (whose cause is agents, not a
  flow), and only with a project or flow scope, so that one policy cannot stop a whole workspace.
- ``severity``: critical or warning. ``channel_ids``: at most 20 channels of the workspace.

Registered policies (:func:`sla_policies_register`) are stored as ``"<flow name>: <declared
name>"`` with ``from_registration`` set; each registration makes the flow's registered policies
match what it declares. People may edit them (pause, channels, thresholds…), but not their name or
scope, which the code owns; the next registration sets the declared fields again.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.authz import NotFound, Principal, authorize
from accounts.services.audit import audit_record
from core.errors import Conflict, InvalidInput
from core.tenancy import workspace_scope
from orchestration.engine import db_now
from orchestration.models import Flow
from orchestration.selectors.flows import access_flow
from orchestration.selectors.projects import access_project

from .models import BreachAction, Incident, NotificationChannel, PolicyChannel, PolicyKind, SlaPolicy

MAX_NAME = 200
MAX_DECLARED_NAME = 100
MAX_DESCRIPTION = 2000
MIN_THRESHOLD = 60
MAX_THRESHOLD = 30 * 24 * 3600
MAX_LABELS = 50
MAX_LABEL = 100
MAX_CHANNELS = 20
MAX_POLICIES_PER_WORKSPACE = 500
MAX_DECLARED_PER_FLOW = 50

FIELDS = (
    "name", "description", "kind", "project_id", "flow_id", "labels", "threshold_seconds", "consecutive_failures",
    "predictive", "history_size", "agent_labels", "action", "severity", "is_paused", "channel_ids",
)
DEFAULTS: dict[str, Any] = {
    "description": "", "project_id": None, "flow_id": None, "labels": [], "threshold_seconds": None,
    "consecutive_failures": 1, "predictive": False, "history_size": 20, "agent_labels": [],
    "action": BreachAction.NONE.value, "severity": "critical", "is_paused": False, "channel_ids": [],
}
# The kind-specific fields each kind uses.
KIND_FIELDS: dict[str, frozenset[str]] = {
    PolicyKind.START: frozenset({"threshold_seconds"}),
    PolicyKind.DURATION: frozenset({"threshold_seconds", "predictive", "history_size"}),
    PolicyKind.FAILURE: frozenset({"consecutive_failures"}),
    PolicyKind.FRESHNESS: frozenset({"threshold_seconds"}),
    PolicyKind.AGENT: frozenset({"threshold_seconds", "agent_labels"}),
    PolicyKind.PRESTART: frozenset(),
}
KIND_SPECIFIC = frozenset().union(*KIND_FIELDS.values())
RUN_ACTION_KINDS = frozenset({PolicyKind.START, PolicyKind.DURATION})
# What a declaration in registered metadata may say (``channels`` are channel names).
DECLARED_KEYS = frozenset({
    "name", "description", "kind", "threshold_seconds", "consecutive_failures", "predictive", "history_size",
    "agent_labels", "labels", "action", "severity", "channels",
})
# What people may not change on a registered policy: the code owns it.
DECLARED_IDENTITY = frozenset({"name", "project_id", "flow_id"})


# --- validation ---------------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.details: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.details.setdefault(field, []).append(message)

    def raise_if_any(self) -> None:
        if self.details:
            field, messages = next(iter(self.details.items()))
            raise InvalidInput(f"The SLA policy is invalid. {field}: {messages[0]}", code="invalid_policy",
                               details=self.details)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(errors: _Errors, field: str, value: Any, limit: int, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        errors.add(field, "Must be a string.")
        return ""
    value = value.strip()
    if "\x00" in value:
        errors.add(field, "Cannot contain NUL characters.")
    elif required and not value:
        errors.add(field, "Required.")
    elif len(value) > limit:
        errors.add(field, f"At most {limit} characters.")
    return value


def _labels(errors: _Errors, field: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.add(field, "Must be a list of strings.")
        return []
    if len(value) > MAX_LABELS:
        errors.add(field, f"At most {MAX_LABELS} labels.")
    elif any(not v.strip() or len(v) > MAX_LABEL or "\x00" in v for v in value):
        errors.add(field, f"Each label is 1 to {MAX_LABEL} characters.")
    return list(dict.fromkeys(v.strip() for v in value))


def _bounded(errors: _Errors, field: str, value: Any, low: int, high: int, unit: str) -> Any:
    if not _is_int(value):
        errors.add(field, f"Must be a whole number of {unit}.")
    elif value < low:
        errors.add(field, f"At least {low} {unit}.")
    elif value > high:
        errors.add(field, f"At most {high} {unit}.")
    return value


def _scope(actor: Principal, errors: _Errors, values: dict[str, Any]) -> None:
    """The project or flow ids, checked to be the actor's to see (as UUIDs)."""
    if values["project_id"] is not None and values["flow_id"] is not None:
        errors.add("flow_id", "Give a project or a flow, not both.")
        return
    for field, noun, access in (("project_id", "project", access_project), ("flow_id", "flow", access_flow)):
        if values[field] is None:
            continue
        try:
            values[field] = access(actor, values[field]).pk
        except NotFound:
            # Missing, malformed, another workspace's or hidden: the same words, so nothing leaks.
            errors.add(field, f"No {noun} with this id in this workspace.")


def _channels(actor: Principal, errors: _Errors, value: Any) -> list[uuid.UUID]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        errors.add("channel_ids", "Must be a list of channel ids.")
        return []
    if len(value) > MAX_CHANNELS:
        errors.add("channel_ids", f"At most {MAX_CHANNELS} channels.")
        return []
    ids: list[uuid.UUID] = []
    unknown: list[str] = []
    for raw in value:
        try:
            ids.append(raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)))
        except (ValueError, AttributeError, TypeError):
            unknown.append(str(raw)[:40])
    ids = list(dict.fromkeys(ids))
    found = set(NotificationChannel.objects.for_workspace(actor.workspace).filter(pk__in=ids)
                .values_list("pk", flat=True))
    unknown += [str(pk) for pk in ids if pk not in found]
    if unknown:
        errors.add("channel_ids", f"No channel with id {', '.join(unknown)} in this workspace.")
    return [pk for pk in ids if pk in found]


def _current(policy: SlaPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {"name": "", "kind": "", **copy.deepcopy(DEFAULTS)}
    values = {field: getattr(policy, field) for field in FIELDS if field != "channel_ids"}
    values["channel_ids"] = list(
        PolicyChannel.objects.for_workspace(policy.workspace_id).filter(policy=policy).order_by("id")
        .values_list("channel_id", flat=True)
    )
    return values


def validate_policy(actor: Principal, fields: dict[str, Any], *, policy: SlaPolicy | None = None) -> dict[str, Any]:
    """Every field of the policy that ``fields`` creates (or makes of ``policy``), cleaned: the scope
    ids as UUIDs the actor may see, labels de-duplicated, the fields the kind does not use back at
    their defaults. InvalidInput (``invalid_policy``) lists every problem by field; see the module's
    docstring for the rules."""
    errors = _Errors()
    for key in sorted(set(fields) - set(FIELDS)):
        errors.add(key, "Unknown field.")
    given = {k: v for k, v in fields.items() if k in FIELDS}
    values = _current(policy)
    # Choosing one scope drops the other, unless both are given (which is an error below).
    if given.get("flow_id") is not None and "project_id" not in given:
        values["project_id"] = None
    if given.get("project_id") is not None and "flow_id" not in given:
        values["flow_id"] = None
    values.update(given)
    for key in ("labels", "agent_labels", "channel_ids"):
        if values[key] is None:
            values[key] = []
    values["name"] = _text(errors, "name", values["name"], MAX_NAME, required=True)
    values["description"] = _text(errors, "description", values["description"], MAX_DESCRIPTION, required=False)
    kind = values["kind"]
    if kind not in PolicyKind.values:
        errors.add("kind", f"Must be one of {', '.join(PolicyKind.values)}.")
        kind = None
    _scope(actor, errors, values)
    values["labels"] = _labels(errors, "labels", values["labels"])
    values["channel_ids"] = _channels(actor, errors, values["channel_ids"])
    if kind is not None:
        used = KIND_FIELDS[kind]
        for key in sorted(KIND_SPECIFIC - used):
            if key in given and given[key] not in (None, DEFAULTS[key]):
                errors.add(key, f"Not used by {kind} policies; leave it out.")
            values[key] = copy.deepcopy(DEFAULTS[key])
        if "threshold_seconds" in used:
            if values["threshold_seconds"] is None:
                errors.add("threshold_seconds", f"Required for {kind} policies: the X of the promise, in seconds "
                                                f"({MIN_THRESHOLD} to {MAX_THRESHOLD}).")
            else:
                _bounded(errors, "threshold_seconds", values["threshold_seconds"], MIN_THRESHOLD, MAX_THRESHOLD,
                         "seconds (one minute to 30 days)")
        if "consecutive_failures" in used:
            _bounded(errors, "consecutive_failures", values["consecutive_failures"], 1, 100, "runs")
        if "predictive" in used and not isinstance(values["predictive"], bool):
            errors.add("predictive", "Must be true or false.")
        if "history_size" in used:
            _bounded(errors, "history_size", values["history_size"], 5, 1000, "runs")
        if "agent_labels" in used:
            values["agent_labels"] = _labels(errors, "agent_labels", values["agent_labels"])
            if not values["agent_labels"] and "agent_labels" not in errors.details:
                errors.add("agent_labels", "Required for agent policies: the labels some healthy agent must cover.")
        if kind == PolicyKind.AGENT and values["labels"]:
            errors.add("labels", "Agent policies watch agents, not runs: put the labels in agent_labels.")
    action = values["action"]
    if action not in BreachAction.values:
        errors.add("action", f"Must be one of {', '.join(BreachAction.values)}.")
    elif kind is not None and action in (BreachAction.CANCEL_RUN, BreachAction.FAIL_RUN) \
            and kind not in RUN_ACTION_KINDS:
        errors.add("action", f"{action} acts on the late or overrunning run: only start and duration policies "
                             "can use it.")
    elif action == BreachAction.PAUSE_SCHEDULES:
        if kind == PolicyKind.AGENT:
            errors.add("action", "Agent policies are about agents, not a flow: they cannot pause schedules.")
        elif values["project_id"] is None and values["flow_id"] is None and "flow_id" not in errors.details \
                and "project_id" not in errors.details:
            errors.add("action", "pause_schedules needs a project or flow scope (a workspace-wide policy may "
                                 "not stop every schedule).")
    if values["severity"] not in ("critical", "warning"):
        errors.add("severity", "Must be critical or warning.")
    if not isinstance(values["is_paused"], bool):
        errors.add("is_paused", "Must be true or false.")
    errors.raise_if_any()
    return values


# --- the audit log ------------------------------------------------------------------------------


def _loggable(key: str, value: Any) -> Any:
    if key == "channel_ids":
        return sorted(str(v) for v in value)
    return str(value) if isinstance(value, uuid.UUID) else value


def _settings(values: dict[str, Any], from_registration: bool) -> dict[str, Any]:
    """What the policy was set to, to read in the log: the name, the kind and every field that is
    not at its default."""
    data = {"name": values["name"], "kind": values["kind"]}
    data.update({k: _loggable(k, values[k]) for k in FIELDS if k in DEFAULTS and values[k] != DEFAULTS[k]})
    if from_registration:
        data["from_registration"] = True
    return data


def _audit(actor: Principal, action: str, policy: SlaPolicy, data: dict[str, Any]) -> None:
    audit_record(workspace=actor.workspace, action=action, target=policy, actor=actor, data=data,
                 target_label=policy.name)


# --- writes -------------------------------------------------------------------------------------


def _name_taken(name: str) -> Conflict:
    return Conflict(f"An SLA policy named '{name}' already exists in this workspace; choose another name.",
                    code="name_taken", details={"name": ["Already used by another policy."]})


def _check_name_free(actor: Principal, name: str, policy: SlaPolicy | None = None) -> None:
    clash = SlaPolicy.objects.for_workspace(actor.workspace).filter(name=name)
    if policy is not None:
        clash = clash.exclude(pk=policy.pk)
    if clash.exists():
        raise _name_taken(name)


def _set_channels(actor: Principal, policy: SlaPolicy, channel_ids: list[uuid.UUID]) -> None:
    links = PolicyChannel.objects.for_workspace(actor.workspace).filter(policy=policy)
    links.exclude(channel_id__in=channel_ids).delete()
    have = set(links.values_list("channel_id", flat=True))
    PolicyChannel.objects.unscoped().bulk_create([
        PolicyChannel(workspace=actor.workspace, policy=policy, channel_id=pk) for pk in channel_ids if pk not in have
    ])


def _save(policy: SlaPolicy, update_fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            policy.save(update_fields=update_fields)
    except IntegrityError:
        # A concurrent write took the name between the check and the save.
        raise _name_taken(policy.name) from None


def _create(actor: Principal, values: dict[str, Any], *, from_registration: bool = False) -> SlaPolicy:
    _check_name_free(actor, values["name"])
    if SlaPolicy.objects.for_workspace(actor.workspace).count() >= MAX_POLICIES_PER_WORKSPACE:
        raise InvalidInput(f"A workspace has at most {MAX_POLICIES_PER_WORKSPACE} SLA policies; delete unused ones.",
                           code="too_many_policies")
    row = {k: v for k, v in values.items() if k != "channel_ids"}
    policy = SlaPolicy(workspace=actor.workspace, from_registration=from_registration,
                       created_by=actor.label[:254], **row)
    _save(policy)
    _set_channels(actor, policy, values["channel_ids"])
    _audit(actor, "sla_policy.created", policy, _settings(values, from_registration))
    return policy


def _update(actor: Principal, policy: SlaPolicy, values: dict[str, Any]) -> SlaPolicy:
    before = _current(policy)
    changed = [k for k in FIELDS if _loggable(k, before[k]) != _loggable(k, values[k])]
    if not changed:
        return policy
    if "name" in changed:
        _check_name_free(actor, values["name"], policy)
    columns = [k for k in changed if k != "channel_ids"]
    for key in columns:
        setattr(policy, key, values[key])
    policy.updated_at = timezone.now()
    _save(policy, [*columns, "updated_at"])
    if "channel_ids" in changed:
        _set_channels(actor, policy, values["channel_ids"])
    if changed == ["is_paused"]:
        # Pausing and resuming are what people look for in the log, so they get their own names.
        _audit(actor, "sla_policy.paused" if policy.is_paused else "sla_policy.resumed", policy, {})
    else:
        _audit(actor, "sla_policy.updated", policy,
               {k: [_loggable(k, before[k]), _loggable(k, values[k])] for k in changed})
    return policy


@transaction.atomic
def sla_policy_create(actor: Principal, **fields: Any) -> SlaPolicy:
    """A new SLA policy in the actor's workspace (see the module's docstring for the fields)."""
    authorize(actor, "sla:manage", actor.workspace)
    with workspace_scope([actor.workspace.pk]):
        return _create(actor, validate_policy(actor, fields))


def _locked(actor: Principal, policy: SlaPolicy) -> SlaPolicy:
    found = SlaPolicy.objects.for_workspace(actor.workspace).select_for_update().filter(pk=policy.pk).first()
    if found is None:
        raise NotFound()
    return found


@transaction.atomic
def sla_policy_update(actor: Principal, policy: SlaPolicy, **changes: Any) -> SlaPolicy:
    """Change some of a policy's fields; the audit row lists each changed one as ``[old, new]``
    (``sla_policy.paused`` / ``resumed`` when only ``is_paused`` changed)."""
    authorize(actor, "sla:manage", actor.workspace)
    with workspace_scope([actor.workspace.pk]):
        policy = _locked(actor, policy)
        if policy.from_registration:
            fixed = sorted(k for k in DECLARED_IDENTITY & set(changes)
                           if _loggable(k, changes[k]) != _loggable(k, getattr(policy, k)))
            if fixed:
                raise InvalidInput(
                    f"This policy is declared in code next to its flow: change its {', '.join(fixed)} there and "
                    "register again.", code="declared_in_code", details={k: ["Declared in code."] for k in fixed},
                )
        return _update(actor, policy, validate_policy(actor, changes, policy=policy))


def sla_policy_set_paused(actor: Principal, policy: SlaPolicy, paused: bool) -> SlaPolicy:
    """Pause (the evaluator skips it) or resume a policy."""
    return sla_policy_update(actor, policy, is_paused=paused)


def _resolve_open_incidents(actor: Principal, policy: SlaPolicy) -> int:
    """Resolve the policy's open and acknowledged incidents before the policy goes (they are kept,
    with its name): each gets its timeline row, live event and "resolved" notification through the
    channels the policy still links to, and names the person who deleted the policy."""
    from .incidents import resolve_cleared

    incidents = list(Incident.objects.for_workspace(actor.workspace).filter(policy=policy)
                     .exclude(status=Incident.Status.RESOLVED).order_by("opened_at", "id"))
    now = db_now()
    resolved = [incident.pk for incident in incidents
                if resolve_cleared(incident, reason=f"The policy '{policy.name}' was deleted by {actor.label}.",
                                   now=now)]
    Incident.objects.for_workspace(actor.workspace).filter(pk__in=resolved).update(resolved_by=actor.label[:254])
    return len(resolved)


def _delete(actor: Principal, policy: SlaPolicy) -> None:
    resolved = _resolve_open_incidents(actor, policy)
    data = _settings(_current(policy), policy.from_registration)
    if resolved:
        data["incidents_resolved"] = resolved
    _audit(actor, "sla_policy.deleted", policy, data)
    SlaPolicy.objects.for_workspace(actor.workspace).filter(pk=policy.pk).delete()


@transaction.atomic
def sla_policy_delete(actor: Principal, policy: SlaPolicy) -> None:
    """Delete a policy; its open incidents are resolved ("policy deleted") and kept."""
    authorize(actor, "sla:manage", actor.workspace)
    with workspace_scope([actor.workspace.pk]):
        _delete(actor, _locked(actor, policy))


def sla_policies_delete_with_scope(actor: Principal, *, flow: Flow | None = None, project: Any = None) -> int:
    """Delete the policies scoped to ``flow`` or to ``project`` (and its flows) before that scope is
    deleted, as :func:`sla_policy_delete` does (open incidents resolved, audited): the database's
    cascade would drop them silently and leave their open incidents open with no policy to resolve
    them. The caller has authorized the scope's deletion, which is what allows this."""
    doomed = SlaPolicy.objects.for_workspace(actor.workspace)
    if flow is not None:
        doomed = doomed.filter(flow=flow)
    elif project is not None:
        # The flows as a subquery: a join would put the policy rows on the nullable side of an outer join,
        # which FOR UPDATE refuses.
        doomed = doomed.filter(Q(project=project) | Q(flow__in=Flow.objects.for_workspace(actor.workspace)
                                                       .filter(project=project).values("pk")))
    else:
        return 0
    with workspace_scope([actor.workspace.pk]):
        found = list(doomed.select_for_update().order_by("name"))
        for policy in found:
            _delete(actor, policy)
    return len(found)


# --- registration -------------------------------------------------------------------------------


def registered_name(flow: Flow, declared: str) -> str:
    """The stored name of a policy ``flow`` declares as ``declared``."""
    return f"{flow.name}: {declared}"


def _declared_fields(actor: Principal, flow: Flow, item: dict[str, Any], path: str,
                     errors: dict[str, list[str]]) -> dict[str, Any] | None:
    """A declaration as the fields of :func:`validate_policy` (None when its shape is wrong: the
    problems are in ``errors``). Undeclared settings go back to their defaults; undeclared channels
    and the description are left as people set them."""
    unknown = sorted(set(item) - DECLARED_KEYS)
    for key in unknown:
        errors.setdefault(f"{path}.{key}", []).append("Unknown field.")
    fields: dict[str, Any] = {k: DEFAULTS[k] for k in KIND_SPECIFIC | {"labels", "action", "severity"}}
    fields.update({k: v for k, v in item.items() if k in DECLARED_KEYS and k not in ("name", "channels")})
    fields["flow_id"] = flow.pk
    fields["project_id"] = None
    if "channels" in item:
        names = item["channels"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) > MAX_CHANNELS:
            errors.setdefault(f"{path}.channels", []).append(f"A list of at most {MAX_CHANNELS} channel names.")
            return None
        found = dict(NotificationChannel.objects.for_workspace(actor.workspace).filter(name__in=names)
                     .values_list("name", "pk"))
        missing = [n for n in dict.fromkeys(names) if n not in found]
        if missing:
            errors.setdefault(f"{path}.channels", []).append(
                f"No notification channel named {', '.join(repr(n) for n in missing)} in this workspace.")
            return None
        fields["channel_ids"] = [found[n] for n in dict.fromkeys(names)]
    return None if unknown else fields


@transaction.atomic
def sla_policies_register(actor: Principal, flow: Flow, declared: Any) -> list[SlaPolicy]:
    """Make ``flow``'s registered policies match ``declared`` (the ``sla_policies`` of registered
    metadata: a list of ``{"name", "kind", …, "channels": [channel names]}``): create the new ones,
    update the changed ones by (flow, name), delete those no longer declared (their open incidents
    resolved). ``None`` (the key left out) leaves them alone. Every declaration is checked before
    anything is written; a bad one raises InvalidInput naming it and the field
    (``sla_policies[1].threshold_seconds``), and the caller's transaction writes nothing."""
    if declared is None:
        return []
    if not isinstance(declared, list):
        raise InvalidInput("sla_policies must be a list of policies.", code="invalid_policy",
                           details={"sla_policies": ["Must be a list."]})
    with workspace_scope([actor.workspace.pk]):
        return _register(actor, flow, declared)


def _register(actor: Principal, flow: Flow, declared: list[Any]) -> list[SlaPolicy]:
    existing = {p.name: p for p in SlaPolicy.objects.for_workspace(actor.workspace)
                .filter(flow=flow, from_registration=True).select_for_update()}
    if not declared and not existing:
        return []
    authorize(actor, "sla:manage", actor.workspace)
    if len(declared) > MAX_DECLARED_PER_FLOW:
        raise InvalidInput(f"A flow declares at most {MAX_DECLARED_PER_FLOW} SLA policies.", code="invalid_policy",
                           details={"sla_policies": ["Too many."]})
    errors: dict[str, list[str]] = {}
    planned: list[tuple[SlaPolicy | None, dict[str, Any]]] = []
    seen: set[str] = set()
    names: dict[str, str] = {}  # path -> declared name, to name the policy in the message
    for index, item in enumerate(declared):
        path = f"sla_policies[{index}]"
        if not isinstance(item, dict):
            errors.setdefault(path, []).append("Must be an object.")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_DECLARED_NAME:
            errors.setdefault(f"{path}.name", []).append(f"Required: 1 to {MAX_DECLARED_NAME} characters.")
            continue
        name = name.strip()
        if name in seen:
            errors.setdefault(f"{path}.name", []).append(f"Declared twice: '{name}'.")
            continue
        seen.add(name)
        names[path] = name
        fields = _declared_fields(actor, flow, item, path, errors)
        if fields is None:
            continue
        fields["name"] = registered_name(flow, name)
        policy = existing.get(fields["name"])
        try:
            values = validate_policy(actor, fields, policy=policy)
            if policy is None:
                _check_name_free(actor, values["name"])
        except (InvalidInput, Conflict) as exc:
            for field, messages in exc.details.items():
                errors.setdefault(f"{path}.{field}", []).extend(messages)
            continue
        planned.append((policy, values))
    if errors:
        where, messages = next(iter(errors.items()))
        item_path = where.split("].", 1)[0] + "]"
        named = f" '{names[item_path]}'" if item_path in names else ""
        raise InvalidInput(f"The SLA policy{named} declared for flow '{flow.name}' is invalid: {where}: {messages[0]}",
                           code="invalid_policy", details=errors)
    kept = {values["name"] for _policy, values in planned}
    for name, policy in existing.items():
        if name not in kept:
            _delete(actor, policy)
    result = []
    for policy, values in planned:
        if policy is None:
            result.append(_create(actor, values, from_registration=True))
        else:
            result.append(_update(actor, policy, values))
    return result
