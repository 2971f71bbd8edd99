"""Request-scoped DataLoaders for orchestration lists: the task runs of every flow run on a page
cost one query, however many runs the page has, and the state histories of every task run of a
run page one more.

They hang off the accounts :class:`~accounts.graphql.context.GraphQLContext`'s ``loaders`` object,
so they are renewed with it after every mutation (``GraphQLContext.reset``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from graphql_sync_dataloaders import SyncDataLoader

from accounts.authz import Principal
from accounts.graphql.context import get_context
from orchestration import selectors
from orchestration.engine import db_now

_ATTRIBUTE = "orchestration"


def _load_task_runs(keys: Sequence[tuple[Any, Any]]) -> list[Any]:
    """Keys are ``(workspace_id, flow_run_id)``; one query per workspace in the batch."""
    try:
        by_workspace: dict[Any, list[Any]] = defaultdict(list)
        for workspace_id, run_id in keys:
            by_workspace[workspace_id].append(run_id)
        found: dict[Any, list[Any]] = defaultdict(list)
        for workspace_id, run_ids in by_workspace.items():
            for task_run in selectors.task_runs_for(workspace_id, run_ids):
                found[task_run.flow_run_id].append(task_run)
        return [found.get(run_id, []) for _workspace_id, run_id in keys]
    except Exception as exc:  # becomes an error on the fields that asked, not the whole operation
        return [exc] * len(keys)


def _load_task_run_states(keys: Sequence[tuple[Any, Any]]) -> list[Any]:
    """Keys are ``(workspace_id, task_run_id)``; one query per workspace in the batch."""
    try:
        by_workspace: dict[Any, list[Any]] = defaultdict(list)
        for workspace_id, task_run_id in keys:
            by_workspace[workspace_id].append(task_run_id)
        found: dict[Any, list[Any]] = defaultdict(list)
        for workspace_id, task_run_ids in by_workspace.items():
            for state in selectors.task_run_states_for(workspace_id, task_run_ids):
                found[state.task_run_id].append(state)
        return [found.get(task_run_id, []) for _workspace_id, task_run_id in keys]
    except Exception as exc:  # as above: an error on the fields that asked
        return [exc] * len(keys)


class OrchestrationLoaders:
    def __init__(self) -> None:
        self.task_runs = SyncDataLoader(_load_task_runs)
        self.task_run_states = SyncDataLoader(_load_task_run_states)
        # Flow of flows, both directions, as the viewer may see the runs (principals below).
        self.parent_runs = SyncDataLoader(self._load_parent_runs)
        self.child_runs = SyncDataLoader(self._load_child_runs)
        self._now: datetime | None = None
        # The viewer's Principal per workspace id, set by the ``orchestration`` root field.
        self.principals: dict[Any, Principal] = {}
        self._live_label_sets: dict[Any, list[frozenset[str]]] = {}

    def _load_parent_runs(self, keys: Sequence[tuple[Any, Any]]) -> list[Any]:
        """Keys are ``(workspace_id, run_id)``; one query per workspace in the batch; a run the
        viewer may not see is None."""
        try:
            by_workspace: dict[Any, list[Any]] = defaultdict(list)
            for workspace_id, run_id in keys:
                by_workspace[workspace_id].append(run_id)
            found: dict[Any, Any] = {}
            for workspace_id, run_ids in by_workspace.items():
                found.update(selectors.visible_runs_by_id(self.principals[workspace_id], run_ids))
            return [found.get(run_id) for _workspace_id, run_id in keys]
        except Exception as exc:  # as above: an error on the fields that asked
            return [exc] * len(keys)

    def _load_child_runs(self, keys: Sequence[tuple[Any, Any, int]]) -> list[Any]:
        """Keys are ``(workspace_id, parent_run_id, first)``; one query per workspace and ``first``."""
        try:
            groups: dict[tuple[Any, int], list[Any]] = defaultdict(list)
            for workspace_id, run_id, first in keys:
                groups[(workspace_id, first)].append(run_id)
            found: dict[tuple[Any, Any, int], list[Any]] = {}
            for (workspace_id, first), run_ids in groups.items():
                children = selectors.visible_child_runs(self.principals[workspace_id], run_ids, first)
                for run_id in run_ids:
                    found[(workspace_id, run_id, first)] = children.get(run_id, [])
            return [found[key] for key in keys]
        except Exception as exc:  # as above: an error on the fields that asked
            return [exc] * len(keys)

    def live_label_sets(self, workspace_id: Any) -> list[frozenset[str]]:
        """The workspace's healthy agents' label sets, read once per request (which runs no agent takes)."""
        found = self._live_label_sets.get(workspace_id)
        if found is None:
            found = self._live_label_sets[workspace_id] = selectors.live_label_sets(workspace_id, self.now())
        return found

    def now(self) -> datetime:
        """The database clock, read once per request (agent liveness)."""
        if self._now is None:
            self._now = db_now()
        return self._now


def loaders(info: Any) -> OrchestrationLoaders:
    holder = get_context(info).loaders
    found = getattr(holder, _ATTRIBUTE, None)
    if found is None:
        found = OrchestrationLoaders()
        setattr(holder, _ATTRIBUTE, found)
    return found
