"""Creation rules: what every new flow run must pass before it is inserted, whoever creates it
(the API, the web app's quick run, bulk submit, the scheduler). :mod:`.creation` applies
:data:`CREATION_RULES` around every insert, so no caller checks a quota on its own.

A rule has ``before_insert(workspace_id, runs, partial)``, which returns the runs that may be
created (all of them, or with ``partial`` a leading share; or it raises), and
``after_insert(workspace_id, allowed, inserted)``, which settles its bookkeeping once the insert
has skipped the runs that lost a unique conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from billing.quotas import give_back_runs, take_runs
from orchestration.models import FlowRun


class EnforceRunQuota:
    """Count new runs against the workspace's billing period and refuse those past its plan's
    limit with 402 ``quota_exceeded`` (billing/quotas.py). A call creates all its runs or none;
    the scheduler (``partial``) creates the earliest ones that fit and leaves the rest for the
    next period."""

    def before_insert(self, workspace_id: Any, runs: Sequence[FlowRun], partial: bool) -> list[FlowRun]:
        granted = take_runs(workspace_id, len(runs), partial=partial)
        if granted == len(runs):
            return list(runs)
        return sorted(runs, key=lambda r: (r.scheduled_start is None, r.scheduled_start))[:granted]

    def after_insert(self, workspace_id: Any, allowed: Sequence[FlowRun], inserted: int) -> None:
        give_back_runs(workspace_id, len(allowed) - inserted)


CREATION_RULES = (EnforceRunQuota(),)


def runs_allowed(runs: Sequence[FlowRun], *, partial: bool) -> list[FlowRun]:
    """The runs every creation rule allows, per workspace (a scheduler batch spans several)."""
    by_workspace: dict[Any, list[FlowRun]] = {}
    for run in runs:
        by_workspace.setdefault(run.workspace_id, []).append(run)
    allowed: list[FlowRun] = []
    for workspace_id, theirs in by_workspace.items():
        for rule in CREATION_RULES:
            theirs = rule.before_insert(workspace_id, theirs, partial)
        allowed.extend(theirs)
    if len(allowed) == len(runs):
        return list(runs)  # keep the caller's order
    keep = {r.pk for r in allowed}
    return [r for r in runs if r.pk in keep]


def settle(allowed: Sequence[FlowRun], inserted: Sequence[FlowRun]) -> None:
    """After the insert: the rules' bookkeeping for runs a unique conflict skipped."""
    if len(inserted) == len(allowed):
        return
    counts: dict[Any, tuple[list[FlowRun], int]] = {}
    done = {r.pk for r in inserted}
    for run in allowed:
        theirs, n = counts.get(run.workspace_id, ([], 0))
        theirs.append(run)
        counts[run.workspace_id] = (theirs, n + (run.pk in done))
    for workspace_id, (theirs, n) in counts.items():
        for rule in CREATION_RULES:
            rule.after_insert(workspace_id, theirs, n)


__all__ = ["CREATION_RULES", "EnforceRunQuota", "runs_allowed", "settle"]
