"""Flows and their versions. ``flow_register`` is the SDK's call: it validates the metadata (the DAG,
parameters, storage reference, run config, size limits), hashes it canonically, and returns the
existing version when nothing changed, so re-registering unchanged code creates nothing.

Only metadata is stored, never code or data (A1); ``run_config.env`` holds variable *names* only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max, ProtectedError

from accounts.authz import NotFound, Principal, authorize
from accounts.services.audit import audit_record
from core.errors import Conflict, InvalidInput
from orchestration import events
from orchestration.models import Catchup, Flow, FlowRun, FlowVersion, Project
from orchestration.services.parameters import PARAMETER_TYPES, value_matches_type

MAX_TASKS = 2_000
MAX_EDGES = 10_000
MAX_METADATA_BYTES = 1024 * 1024
MAX_PARAMETERS = 200
MAX_LABELS = 100
MAX_TAGS = 50
MAX_KEY = 200
MAX_NAME = 200
MAX_STRING = 1_000
STORAGE_TYPES = ("module", "file", "git", "image")
AGENT_TYPES = ("process", "docker", "kubernetes")
METADATA_FIELDS = ("tasks", "edges", "parameters", "schedule", "storage", "labels", "run_config", "sla_policies")
# Prefect 1's keys, which the SDK's flow.serialize() carries too (flow and task level): accepted and
# not kept, since they restate the fields above, so they leave a version's content hash unchanged.
PREFECT1_FIELDS = ("__version__", "name", "type", "reference_tasks")
PREFECT1_TASK_FIELDS = ("slug", "max_retries")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Container resources a Docker or Kubernetes agent applies (Kubernetes quantity syntax).
RESOURCE_FIELDS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


# --- validation ---------------------------------------------------------------------------------


class _Errors:
    """Collects problems by JSON path so one answer lists them all (bounded)."""

    def __init__(self) -> None:
        self.details: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        if len(self.details) < 50:
            self.details.setdefault(path, []).append(message)

    def raise_if_any(self, message: str = "The flow metadata is invalid.", code: str = "invalid_metadata") -> None:
        if self.details:
            first_path, first = next(iter(self.details.items()))
            raise InvalidInput(f"{message} {first_path}: {first[0]}", code=code, details=self.details)


def _string(errors: _Errors, path: str, value: Any, *, limit: int, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            errors.add(path, "Required.")
        return ""
    if not isinstance(value, str):
        errors.add(path, "Must be a string.")
        return ""
    if len(value) > limit:
        errors.add(path, f"At most {limit} characters.")
    return value


def _str_list(errors: _Errors, path: str, value: Any, *, limit: int, item_limit: int = MAX_STRING) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.add(path, "Must be a list of strings.")
        return []
    if len(value) > limit:
        errors.add(path, f"At most {limit} items.")
    if any(len(v) > item_limit for v in value):
        errors.add(path, f"Each item is at most {item_limit} characters.")
    return list(value)


def _non_negative_int(errors: _Errors, path: str, value: Any, *, nullable: bool = True) -> int | None:
    if value is None:
        if not nullable:
            errors.add(path, "Required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        errors.add(path, "Must be an integer ≥ 0.")
        return None
    if value > 10**9:
        errors.add(path, "Too large.")
    return value


def _check_object(errors: _Errors, path: str, value: Any, allowed: set[str]) -> dict:
    if not isinstance(value, dict):
        errors.add(path, "Must be an object.")
        return {}
    for key in sorted(set(value) - allowed):
        errors.add(f"{path}.{key}", "Unknown field.")
    return value


def _bounded_list(errors: _Errors, path: str, value: Any, *, limit: int, noun: str,
                  required: bool = False) -> list | None:
    """``value`` when it is a list of at most ``limit`` items; None (with the error) when it is not.
    A missing value is an empty list, unless it is ``required``."""
    if value is None and not required:
        return []
    if not isinstance(value, list):
        errors.add(path, "Must be a list.")
        return None
    if len(value) > limit:
        errors.add(path, f"At most {limit} {noun} (got {len(value)}).")
        return None
    return value


def _named_objects(
    errors: _Errors, field: str, items: list, allowed: set[str], *, name_field: str, what: str
) -> Iterator[tuple[str, dict, str]]:
    """(path, object, name) for each item of ``field`` that is an object, its unknown fields, a
    missing name and a name used before reported (``what`` names the name in that message)."""
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"{field}[{i}]"
        obj = _check_object(errors, path, item, allowed)
        if not obj:
            continue
        name = _string(errors, f"{path}.{name_field}", obj.get(name_field), limit=MAX_KEY)
        if name in seen:
            errors.add(f"{path}.{name_field}", f"Duplicate {what} '{name}'.")
        seen.add(name)
        yield path, obj, name


def _validate_tasks(errors: _Errors, given: Any) -> tuple[list[dict], list[str]]:
    tasks = _bounded_list(errors, "tasks", given, limit=MAX_TASKS, noun="tasks per flow", required=True)
    if tasks is None:
        return [], []
    if not tasks:
        errors.add("tasks", "A flow needs at least one task.")
    allowed = {"key", "name", "tags", "retries", "retry_delay_seconds", "timeout_seconds", "trigger", "mapped",
               "cache_key", "cache_expiration_seconds", *PREFECT1_TASK_FIELDS}
    clean, keys = [], []
    for path, task, key in _named_objects(errors, "tasks", tasks, allowed, name_field="key", what="task key"):
        keys.append(key)
        item = {
            "key": key,
            "name": _string(errors, f"{path}.name", task.get("name", key), limit=MAX_NAME),
            "tags": _str_list(errors, f"{path}.tags", task.get("tags"), limit=MAX_TAGS, item_limit=100),
            "retries": _non_negative_int(errors, f"{path}.retries", task.get("retries", 0)) or 0,
            "retry_delay_seconds": _non_negative_int(
                errors, f"{path}.retry_delay_seconds", task.get("retry_delay_seconds")
            ),
            "timeout_seconds": _non_negative_int(errors, f"{path}.timeout_seconds", task.get("timeout_seconds")),
        }
        for extra in ("trigger", "cache_key"):
            if extra in task:
                item[extra] = _string(errors, f"{path}.{extra}", task[extra], limit=MAX_NAME, required=False)
        if "mapped" in task:
            if not isinstance(task["mapped"], bool):
                errors.add(f"{path}.mapped", "Must be a boolean.")
            item["mapped"] = bool(task["mapped"])
        if "cache_expiration_seconds" in task:
            item["cache_expiration_seconds"] = _non_negative_int(
                errors, f"{path}.cache_expiration_seconds", task["cache_expiration_seconds"]
            )
        clean.append(item)
    return clean, keys


def _find_cycle(keys: list[str], edges: list[dict]) -> list[str] | None:
    """A cycle in the task graph as a list of keys (first repeated at the end), or None."""
    graph: dict[str, list[str]] = {k: [] for k in keys}
    for edge in edges:
        graph.setdefault(edge["upstream"], []).append(edge["downstream"])
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for start in graph:
        if colour[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        colour[start] = grey
        while stack:
            node, index = stack[-1]
            children = graph.get(node, [])
            if index < len(children):
                stack[-1] = (node, index + 1)
                child = children[index]
                if colour.get(child, white) == grey:
                    return path[path.index(child):] + [child]
                if colour.get(child, white) == white:
                    colour[child] = grey
                    stack.append((child, 0))
                    path.append(child)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


def _validate_edges(errors: _Errors, given: Any, keys: list[str]) -> list[dict]:
    edges = _bounded_list(errors, "edges", given, limit=MAX_EDGES, noun="edges per flow")
    if not edges:
        return []
    known = set(keys)
    clean = []
    for i, edge in enumerate(edges):
        path = f"edges[{i}]"
        edge = _check_object(errors, path, edge, {"upstream", "downstream", "key", "mapped"})
        if not edge:
            continue
        up = _string(errors, f"{path}.upstream", edge.get("upstream"), limit=MAX_KEY)
        down = _string(errors, f"{path}.downstream", edge.get("downstream"), limit=MAX_KEY)
        for end, value in (("upstream", up), ("downstream", down)):
            if value and value not in known:
                errors.add(f"{path}.{end}", f"Refers to an unknown task key '{value}'.")
        if up and up == down:
            errors.add(path, f"A task cannot depend on itself ('{up}').")
        data_key = edge.get("key")
        if data_key is not None:
            data_key = _string(errors, f"{path}.key", data_key, limit=MAX_KEY)
        item: dict[str, Any] = {"upstream": up, "downstream": down, "key": data_key or None}
        if "mapped" in edge:
            item["mapped"] = bool(edge["mapped"])
        clean.append(item)
    return clean


def _validate_parameters(errors: _Errors, given: Any) -> list[dict]:
    parameters = _bounded_list(errors, "parameters", given, limit=MAX_PARAMETERS, noun="parameters")
    if not parameters:
        return []
    allowed = {"name", "type", "default", "required", "description"}
    clean = []
    for path, param, name in _named_objects(errors, "parameters", parameters, allowed, name_field="name",
                                            what="parameter"):
        kind = param.get("type", "any")
        if kind not in PARAMETER_TYPES:
            errors.add(f"{path}.type", f"Must be one of {', '.join(PARAMETER_TYPES)}.")
            kind = "any"
        required = param.get("required", False)
        if not isinstance(required, bool):
            errors.add(f"{path}.required", "Must be a boolean.")
        default = param.get("default")
        if not value_matches_type(kind, default):
            errors.add(f"{path}.default", f"Does not match the declared type '{kind}'.")
        item = {"name": name, "type": kind, "default": default, "required": bool(required)}
        if "description" in param:
            item["description"] = _string(errors, f"{path}.description", param["description"], limit=MAX_STRING,
                                          required=False)
        clean.append(item)
    return clean


def _validate_storage(errors: _Errors, storage: Any) -> dict:
    if storage is None:
        errors.add("storage", "Required: tell the agent where the code lives.")
        return {}
    storage = _check_object(errors, "storage", storage, {"type", "module", "path", "repo", "ref", "image",
                                                          "flow_name", "entrypoint"})
    if not storage:
        return {}
    kind = storage.get("type")
    if kind not in STORAGE_TYPES:
        errors.add("storage.type", f"Must be one of {', '.join(STORAGE_TYPES)}.")
    for key, value in storage.items():
        if key != "type":
            _string(errors, f"storage.{key}", value, limit=MAX_STRING, required=False)
    needed = {"module": "module", "file": "path", "git": "repo", "image": "image"}.get(kind or "")
    if needed and not storage.get(needed):
        errors.add(f"storage.{needed}", f"Required for '{kind}' storage.")
    return dict(storage)


def _validate_run_config(errors: _Errors, run_config: Any) -> dict:
    if run_config is None:
        return {}
    run_config = _check_object(errors, "run_config", run_config, {"agent_type", "image", "env", "labels",
                                                                  *RESOURCE_FIELDS, "image_pull_policy"})
    if not run_config and run_config != {}:
        return {}
    clean: dict[str, Any] = {}
    if "agent_type" in run_config:
        if run_config["agent_type"] not in AGENT_TYPES:
            errors.add("run_config.agent_type", f"Must be one of {', '.join(AGENT_TYPES)}.")
        clean["agent_type"] = run_config["agent_type"]
    if "image" in run_config:
        clean["image"] = _string(errors, "run_config.image", run_config["image"], limit=MAX_STRING, required=False)
    for field in RESOURCE_FIELDS:
        if field in run_config:
            value = run_config[field]
            if isinstance(value, bool) or not isinstance(value, str | int | float) or not _QUANTITY.match(str(value)):
                errors.add(f"run_config.{field}", "A Kubernetes quantity such as 500m, 2, 1.5, 512Mi or 4Gi.")
            else:
                clean[field] = str(value)
    if "image_pull_policy" in run_config:
        if run_config["image_pull_policy"] not in PULL_POLICIES:
            errors.add("run_config.image_pull_policy", f"Must be one of {', '.join(PULL_POLICIES)}.")
        clean["image_pull_policy"] = run_config["image_pull_policy"]
    if "labels" in run_config:
        clean["labels"] = _str_list(errors, "run_config.labels", run_config["labels"], limit=MAX_LABELS, item_limit=100)
    env = run_config.get("env")
    if env is not None:
        if isinstance(env, dict):
            errors.add("run_config.env", "Send environment variable NAMES only (a list), never values: secrets "
                                         "must not be sent to Flowdeck; the agent reads them where it runs.")
        elif not isinstance(env, list) or not all(isinstance(v, str) for v in env):
            errors.add("run_config.env", "Must be a list of environment variable names.")
        else:
            for i, name in enumerate(env):
                if "=" in name:
                    errors.add(f"run_config.env[{i}]", "Looks like NAME=value: send names only; secrets must not "
                                                       "be sent to Flowdeck.")
                elif not _ENV_NAME.match(name) or len(name) > 200:
                    errors.add(f"run_config.env[{i}]", "Not a valid environment variable name.")
            clean["env"] = list(env)
    return clean


def validate_metadata(metadata: Any) -> dict[str, Any]:
    """The cleaned metadata, or InvalidInput listing every problem by path."""
    if not isinstance(metadata, dict):
        raise InvalidInput("The flow metadata must be a JSON object.", code="invalid_metadata",
                           details={"metadata": ["Must be an object."]})
    try:
        dumped = json.dumps(metadata, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        raise InvalidInput("The flow metadata must be plain JSON.", code="invalid_metadata") from None
    if "\\u0000" in dumped:
        raise InvalidInput("The flow metadata cannot contain NUL characters (\\u0000).", code="invalid_metadata",
                           details={"metadata": ["Contains \\u0000."]})
    size = len(dumped.encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(
            f"The flow metadata is {size:,} bytes; the limit is {MAX_METADATA_BYTES:,} bytes.",
            code="metadata_too_large", details={"metadata": [f"At most {MAX_METADATA_BYTES} bytes."]},
        )
    errors = _Errors()
    for key in sorted(set(metadata) - set(METADATA_FIELDS) - set(PREFECT1_FIELDS)):
        errors.add(key, "Unknown field.")
    tasks, keys = _validate_tasks(errors, metadata.get("tasks"))
    edges = _validate_edges(errors, metadata.get("edges"), keys)
    clean = {
        "tasks": tasks,
        "edges": edges,
        "parameters": _validate_parameters(errors, metadata.get("parameters")),
        "schedule": metadata.get("schedule"),
        "storage": _validate_storage(errors, metadata.get("storage")),
        "labels": _str_list(errors, "labels", metadata.get("labels"), limit=MAX_LABELS, item_limit=100),
        "run_config": _validate_run_config(errors, metadata.get("run_config")),
    }
    if clean["schedule"] is not None and not isinstance(clean["schedule"], dict):
        errors.add("schedule", "Must be an object or null.")
    # SLA policies are checked (and kept) by orchestration.alerts.policies at registration: they are
    # the flow's live settings, not part of a version, so they stay out of the content hash.
    if metadata.get("sla_policies") is not None and not isinstance(metadata["sla_policies"], list):
        errors.add("sla_policies", "Must be a list of policies.")
    errors.raise_if_any()
    cycle = _find_cycle(keys, edges)
    if cycle:
        raise InvalidInput(
            f"The task graph has a cycle: {' → '.join(cycle)}.", code="dag_cycle", details={"edges": {"cycle": cycle}}
        )
    return clean


def content_hash(metadata: dict[str, Any]) -> str:
    canonical = json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- writes -------------------------------------------------------------------------------------


def _upsert_project(actor: Principal, project_name: str) -> Project:
    from orchestration.services.projects import _clean_name

    name = _clean_name(project_name)
    project = Project.objects.for_workspace(actor.workspace).filter(name=name).first()
    if project is None:
        authorize(actor, "project:write", actor.workspace)
        with transaction.atomic():
            project, _ = Project.objects.unscoped().get_or_create(workspace=actor.workspace, name=name)
    authorize(actor, "flow:register", project)
    return project


@transaction.atomic
def flow_register(*, actor: Principal, project_name: str, name: str, metadata: dict) -> tuple[FlowVersion, bool]:
    """Register a flow's metadata: the existing version when unchanged (created=False), else n+1.
    The ``sla_policies`` the metadata declares are made the flow's registered policies either way
    (left out: they are left alone); a bad one fails the whole registration."""
    authorize(actor, "flow:register", actor.workspace)
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"A flow needs a name of 1–{MAX_NAME} characters.", details={"name": ["Invalid."]})
    clean = validate_metadata(metadata)
    digest = content_hash(clean)
    project = _upsert_project(actor, project_name)
    with transaction.atomic():
        flow, _ = Flow.objects.unscoped().get_or_create(workspace=actor.workspace, project=project, name=name)
    # Serialise registrations of one flow so version numbers and the hash check cannot race.
    flow = Flow.objects.for_workspace(actor.workspace).select_for_update().get(pk=flow.pk)
    versions = FlowVersion.objects.for_workspace(actor.workspace).filter(flow=flow)
    from orchestration.alerts.policies import sla_policies_register

    sla_policies_register(actor, flow, metadata.get("sla_policies"))
    existing = versions.filter(content_hash=digest).first()
    if existing is not None:
        return existing, False
    number = (versions.aggregate(n=Max("version"))["n"] or 0) + 1
    version = FlowVersion.objects.unscoped().create(
        workspace=actor.workspace, flow=flow, version=number, content_hash=digest, registered_by=actor.label[:254],
        **clean,
    )
    if flow.is_archived:
        flow.is_archived = False
        flow.save(update_fields=["is_archived"])
    from orchestration.services.schedules import schedules_sync_from_registration

    # A schedule in the metadata becomes the flow's registered schedule(s); a bad one fails the whole
    # registration, so nothing is half-written.
    schedules_sync_from_registration(actor=actor, flow=flow, spec=clean["schedule"])
    flow.project = project  # the event names it; spares a query
    events.flow_registered(version)
    return version, True


def _audit(actor: Principal, action: str, target: Flow | FlowVersion, data: dict[str, Any],
           label: str | None = None) -> None:
    audit_record(workspace=actor.workspace, action=action, target=target, actor=actor, data=data, target_label=label)


def _version_label(flow: Flow, version: FlowVersion) -> str:
    return f"{flow.name} v{version.version}"


@transaction.atomic
def flow_update(
    *, actor: Principal, flow: Flow, description: str | None = None, max_lateness_seconds: int | None = None,
    catchup: str | None = None, concurrency_limit: int | None = None, max_crash_retries: int | None = None,
    fields: set[str] | None = None,
) -> Flow:
    """Update the given fields. ``fields`` names those to set (so a field can be set to null). The
    audit row lists each changed field as ``[old, new]``."""
    authorize(actor, "project:write", flow.project)
    values = {
        "description": description, "max_lateness_seconds": max_lateness_seconds, "catchup": catchup,
        "concurrency_limit": concurrency_limit, "max_crash_retries": max_crash_retries,
    }
    chosen = fields if fields is not None else {k for k, v in values.items() if v is not None}
    if "description" in chosen and len(description or "") > 2000:
        raise InvalidInput("A description is at most 2,000 characters.", details={"description": ["Too long."]})
    if "catchup" in chosen and catchup not in Catchup.values:
        raise InvalidInput(f"catchup must be one of {', '.join(Catchup.values)}.", details={"catchup": ["Invalid."]})
    if "max_crash_retries" in chosen and max_crash_retries is None:
        raise InvalidInput("max_crash_retries cannot be null.", details={"max_crash_retries": ["Required."]})
    changes: dict[str, list[Any]] = {}
    for key in sorted(chosen):
        old, new = getattr(flow, key), values[key]
        new = (new or "") if key == "description" else new
        if old != new:
            changes[key] = [old, new]
        setattr(flow, key, new)
    flow.save(update_fields=sorted(chosen) or None)
    if changes:
        _audit(actor, "flow.updated", flow, changes)
    events.flow_updated(flow)
    return flow


@transaction.atomic
def flow_version_archive(*, actor: Principal, version: FlowVersion, archived: bool = True) -> FlowVersion:
    """Archive a version (new runs no longer use it; a pin on it is lifted) or restore it."""
    flow = Flow.objects.for_workspace(actor.workspace).select_related("project").get(pk=version.flow_id)
    authorize(actor, "flow:register", flow.project)
    version.is_archived = archived
    version.save(update_fields=["is_archived"])
    unpinned = archived and flow.pinned_version_id == version.pk
    if unpinned:
        flow.pinned_version = None
        flow.save(update_fields=["pinned_version"])
    data = {"flow_id": str(flow.pk), "version": version.version}
    if archived:
        _audit(actor, "flow.version_archived", version, {**data, "unpinned": unpinned}, _version_label(flow, version))
        events.flow_version_archived(version)
    else:
        _audit(actor, "flow.version_restored", version, data, _version_label(flow, version))
        events.flow_version_restored(version)
    return version


def _pinned_number(flow: Flow) -> int | None:
    """The version number of ``flow``'s pinned version, for the audit row (None: not pinned)."""
    if flow.pinned_version_id is None:
        return None
    return FlowVersion.objects.for_workspace(flow.workspace_id).filter(pk=flow.pinned_version_id) \
        .values_list("version", flat=True).first()


