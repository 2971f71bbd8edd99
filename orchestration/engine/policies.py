"""Policies: ordered lists of rules. ``apply`` enters, in order, each rule whose FROM/TO states
match the proposal as it stands (a rule may rewrite it, e.g. FAILED → AwaitingRetry, and the rules
after it see the rewrite); the first refusal stops the walk and the rules already entered clean up.
``after`` runs the entered rules' after-hooks once the engine has recorded the state.

- :class:`CorePolicy` — flow runs (agents, people, the late-run marker).
- :class:`TaskPolicy` — task runs.
- :class:`ReaperPolicy` — the lost-run reaper: only PENDING/RUNNING/CANCELLING → CRASHED.
- :class:`ForcePolicy` — a person's "mark as": any state, bookkeeping still done.
"""

from __future__ import annotations

from typing import ClassVar

from orchestration.models import StateType

from .core import Context, SetStateStatus
from .rules import (
    ACTIVE,
    ALL_STATES,
    TERMINAL,
    UNIVERSAL_TRANSFORMS,
    AcceptRepeatedRunningUnchanged,
    CancellationWinsOverLateReports,
    CountReportedTaskRetries,
    EndOpenTaskRunsWithTheirFlowRun,
    PreventTaskStartInEndedFlowRun,
    PreventTransitionsFromTerminalStates,
    RejectStaleAttempt,
    ReleaseSlotsOfEndedFlowRun,
    ReleaseTaskConcurrencySlots,
    RequireTagSlotsToFinish,
    RetryCrashedFlowRuns,
    RetryFailedTaskRuns,
    Rule,
    SecureFlowConcurrencySlot,
    SecurePendingToRunningByClaimingAgent,
    SecureTaskConcurrencySlots,
    StartTaskRunInNewFlowRunAttempt,
)


class BasePolicy:
    RULES: ClassVar[tuple[type[Rule], ...]] = ()

    def __init__(self) -> None:
        self.rules = [rule() for rule in self.RULES]

    def apply(self, context: Context) -> None:
        entered: list[Rule] = []
        for rule in self.rules:
            if not rule.applies(context):
                continue
            entered.append(rule)
            rule.before_transition(context)
            # A refusal stops the walk; so does an ACCEPT with nothing to record (nothing changes).
            if context.status is not SetStateStatus.ACCEPT or context.unchanged:
                for done in reversed(entered):
                    done.cleanup(context)
                context.undo()
                context.entered = []
                return
        context.entered = entered

    def after(self, context: Context) -> None:
        for rule in context.entered:
            rule.after_transition(context)


class CorePolicy(BasePolicy):
    RULES = (
        RejectStaleAttempt,
        PreventTransitionsFromTerminalStates,
        CancellationWinsOverLateReports,
        SecurePendingToRunningByClaimingAgent,
        RetryCrashedFlowRuns,
        SecureFlowConcurrencySlot,
        ReleaseSlotsOfEndedFlowRun,
        EndOpenTaskRunsWithTheirFlowRun,
        *UNIVERSAL_TRANSFORMS,
    )


class TaskPolicy(BasePolicy):
    RULES = (
        StartTaskRunInNewFlowRunAttempt,  # before the terminal-state guard: a new attempt starts over
        PreventTransitionsFromTerminalStates,
        AcceptRepeatedRunningUnchanged,
        RequireTagSlotsToFinish,  # before a FAILED is rewritten into a retry
        RetryFailedTaskRuns,
        CountReportedTaskRetries,
        PreventTaskStartInEndedFlowRun,
        SecureTaskConcurrencySlots,
        ReleaseTaskConcurrencySlots,
        *UNIVERSAL_TRANSFORMS,
    )


class OnlyCrashActiveRuns(Rule):
    """The reaper may only crash a run that holds (or held) a claim: PENDING, RUNNING, CANCELLING."""

    def applies(self, context: Context) -> bool:
        return not (context.from_type in ACTIVE and context.to_type == StateType.CRASHED)

    def before_transition(self, context: Context) -> None:
        context.reject(
            f"The reaper only moves PENDING, RUNNING or CANCELLING runs to CRASHED, not "
            f"{context.from_type} to {context.to_type}.",
            code="not_reapable",
        )


class ReaperPolicy(BasePolicy):
    RULES = (
        OnlyCrashActiveRuns,
        RetryCrashedFlowRuns,
        ReleaseSlotsOfEndedFlowRun,
        EndOpenTaskRunsWithTheirFlowRun,
        ReleaseTaskConcurrencySlots,
        *UNIVERSAL_TRANSFORMS,
    )


class ReleaseSlotsOnForcedExit(ReleaseSlotsOfEndedFlowRun):
    """A forced flow-run state that leaves the active states releases its task runs' slots."""

    FROM_STATES = ALL_STATES
    TO_STATES = ALL_STATES - ACTIVE


class EndOpenTaskRunsOnForcedEnd(EndOpenTaskRunsWithTheirFlowRun):
    """A flow run forced into a terminal state ends its open task runs too (a forced SCHEDULED does
    not: no new attempt starts, and its process may still report them)."""

    FROM_STATES = ALL_STATES
    TO_STATES = TERMINAL


class ForcePolicy(BasePolicy):
    RULES = (
        ReleaseSlotsOnForcedExit,
        EndOpenTaskRunsOnForcedEnd,
        ReleaseTaskConcurrencySlots,
        *UNIVERSAL_TRANSFORMS,
    )


__all__ = ["BasePolicy", "CorePolicy", "ForcePolicy", "OnlyCrashActiveRuns", "ReaperPolicy", "TaskPolicy"]
