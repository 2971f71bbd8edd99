"""Creation rules: what every new flow run must pass, whoever creates it (the API, the web app's
quick run, bulk submit, the scheduler). :mod:`.creation` applies :data:`CREATION_RULES` to every
insert, so no caller checks a quota on its own.

A rule has two hooks:

- ``check_inserted(workspace_id, runs)``: the runs were just inserted in the caller's transaction;
  raise to refuse them (the caller's transaction rolls back, nothing stays written). Checking after
  the insert keeps a rule's row locks (the run meter's) for the shortest time: until the commit
  that follows.
- ``trim(workspace_id, runs)`` / ``untrim(workspace_id, kept, inserted)``: for the scheduler, which
  creates what fits instead of failing: before the insert, the share of ``runs`` allowed; after it,
  settle the bookkeeping for the runs a unique conflict skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from billing.quotas import give_back_runs, take_runs
from orchestration.models import FlowRun


class EnforceRunQuota:
    """Count new runs against the workspace's billing period and refuse those past its plan's
    limit with 402 ``quota_exceeded`` (billing/quotas.py). A call creates all its runs or none;
    the scheduler creates the earliest ones that fit and leaves the rest for the next period."""

    def check_inserted(self, workspace_id: Any, runs: Sequence[FlowRun]) -> None:
        take_runs(workspace_id, len(runs))

    def trim(self, workspace_id: Any, runs: Sequence[FlowRun]) -> list[FlowRun]:
        granted = take_runs(workspace_id, len(runs), partial=True)
        if granted == len(runs):
            return list(runs)
        return sorted(runs, key=lambda r: (r.scheduled_start is None, r.scheduled_start))[:granted]

    def untrim(self, workspace_id: Any, kept: Sequence[FlowRun], inserted: int) -> None:
        give_back_runs(workspace_id, len(kept) - inserted)


CREATION_RULES = (EnforceRunQuota(),)


def _by_workspace(runs: Sequence[FlowRun]) -> dict[Any, list[FlowRun]]:
    grouped: dict[Any, list[FlowRun]] = {}
    for run in runs:
        grouped.setdefault(run.workspace_id, []).append(run)
    return grouped


def check_inserted(runs: Sequence[FlowRun]) -> None:
    """Every rule's verdict on runs just inserted; raises to refuse them."""
    for workspace_id, theirs in _by_workspace(runs).items():
        for rule in CREATION_RULES:
            rule.check_inserted(workspace_id, theirs)


def trim(runs: Sequence[FlowRun]) -> list[FlowRun]:
    """The share of ``runs`` every rule allows, per workspace (a scheduler batch spans several),
    in the caller's order."""
    allowed: list[FlowRun] = []
    for workspace_id, theirs in _by_workspace(runs).items():
        for rule in CREATION_RULES:
            theirs = rule.trim(workspace_id, theirs)
        allowed.extend(theirs)
    if len(allowed) == len(runs):
        return list(runs)
    keep = {r.pk for r in allowed}
    return [r for r in runs if r.pk in keep]


def untrim(kept: Sequence[FlowRun], inserted: Sequence[FlowRun]) -> None:
    """After a trimmed insert: the rules' bookkeeping for runs a unique conflict skipped."""
    if len(inserted) == len(kept):
        return
    done = {r.pk for r in inserted}
    for workspace_id, theirs in _by_workspace(kept).items():
        for rule in CREATION_RULES:
            rule.untrim(workspace_id, theirs, sum(r.pk in done for r in theirs))


__all__ = ["CREATION_RULES", "EnforceRunQuota", "check_inserted", "trim", "untrim"]