def _set_pin(actor: Principal, flow: Flow, version: FlowVersion | None) -> Flow:
    """Pin ``version`` (None: unpin); the audit row is written only when the pin changes."""
    if flow.pinned_version_id != (version.pk if version else None):
        data = {"previous": _pinned_number(flow)}
        if version is None:
            _audit(actor, "flow.version_unpinned", flow, data)
        else:
            _audit(actor, "flow.version_pinned", flow, {**data, "version": version.version})
    flow.pinned_version = version
    flow.save(update_fields=["pinned_version"])
    events.flow_updated(flow, pin_changed=True)
    return flow


@transaction.atomic
def flow_pin_version(*, actor: Principal, flow: Flow, version: FlowVersion) -> Flow:
    """Make ``version`` the one new runs use, whatever is registered later."""
    authorize(actor, "flow:register", flow.project)
    if version.flow_id != flow.pk:
        raise NotFound()
    if version.is_archived:
        raise Conflict("An archived version cannot be pinned; restore it first.", code="version_archived")
    return _set_pin(actor, flow, version)


@transaction.atomic
def flow_unpin_version(*, actor: Principal, flow: Flow) -> Flow:
    """New runs use the newest unarchived version again."""
    authorize(actor, "flow:register", flow.project)
    return _set_pin(actor, flow, None)


@transaction.atomic
def flow_delete(*, actor: Principal, flow: Flow) -> None:
    """Delete a flow with its versions, schedules and runs."""
    authorize(actor, "project:write", flow.project)
    from orchestration.alerts.policies import sla_policies_delete_with_scope

    # The flow's SLA policies go first, resolving their open incidents (a cascade would not).
    sla_policies_delete_with_scope(actor, flow=flow)
    # Both read the flow's id, which delete() clears; nothing is kept if the delete fails.
    _audit(actor, "flow.deleted", flow, {"name": flow.name, "project": flow.project.name})
    events.flow_deleted(flow)
    try:
        with transaction.atomic():
            # Runs go first: they PROTECT the versions the flow's deletion cascades to.
            FlowRun.objects.for_workspace(actor.workspace).filter(flow=flow).delete()
            flow.delete()
    except ProtectedError:
        raise Conflict("This flow still has runs that cannot be deleted.", code="flow_in_use") from None
    except IntegrityError:
        raise Conflict("This flow is still referenced.", code="flow_in_use") from None
