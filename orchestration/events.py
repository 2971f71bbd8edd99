"""The live events of orchestration: one function per event type, the only place that shapes them.

Each function is named after its event type (dots become underscores), builds the payload from the
model objects it is given and calls :func:`core.events.publish`, which sends it after the current
transaction commits (see ``docs/live-updates.md`` for the transport). Producers call these, never
``publish`` with a hand-written dict, so a type has one shape whichever code path sends it.

Group: **workspace** events go to every socket of the workspace (``ws.<workspace id>``); **run**
events go only to the sockets subscribed to that flow run (``run.<flow run id>``), so a busy run
never floods dashboards. Ids are strings; times ISO 8601.

================================  =========  =====================================================
type                              group      data
================================  =========  =====================================================
``project.created``               workspace  ``id``, ``name``
``project.updated``               workspace  ``id``
``project.deleted``               workspace  ``id``
``flow.registered``               workspace  ``flow_id``, ``flow_version_id``, ``version``,
                                             ``name`` (the flow's), ``project`` (its name)
``flow.updated``                  workspace  ``id``; when the pinned version changed, also
                                             ``pinned_version_id`` (null when unpinned)
``flow.deleted``                  workspace  ``id``
``flow.version_archived``         workspace  ``flow_id``, ``flow_version_id``
``flow.version_restored``         workspace  ``flow_id``, ``flow_version_id``
``schedule.created``              workspace  ``id``, ``flow_id``, ``is_active``
``schedule.updated``              workspace  ``id``, ``flow_id``, ``is_active``
``schedule.deleted``              workspace  ``id``, ``flow_id``, ``is_active``
``flow_run.created``              workspace  ``flow_id``, ``created_by_kind``, ``count``, ``id``
                                             (the first run's: *the* run when ``count`` is 1),
                                             ``ids`` (the first 100), ``runs`` (the first 100:
                                             ``id``, ``flow_id``, ``name``, ``state_type``,
                                             ``scheduled_start``). The same shape for a single
                                             create, a bulk create and the scheduler: one event
                                             per flow (and creator kind) and commit.
``flow_run.state_changed``        workspace  ``id``, ``state_type``, ``state_name``,
                                             ``state_version``
``flow_run.deleted``              workspace  one run: ``id``; runs removed because their
                                             schedule changed: ``ids``, ``reason``
                                             (``"schedule_changed"``), ``schedule_id``
``task_run.state_changed``        run        ``id``, ``flow_run_id``, ``task_key``, ``map_index``,
                                             ``state_type``, ``state_name``
``task_run.states_changed``       run        ``flow_run_id``, ``task_runs`` (the first 500:
                                             ``id``, ``task_key``, ``map_index``, ``state_type``,
                                             ``state_name``)
``logs.appended``                 run        ``flow_run_id``, ``count``, ``first_sequence``,
                                             ``last_sequence`` (the lines come from REST)
``agent.registered``              workspace  ``id``, ``name``, ``type``, ``labels``, ``version``,
                                             ``created``
``agent.status_changed``          workspace  ``id``, ``name``, ``previous``, ``status``
``concurrency_limit.updated``     workspace  ``tag``, ``limit``
``concurrency_limit.deleted``     workspace  ``tag``
``bulk_action.progress``          workspace  ``id``, ``action``, ``status``, ``matched``, ``done``,
                                             ``skipped``, ``failed``
``incident.opened``               workspace  ``id``, ``policy_id``, ``kind``, ``severity``, ``title``,
                                             ``cause``, ``status``, ``flow_id`` (null for a
                                             correlated cause or an agent policy), ``project_id``
                                             (the policy's project when ``flow_id`` is null, else
                                             null), ``run_count``
``incident.updated``              workspace  the same: runs were added, or it was acknowledged,
                                             snoozed or woke from a snooze
``incident.resolved``             workspace  the same, ``status`` ``"resolved"``
================================  =========  =====================================================

Who reads them: the web app (``frontend/app/src``: pages refetch on a type, the flow page matches
``flow_id``) and the browser socket's restricted-project filter (``orchestration/live/browser.py``:
``flow_id`` of ``flow.*``, ``schedule.*``, ``flow_run.created`` and ``incident.*`` (``project_id`` of
an ``incident.*`` that names no flow); ``schedule_id`` or ``id`` of the other ``flow_run.*``).
Agents are not told through these events but through pushes (``orchestration/services/live.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from core.events import publish
from orchestration.models import (
    Agent,
    BulkAction,
    ConcurrencyLimit,
    Flow,
    FlowRun,
    FlowVersion,
    Incident,
    Project,
    Schedule,
    TaskRun,
)

#: How many run ids (and run summaries) a ``flow_run.created`` event lists; ``count`` has them all.
CREATED_RUNS_LISTED = 100
#: How many task runs a ``task_run.states_changed`` event lists.
TASK_RUNS_LISTED = 500


def _workspace_event(workspace_id: Any, type: str, data: dict[str, Any]) -> None:
    publish(workspace_id=workspace_id, type=type, data=data)


def _run_event(workspace_id: Any, flow_run_id: Any, type: str, data: dict[str, Any]) -> None:
    publish(workspace_id=workspace_id, type=type, data=data, flow_run_id=flow_run_id)


def _existing_pk(obj: Project | Flow) -> str:
    # Model.delete() clears the pk: the deleted-events must be built before it.
    if obj.pk is None:
        raise ValueError(f"announce the deletion of {type(obj).__name__} before calling delete()")
    return str(obj.pk)


# --- projects ---------------------------------------------------------------------------------------


def project_created(project: Project) -> None:
    _workspace_event(project.workspace_id, "project.created", {"id": str(project.pk), "name": project.name})


def project_updated(project: Project) -> None:
    _workspace_event(project.workspace_id, "project.updated", {"id": str(project.pk)})


def project_deleted(project: Project) -> None:
    """Call before ``project.delete()`` (inside the same transaction: nothing is sent on rollback)."""
    _workspace_event(project.workspace_id, "project.deleted", {"id": _existing_pk(project)})


# --- flows and versions -----------------------------------------------------------------------------


def flow_registered(version: FlowVersion) -> None:
    """A new version was registered (``version.flow`` and its project are read: pass them loaded)."""
    flow = version.flow
    _workspace_event(version.workspace_id, "flow.registered", {
        "flow_id": str(flow.pk), "flow_version_id": str(version.pk), "version": version.version,
        "name": flow.name, "project": flow.project.name,
    })


def flow_updated(flow: Flow, *, pin_changed: bool = False) -> None:
    """``pin_changed``: the pinned version was set or cleared (the event then says which)."""
    data: dict[str, Any] = {"id": str(flow.pk)}
    if pin_changed:
        data["pinned_version_id"] = None if flow.pinned_version_id is None else str(flow.pinned_version_id)
    _workspace_event(flow.workspace_id, "flow.updated", data)


def flow_deleted(flow: Flow) -> None:
    """Call before ``flow.delete()`` (inside the same transaction: nothing is sent on rollback)."""
    _workspace_event(flow.workspace_id, "flow.deleted", {"id": _existing_pk(flow)})


def _version_data(version: FlowVersion) -> dict[str, Any]:
    return {"flow_id": str(version.flow_id), "flow_version_id": str(version.pk)}


def flow_version_archived(version: FlowVersion) -> None:
    _workspace_event(version.workspace_id, "flow.version_archived", _version_data(version))


def flow_version_restored(version: FlowVersion) -> None:
    _workspace_event(version.workspace_id, "flow.version_restored", _version_data(version))


# --- schedules --------------------------------------------------------------------------------------


def _schedule_data(schedule: Schedule) -> dict[str, Any]:
    return {"id": str(schedule.pk), "flow_id": str(schedule.flow_id), "is_active": schedule.is_active}


def schedule_created(schedule: Schedule) -> None:
    _workspace_event(schedule.workspace_id, "schedule.created", _schedule_data(schedule))


def schedule_updated(schedule: Schedule) -> None:
    _workspace_event(schedule.workspace_id, "schedule.updated", _schedule_data(schedule))


def schedule_deleted(schedule: Schedule) -> None:
    """Call before ``schedule.delete()`` (which clears the pk)."""
    _workspace_event(schedule.workspace_id, "schedule.deleted", _schedule_data(schedule))


# --- flow runs --------------------------------------------------------------------------------------


def _run_summary(run: FlowRun) -> dict[str, Any]:
    parent = run.parent_flow_run_id
    return {"id": str(run.pk), "flow_id": str(run.flow_id), "name": run.name, "state_type": run.state_type,
            "scheduled_start": run.scheduled_start.isoformat(),
            "parent_flow_run_id": None if parent is None else str(parent)}


def flow_run_created(runs: Sequence[FlowRun]) -> None:
    """Announce newly created runs (only those actually inserted): one ``flow_run.created`` per
    workspace, flow and creator kind, in the order given. The same shape for one run or thousands.
    Called where runs are born (``orchestration.engine.creation``), for every way of creating them."""
    by_flow: dict[tuple[Any, Any, str], list[FlowRun]] = defaultdict(list)
    for run in runs:
        by_flow[(run.workspace_id, run.flow_id, run.created_by_kind)].append(run)
    for (workspace_id, flow_id, created_by_kind), created in by_flow.items():
        listed = created[:CREATED_RUNS_LISTED]
        _workspace_event(workspace_id, "flow_run.created", {
            "flow_id": str(flow_id), "created_by_kind": created_by_kind, "count": len(created),
            "id": str(listed[0].pk), "ids": [str(run.pk) for run in listed],
            "runs": [_run_summary(run) for run in listed],
        })


def flow_run_state_changed(run: FlowRun) -> None:
    _workspace_event(run.workspace_id, "flow_run.state_changed", {
        "id": str(run.pk), "state_type": run.state_type, "state_name": run.state_name,
        "state_version": run.state_version,
    })


def flow_run_deleted(run: FlowRun) -> None:
    """One run deleted by hand (a queryset delete keeps ``run.pk``; else call before deleting)."""
    _workspace_event(run.workspace_id, "flow_run.deleted", {"id": str(run.pk)})


def flow_run_deleted_by_schedule(schedule: Schedule, run_ids: Sequence[Any]) -> None:
    """The schedule's unclaimed future runs were removed because the schedule changed (the
    ``schedule_id`` lets the browser socket find the project of runs that no longer exist)."""
    _workspace_event(schedule.workspace_id, "flow_run.deleted", {
        "ids": [str(pk) for pk in run_ids], "reason": "schedule_changed", "schedule_id": str(schedule.pk),
    })


# --- inside a run: task runs and logs ---------------------------------------------------------------


def _task_summary(run: TaskRun) -> dict[str, Any]:
    return {"id": str(run.pk), "task_key": run.task_key, "map_index": run.map_index,
            "state_type": run.state_type, "state_name": run.state_name}


def task_run_state_changed(run: TaskRun) -> None:
    _run_event(run.workspace_id, run.flow_run_id, "task_run.state_changed",
               {"flow_run_id": str(run.flow_run_id), **_task_summary(run)})


def task_run_states_changed(workspace_id: Any, flow_run_id: Any, task_runs: Sequence[TaskRun]) -> None:
    """Several task runs of the flow run ``flow_run_id`` changed state in one commit (a batch
    report, the close of a finished run). Each needs ``pk``, ``task_key``, ``map_index``,
    ``state_type``, ``state_name``: unsaved ``TaskRun(pk=…, …)`` instances will do."""
    _run_event(workspace_id, flow_run_id, "task_run.states_changed", {
        "flow_run_id": str(flow_run_id),
        "task_runs": [_task_summary(run) for run in task_runs[:TASK_RUNS_LISTED]],
    })


def logs_appended(flow_run: FlowRun, *, count: int, first_sequence: int, last_sequence: int) -> None:
    _run_event(flow_run.workspace_id, flow_run.pk, "logs.appended", {
        "flow_run_id": str(flow_run.pk), "count": count, "first_sequence": first_sequence,
        "last_sequence": last_sequence,
    })


# --- agents, limits, bulk actions -------------------------------------------------------------------


def agent_registered(agent: Agent, *, created: bool) -> None:
    _workspace_event(agent.workspace_id, "agent.registered", {
        "id": str(agent.pk), "name": agent.name, "type": agent.type, "labels": agent.labels,
        "version": agent.version, "created": created,
    })


def agent_status_changed(agent: Agent, *, previous: str, status: str) -> None:
    _workspace_event(agent.workspace_id, "agent.status_changed",
                     {"id": str(agent.pk), "name": agent.name, "previous": previous, "status": status})


def concurrency_limit_updated(limit: ConcurrencyLimit) -> None:
    _workspace_event(limit.workspace_id, "concurrency_limit.updated", {"tag": limit.tag, "limit": limit.limit})


def concurrency_limit_deleted(limit: ConcurrencyLimit) -> None:
    """``limit``: the row that was removed (its ``tag`` and ``workspace_id`` are read)."""
    _workspace_event(limit.workspace_id, "concurrency_limit.deleted", {"tag": limit.tag})


def bulk_action_progress(bulk: BulkAction) -> None:
    """The counts as they stand on ``bulk`` (set them on the instance before calling)."""
    _workspace_event(bulk.workspace_id, "bulk_action.progress", {
        "id": str(bulk.pk), "action": bulk.action, "status": bulk.status, "matched": bulk.matched,
        "done": bulk.done, "skipped": bulk.skipped, "failed": bulk.failed,
    })


# --- SLA incidents ------------------------------------------------------------------------------------


def _incident_data(incident: Incident, run_count: int, project_id: Any) -> dict[str, Any]:
    return {
        "id": str(incident.pk), "policy_id": None if incident.policy_id is None else str(incident.policy_id),
        "kind": incident.kind, "severity": incident.severity, "title": incident.title, "cause": incident.cause,
        "status": incident.status, "flow_id": None if incident.flow_id is None else str(incident.flow_id),
        "project_id": None if project_id is None or incident.flow_id is not None else str(project_id),
        "run_count": run_count,
    }


def incident_opened(incident: Incident, *, run_count: int, project_id: Any = None) -> None:
    """``project_id``: the policy's project, for incidents that name no flow (the restricted-project
    filter of the browser socket reads it)."""
    _workspace_event(incident.workspace_id, "incident.opened", _incident_data(incident, run_count, project_id))


def incident_updated(incident: Incident, *, run_count: int, project_id: Any = None) -> None:
    _workspace_event(incident.workspace_id, "incident.updated", _incident_data(incident, run_count, project_id))


def incident_resolved(incident: Incident, *, run_count: int, project_id: Any = None) -> None:
    _workspace_event(incident.workspace_id, "incident.resolved", _incident_data(incident, run_count, project_id))
