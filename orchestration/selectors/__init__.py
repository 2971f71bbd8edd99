"""The read layer of orchestration: every question "what may this principal see, and which one is
it?" has its answer here, once.

- Which projects may a principal see: :func:`projects.visible_projects_q` (and
  :func:`projects_visible_to`); every list of flows and runs is filtered through it.
- Which version does a new run use: :func:`flow_version_for_new_run`.
- Which runs match a filter: :class:`FlowRunFilter` with :func:`filter_runs` (REST, GraphQL, bulk
  actions).
- May the principal touch this object: the ``access_*`` functions, which answer NotFound alike for
  a malformed id, a missing object, another workspace's and one hidden from the principal.

Reads only: writes live in ``orchestration.services`` and state changes in ``orchestration.engine``.
The database clock is ``orchestration.engine.db_now``.
"""

from .agents import access_agent, agents_covering_labels, agents_of
from .flows import (
    access_flow,
    access_flow_version,
    access_schedule,
    flow_schedules,
    flow_version_for_new_run,
    flow_versions,
    flows_visible_to,
)
from .projects import (
    access_project,
    parse_id,
    projects_visible_to,
    projects_with_flows,
    visible_projects_q,
)
from .runs import (
    FlowRunFilter,
    access_flow_run,
    counts_by_state,
    failing_runs,
    filter_runs,
    flow_run_detail,
    flow_run_states,
    late_runs,
    runs_by_state_over_time,
    runs_visible_to,
    task_runs_for,
    task_runs_of,
    upcoming_runs,
)

__all__ = [
    "FlowRunFilter",
    "access_agent",
    "access_flow",
    "access_flow_run",
    "access_flow_version",
    "access_project",
    "access_schedule",
    "agents_covering_labels",
    "agents_of",
    "counts_by_state",
    "failing_runs",
    "filter_runs",
    "flow_run_detail",
    "flow_run_states",
    "flow_schedules",
    "flow_version_for_new_run",
    "flow_versions",
    "flows_visible_to",
    "late_runs",
    "parse_id",
    "projects_visible_to",
    "projects_with_flows",
    "runs_by_state_over_time",
    "runs_visible_to",
    "task_runs_for",
    "task_runs_of",
    "upcoming_runs",
    "visible_projects_q",
]
