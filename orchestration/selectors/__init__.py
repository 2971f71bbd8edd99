"""The read layer of orchestration: every question "what may this principal see, and which one is
it?" has its answer here, once.

- Which projects may a principal see: :func:`projects.visible_projects_q` (and
  :func:`projects_visible_to`); every list of flows and runs is filtered through it.
- Which version does a new run use: :func:`flow_version_for_new_run` (for many flows at once:
  :func:`flow_versions_for_new_runs`; with a create's idempotency key, together with the run
  already made with it: :func:`keyed_run_and_version_for_new_run`; all built on one rule in
  ``flows.py``).
- Which runs match a filter: :class:`FlowRunFilter` with :func:`filter_runs` (REST, GraphQL, bulk
  actions).
- May the principal touch this object: the ``access_*`` functions, which answer NotFound alike for
  a malformed id, a missing object, another workspace's and one hidden from the principal.

Reads only: writes live in ``orchestration.services`` and state changes in ``orchestration.engine``.
The database clock is ``orchestration.engine.db_now``.
"""

from .agents import access_agent, agent_of_workspace, agents_covering_labels, agents_of, upcoming_work
from .flows import (
    access_flow,
    access_flow_version,
    access_schedule,
    flow_schedules,
    flow_version_for_new_run,
    flow_versions,
    flow_versions_for_new_runs,
    flows_visible_to,
    keyed_run_and_version_for_new_run,
)
from .projects import (
    access_project,
    hidden_projects,
    parse_id,
    project_id_of,
    projects_visible_to,
    projects_with_flows,
    visible_projects_q,
)
from .runs import (
    FlowRunFilter,
    access_bulk_action,
    access_flow_run,
    access_task_run,
    claimed_runs,
    counts_by_state,
    failing_runs,
    filter_runs,
    flow_run_detail,
    flow_run_states,
    late_runs,
    live_label_sets,
    no_live_agent_reason,
    runs_by_state_over_time,
    runs_visible_to,
    task_run_states_for,
    task_runs_for,
    task_runs_of,
    upcoming_runs,
    visible_child_runs,
    visible_runs_by_id,
)

__all__ = [
    "FlowRunFilter",
    "access_agent",
    "access_bulk_action",
    "access_flow",
    "access_flow_run",
    "access_flow_version",
    "access_project",
    "access_schedule",
    "access_task_run",
    "agent_of_workspace",
    "agents_covering_labels",
    "agents_of",
    "claimed_runs",
    "counts_by_state",
    "failing_runs",
    "filter_runs",
    "flow_run_detail",
    "flow_run_states",
    "flow_schedules",
    "flow_version_for_new_run",
    "keyed_run_and_version_for_new_run",
    "flow_versions",
    "flow_versions_for_new_runs",
    "flows_visible_to",
    "hidden_projects",
    "late_runs",
    "live_label_sets",
    "no_live_agent_reason",
    "parse_id",
    "project_id_of",
    "projects_visible_to",
    "projects_with_flows",
    "runs_by_state_over_time",
    "runs_visible_to",
    "task_run_states_for",
    "task_runs_for",
    "task_runs_of",
    "upcoming_runs",
    "visible_child_runs",
    "visible_runs_by_id",
    "upcoming_work",
    "visible_projects_q",
]
