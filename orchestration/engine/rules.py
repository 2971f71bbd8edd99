"""Orchestration rules: small classes, each named as an imperative, that look at one proposed
transition (the locked run, its current state, the proposal) and accept it, reject it, make it
wait, abort it or rewrite it (Prefect's ``orchestration/rules.py`` and ``core_policy.py``).

A rule declares the transitions it governs with ``FROM_STATES`` / ``TO_STATES`` and has three
hooks: ``before_transition`` (decide; may change the proposal or the run's bookkeeping fields
through ``context.set``), ``after_transition`` (runs once the new state is recorded, in the same
transaction) and ``cleanup`` (undo what ``before_transition`` did when a later rule refused the
proposal). Policies (policies.py) list rules in order; each is unit-tested alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, ClassVar

from accounts.models import Role
from orchestration.models import STATE_TYPES, TERMINAL_STATES, FlowRun, StateType, TaskRun

from .core import (
    Context,
    ProposedState,
    SetStateStatus,
    close_open_task_runs,
    share_lock_flow_run,
    stale_attempt_reason,
)

ALL_STATES: frozenset[str] = STATE_TYPES
TERMINAL: frozenset[str] = frozenset(str(s) for s in TERMINAL_STATES)
ACTIVE: frozenset[str] = frozenset({StateType.PENDING, StateType.RUNNING, StateType.CANCELLING})

WAIT_SECONDS = 10  # what a WAIT tells the caller to wait before proposing again


def _states(states: Iterable[str]) -> frozenset[str]:
    return frozenset(str(s) for s in states)


class Rule:
    """Base class: governs the transitions FROM_STATES → TO_STATES (both default to every state)."""

    FROM_STATES: ClassVar[frozenset[str]] = ALL_STATES
    TO_STATES: ClassVar[frozenset[str]] = ALL_STATES
    # Flow runs, task runs or both.
    RUN_KINDS: ClassVar[tuple[type, ...]] = (FlowRun, TaskRun)

    def applies(self, context: Context) -> bool:
        return (
            isinstance(context.run, self.RUN_KINDS)
            and context.from_type in self.FROM_STATES
            and context.to_type in self.TO_STATES
        )

    def before_transition(self, context: Context) -> None:
        return None

    def after_transition(self, context: Context) -> None:
        return None

    def cleanup(self, context: Context) -> None:
        return None


def is_restart(context: Context) -> bool:
    """An explicit restart or retry from the run service (never an agent's own report)."""
    actor = context.actor
    return (
        context.proposed.details.get("restart") is True
        and context.to_type in (StateType.SCHEDULED, StateType.PENDING)
        and (actor is None or actor.role != Role.AGENT)
    )


# --- the state machine's guards -------------------------------------------------------------------


def starts_new_flow_run_attempt(context: Context) -> bool:
    """Whether :class:`StartTaskRunInNewFlowRunAttempt` started this task run over (the report is
    the first of a newer flow-run attempt than the one that last wrote it)."""
    return isinstance(context.run, TaskRun) and "flow_run_attempt" in context.originals


class StartTaskRunInNewFlowRunAttempt(Rule):
    """Task runs are one row per (flow run, task, map index) across the flow run's attempts. The
    first report of a newer flow-run attempt (``context.attempt``, checked against the flow run by
    the caller) starts the task run over, whatever state the earlier attempt left it in (ended with
    its attempt, or COMPLETED with a result the retry cannot load): its own retries count from 1
    again and its start and end times are cleared."""

    RUN_KINDS = (TaskRun,)

    def applies(self, context: Context) -> bool:
        run = context.run
        return (super().applies(context) and context.attempt is not None
                and isinstance(run, TaskRun) and context.attempt > run.flow_run_attempt)

    def before_transition(self, context: Context) -> None:
        context.set(flow_run_attempt=context.attempt, attempt=1, start_time=None, end_time=None)


class AcceptRepeatedRunningUnchanged(Rule):
    """A task run already RUNNING in this flow-run attempt that is proposed RUNNING again (a
    re-sent report under a new idempotency key) is answered ACCEPT — it is running and holds its
    slots — with nothing recorded: no second RUNNING row, no new version."""

    FROM_STATES = _states([StateType.RUNNING])
    TO_STATES = _states([StateType.RUNNING])
    RUN_KINDS = (TaskRun,)

    def applies(self, context: Context) -> bool:
        return super().applies(context) and not starts_new_flow_run_attempt(context)

    def before_transition(self, context: Context) -> None:
        context.accept_unchanged("The task run is already RUNNING.", code="already_running")


class RejectStaleAttempt(Rule):
    """D2: a report carries the attempt it belongs to; a report from another attempt (an agent that
    lost its lease and whose run was retried) is aborted, changes nothing, and tells the agent to
    stop (409)."""

    RUN_KINDS = (FlowRun,)

    def before_transition(self, context: Context) -> None:
        if context.attempt is not None and context.attempt != context.run.attempt:
            context.abort(
                stale_attempt_reason(context.attempt, context.run.attempt),
                code="stale_attempt",
                current_attempt=context.run.attempt,
            )


class PreventTransitionsFromTerminalStates(Rule):
    """Terminal states absorb (D3): once COMPLETED, FAILED, CANCELLED or CRASHED a run stays so,
    unless the run service proposes an explicit restart."""

    FROM_STATES = TERMINAL

    def before_transition(self, context: Context) -> None:
        if is_restart(context) or starts_new_flow_run_attempt(context):
            return
        context.reject(
            f"The run is already {context.from_type}; a finished run only changes state by a restart.",
            code="terminal_state",
        )


class CancellationWinsOverLateReports(Rule):
    """A CANCELLING run ends only as CANCELLED (the agent confirms), CRASHED or FAILED: a late
    RUNNING or COMPLETED report from the agent does not undo the cancellation."""

    FROM_STATES = _states([StateType.CANCELLING])
    TO_STATES = ALL_STATES - _states([StateType.CANCELLED, StateType.CRASHED, StateType.FAILED])

    def before_transition(self, context: Context) -> None:
        context.reject(
            f"The run is being cancelled; {context.to_type} is not accepted (report CANCELLED).",
            code="cancelling",
        )


class SecurePendingToRunningByClaimingAgent(Rule):
    """Only the agent holding the claim (``run.agent``, owned by the actor's service account) may
    start a claimed run. Platform services (actor ``None``) are trusted."""

    FROM_STATES = _states([StateType.PENDING])
    TO_STATES = _states([StateType.RUNNING])
    RUN_KINDS = (FlowRun,)

    def before_transition(self, context: Context) -> None:
        from orchestration.models import Agent

        actor = context.actor
        if actor is None:
            return
        run = context.run
        assert isinstance(run, FlowRun)
        if run.agent_id is None:
            context.reject("The run is not claimed by an agent; claim it before starting it.", code="not_claimed")
            return
        if FlowRun.agent.is_cached(run):  # the engine's lock query joins the agent
            owner = run.agent.service_account_id if run.agent is not None else None
        else:
            owner = (
                Agent.objects.for_workspace(run.workspace_id)
                .filter(pk=run.agent_id)
                .values_list("service_account_id", flat=True)
                .first()
            )
        if actor.service_account is None or owner != actor.service_account.pk:
            context.reject("Only the agent that claimed this run may start it.", code="not_claim_holder")


# --- retries ----------------------------------------------------------------------------------------


def version_tasks(context: Context) -> dict[str, dict[str, Any]]:
    """The task specs of the run's flow version, by key (memoised on the context)."""
    tasks = context.cache.get("version_tasks")
    if tasks is None:
        from orchestration.models import FlowVersion

        run = context.run
        assert isinstance(run, TaskRun)
        specs = (
            FlowVersion.objects.for_workspace(run.workspace_id)
            .filter(runs__id=run.flow_run_id)
            .values_list("tasks", flat=True)
            .first()
        )
        tasks = {t.get("key"): t for t in specs or [] if isinstance(t, dict)}
        context.cache["version_tasks"] = tasks
    return tasks


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return default


class RetryFailedTaskRuns(Rule):
    """A task run that fails while attempts remain (the task's ``retries``) is rescheduled:
    SCHEDULED "AwaitingRetry" at now + ``retry_delay_seconds``, attempt + 1."""

    FROM_STATES = ALL_STATES - TERMINAL
    TO_STATES = _states([StateType.FAILED])
    RUN_KINDS = (TaskRun,)

    def before_transition(self, context: Context) -> None:
        run = context.run
        assert isinstance(run, TaskRun)
        spec = version_tasks(context).get(run.task_key, {})
        retries = _as_int(spec.get("retries"))
        if run.attempt > retries:
            return
        delay = _as_int(spec.get("retry_delay_seconds"))
        at = context.clock() + dt.timedelta(seconds=delay)
        failed = context.proposed
        context.proposed = ProposedState(
            type=StateType.SCHEDULED,
            name="AwaitingRetry",
            message=failed.message,
            details={"scheduled_time": at.isoformat(), "retry_of_attempt": run.attempt},
        )
        context.set(attempt=run.attempt + 1)
        context.details.update(rewritten="AwaitingRetry", scheduled_time=at.isoformat())


class CountReportedTaskRetries(Rule):
    """The SDK retries a failed task itself (Prefect 1's TaskRunner) and reports RUNNING →
    SCHEDULED "Retrying": that is a new attempt too, so the task's ``retries`` are counted once,
    whoever decided the retry, and its final FAILED is not rescheduled again by the server."""

    FROM_STATES = _states([StateType.RUNNING])
    TO_STATES = _states([StateType.SCHEDULED])
    RUN_KINDS = (TaskRun,)

    def before_transition(self, context: Context) -> None:
        run = context.run
        assert isinstance(run, TaskRun)
        if context.details.get("rewritten"):
            return  # the server's own retry (RetryFailedTaskRuns) already counted this attempt
        context.set(attempt=run.attempt + 1)


class RetryCrashedFlowRuns(Rule):
    """D5: a crashed flow run (lost agent or process) is retried while attempts remain —
    SCHEDULED "AwaitingRetry", attempt + 1, the claim cleared, due now — and FAILED with the reason
    once ``flow.max_crash_retries`` extra attempts are spent. A run whose cancellation was
    requested is not retried."""

    FROM_STATES = ALL_STATES - TERMINAL
    TO_STATES = _states([StateType.CRASHED])
    RUN_KINDS = (FlowRun,)

    def before_transition(self, context: Context) -> None:
        run = context.run
        assert isinstance(run, FlowRun)
        if run.cancellation_requested:
            return
        crashed = context.proposed
        reason = crashed.message or "The run crashed."
        if run.attempt <= run.flow.max_crash_retries:
            now = context.clock()
            context.proposed = ProposedState(
                type=StateType.SCHEDULED,
                name="AwaitingRetry",
                message=f"Crashed on attempt {run.attempt}: {reason}",
                details={**crashed.details, "crashed": reason, "retry_of_attempt": run.attempt,
                         "scheduled_time": now.isoformat()},
            )
            context.set(attempt=run.attempt + 1, agent_id=None, lease_expires_at=None, scheduled_start=now)
            context.details.update(rewritten="AwaitingRetry")
        else:
            context.proposed = ProposedState(
                type=StateType.FAILED,
                name="Failed",
                message=f"Crashed on attempt {run.attempt} with no crash retries left: {reason}",
                details={**crashed.details, "crashed": reason},
            )
            context.details.update(rewritten="Failed")


# --- concurrency -------------------------------------------------------------------------------------


class SecureFlowConcurrencySlot(Rule):
    """At most ``flow.concurrency_limit`` runs of a flow RUNNING (or CANCELLING) at once. The flow
    row is locked while counting, so two runs cannot both take the last slot."""

    FROM_STATES = ALL_STATES - _states([StateType.RUNNING, StateType.CANCELLING])
    TO_STATES = _states([StateType.RUNNING])
    RUN_KINDS = (FlowRun,)

    def before_transition(self, context: Context) -> None:
        from orchestration.services.concurrency import flow_slot_available

        run = context.run
        assert isinstance(run, FlowRun)
        if run.flow.concurrency_limit is None:
            return
        if not flow_slot_available(run):
            context.wait(
                f"The flow's concurrency limit ({run.flow.concurrency_limit} running) is reached; "
                f"try again in {WAIT_SECONDS} s.",
                code="flow_concurrency_limit",
                retry_after_seconds=WAIT_SECONDS,
            )


class SecureTaskConcurrencySlots(Rule):
    """Tag limits: a task run carrying a limited tag takes one slot of each such limit on entering
    RUNNING, or waits when one is full. The parent of a mapped task runs no code (its children
    do, and take the slots): it takes none, so it can never starve its own children."""

    FROM_STATES = ALL_STATES - _states([StateType.RUNNING])
    TO_STATES = _states([StateType.RUNNING])
    RUN_KINDS = (TaskRun,)

    def before_transition(self, context: Context) -> None:
        from orchestration.services.concurrency import (
            TAG_WAIT_SECONDS,
            acquire_task_slots,
            is_mapped_parent,
            limits_for,
        )

        run = context.run
        assert isinstance(run, TaskRun)
        limits = limits_for(context, run.tags)
        if not limits or is_mapped_parent(run, version_tasks(context)):
            return
        full = acquire_task_slots(run, limits)
        if full is not None:
            context.wait(
                f"The concurrency limit of tag '{full.tag}' ({full.limit} running) is reached; "
                f"try again in {TAG_WAIT_SECONDS} s.",
                code="tag_concurrency_limit",
                tag=full.tag,
                retry_after_seconds=TAG_WAIT_SECONDS,
            )
        else:
            context.cache.setdefault("acquired", set()).add(run.pk)

    def cleanup(self, context: Context) -> None:
        from orchestration.services.concurrency import release_task_slots

        if context.run.pk in context.cache.get("acquired", set()):
            release_task_slots(context.run.workspace_id, [context.run.pk])


class RequireTagSlotsToFinish(Rule):
    """A task run with a limited tag runs its code only while it holds the tag's slots (RUNNING,
    accepted by :class:`SecureTaskConcurrencySlots`): COMPLETED or FAILED straight from any other
    state means the code ran without a slot, and is refused. States that never run code are let
    through: ``Cached``, ``Skipped``, ``TriggerFailed`` and a mapped task's parent (``Mapped``, or
    its failure to map)."""

    FROM_STATES = ALL_STATES - _states([StateType.RUNNING])  # a new attempt may start over from one that ended
    TO_STATES = _states([StateType.COMPLETED, StateType.FAILED])
    RUN_KINDS = (TaskRun,)
    NO_CODE_STATE_NAMES: ClassVar[frozenset[str]] = frozenset({"Cached", "Skipped", "TriggerFailed", "Mapped"})

    def before_transition(self, context: Context) -> None:
        from orchestration.services.concurrency import is_mapped_parent, limits_for

        run = context.run
        assert isinstance(run, TaskRun)
        if context.proposed.name in self.NO_CODE_STATE_NAMES:
            return
        limits = limits_for(context, run.tags)
        if not limits or is_mapped_parent(run, version_tasks(context)):
            return
        tags = ", ".join(f"'{row.tag}'" for row in limits)
        context.reject(
            f"This task run never held a concurrency slot of tag {tags} (it is {context.from_type}, not "
            f"RUNNING), so it may not be {context.to_type}: propose RUNNING and run the task only once "
            "it is accepted.",
            code="no_concurrency_slot",
            tags=[row.tag for row in limits],
        )


def flow_run_state(context: Context) -> str:
    """The state of a task run's flow run, share-locked until the transaction ends (so the flow run
    cannot end, and release its slots, while a task of it takes one). Memoised on the context (a
    batch fills it when it locks the flow run)."""
    state = context.cache.get("flow_run_state")
    if state is None:
        run = context.run
        assert isinstance(run, TaskRun)
        row = share_lock_flow_run(run.workspace_id, run.flow_run_id, "state_type")
        state = row[0] if row else None
        context.cache["flow_run_state"] = state
    return str(state)


class PreventTaskStartInEndedFlowRun(Rule):
    """A task run cannot start once its flow run is finished or being cancelled (a late report)."""

    FROM_STATES = ALL_STATES - _states([StateType.RUNNING])
    TO_STATES = _states([StateType.RUNNING])
    RUN_KINDS = (TaskRun,)

    def before_transition(self, context: Context) -> None:
        state = flow_run_state(context)
        if state in TERMINAL or state == StateType.CANCELLING:
            context.reject(f"The flow run is {state}; its task runs cannot start.", code="flow_run_ended")


class ReleaseTaskConcurrencySlots(Rule):
    """A task run leaving RUNNING (for any state: done, failed, crashed, retried) gives its slots
    back in the same transaction."""

    FROM_STATES = _states([StateType.RUNNING])
    TO_STATES = ALL_STATES - _states([StateType.RUNNING])
    RUN_KINDS = (TaskRun,)

    def after_transition(self, context: Context) -> None:
        from orchestration.services.concurrency import limits_for, release_task_slots

        run = context.run
        assert isinstance(run, TaskRun)
        if limits_for(context, run.tags):
            release_task_slots(run.workspace_id, [run.pk])


class ReleaseSlotsOfEndedFlowRun(Rule):
    """A flow run that ends (terminal, or crashed and rescheduled) releases every tag slot its task
    runs still hold, with the transition (:meth:`Context.write`): a dead agent never leaks slots (D5)."""

    FROM_STATES = ALL_STATES - TERMINAL
    TO_STATES = TERMINAL | _states([StateType.SCHEDULED])
    RUN_KINDS = (FlowRun,)

    def after_transition(self, context: Context) -> None:
        from orchestration.services.concurrency import flow_run_slots_release

        context.write(flow_run_slots_release(context.run.workspace_id, context.run.pk))


class EndOpenTaskRunsWithTheirFlowRun(Rule):
    """A flow run that ends (terminal), or whose attempt ends (crashed and rescheduled), ends its
    task runs that are still open (PENDING, RUNNING, SCHEDULED…) in the same transaction — nobody
    will report them again, and their durations must not keep counting: CRASHED when the flow run
    crashed, CANCELLED otherwise. One statement for any number of task runs
    (:func:`~orchestration.engine.core.close_open_task_runs`); their tag slots go with the flow
    run's (:class:`ReleaseSlotsOfEndedFlowRun`, in every policy that has this rule)."""

    FROM_STATES = ALL_STATES - TERMINAL
    TO_STATES = TERMINAL | _states([StateType.SCHEDULED])
    RUN_KINDS = (FlowRun,)

    def applies(self, context: Context) -> bool:
        # SCHEDULED → SCHEDULED (a late run, a restarted run whose task runs were reset) ends nothing.
        return super().applies(context) and not (
            context.to_type == StateType.SCHEDULED and context.from_type == StateType.SCHEDULED)

    def after_transition(self, context: Context) -> None:
        run = context.run
        assert isinstance(run, FlowRun)
        attempt = context.originals.get("attempt", run.attempt)
        crashed = context.proposed.details.get("crashed") if context.proposed.details else None
        if context.to_type == StateType.CRASHED or crashed:
            state = ProposedState(
                type=StateType.CRASHED, name="Crashed",
                message=f"Its flow run crashed on attempt {attempt}: {crashed or context.proposed.message}",
                details={"ended_with_flow_run": context.to_type, "flow_run_attempt": attempt},
            )
        else:
            ending = "was cancelled" if context.to_type == StateType.CANCELLED else (
                f"ended {context.to_type}" if context.to_type in TERMINAL else f"left attempt {attempt}")
            state = ProposedState(
                type=StateType.CANCELLED, name="Cancelled",
                message=f"Its flow run {ending} before this task run finished.",
                details={"ended_with_flow_run": context.to_type, "flow_run_attempt": attempt},
            )
        close_open_task_runs(context, flow_run=run, state=state, at=context.clock())


# --- universal transforms (bookkeeping; never refuse) ------------------------------------------------


class PrepareRestart(Rule):
    """An explicit restart starts a fresh attempt: the claim, lease, end time and cancellation
    request are cleared and the run is due now (flow runs); a task run's retries start over."""

    FROM_STATES = TERMINAL

    def applies(self, context: Context) -> bool:
        return super().applies(context) and is_restart(context)

    def before_transition(self, context: Context) -> None:
        run = context.run
        if isinstance(run, FlowRun):
            context.set(attempt=run.attempt + 1, agent_id=None, lease_expires_at=None, end_time=None,
                        cancellation_requested=False, scheduled_start=context.clock())
        else:
            context.set(attempt=1, end_time=None)


class SetStartTimeOnFirstRunning(Rule):
    TO_STATES = _states([StateType.RUNNING])

    def before_transition(self, context: Context) -> None:
        if context.run.start_time is None:
            context.set(start_time=context.clock())


class IncrementRunCount(Rule):
    FROM_STATES = ALL_STATES - _states([StateType.RUNNING])
    TO_STATES = _states([StateType.RUNNING])
    RUN_KINDS = (FlowRun,)

    def before_transition(self, context: Context) -> None:
        run = context.run
        assert isinstance(run, FlowRun)
        context.set(run_count=run.run_count + 1)


class SetEndTime(Rule):
    """End time on entering a terminal state; cleared when a run leaves one."""

    def applies(self, context: Context) -> bool:
        return context.to_type in TERMINAL or (context.from_type in TERMINAL and context.run.end_time is not None)

    def before_transition(self, context: Context) -> None:
        context.set(end_time=context.clock() if context.to_type in TERMINAL else None)


class ClearLease(Rule):
    """A finished or rescheduled flow run holds no lease (the reaper ignores it)."""

    TO_STATES = TERMINAL | _states([StateType.SCHEDULED])
    RUN_KINDS = (FlowRun,)

    def applies(self, context: Context) -> bool:
        return super().applies(context) and getattr(context.run, "lease_expires_at", None) is not None

    def before_transition(self, context: Context) -> None:
        context.set(lease_expires_at=None)


UNIVERSAL_TRANSFORMS: tuple[type[Rule], ...] = (
    PrepareRestart,
    SetStartTimeOnFirstRunning,
    IncrementRunCount,
    SetEndTime,
    ClearLease,
)

__all__ = [
    "ACTIVE",
    "ALL_STATES",
    "TERMINAL",
    "UNIVERSAL_TRANSFORMS",
    "AcceptRepeatedRunningUnchanged",
    "CancellationWinsOverLateReports",
    "ClearLease",
    "CountReportedTaskRetries",
    "EndOpenTaskRunsWithTheirFlowRun",
    "IncrementRunCount",
    "PrepareRestart",
    "PreventTaskStartInEndedFlowRun",
    "PreventTransitionsFromTerminalStates",
    "RejectStaleAttempt",
    "ReleaseSlotsOfEndedFlowRun",
    "ReleaseTaskConcurrencySlots",
    "RequireTagSlotsToFinish",
    "RetryCrashedFlowRuns",
    "RetryFailedTaskRuns",
    "Rule",
    "SecureFlowConcurrencySlot",
    "SecurePendingToRunningByClaimingAgent",
    "SecureTaskConcurrencySlots",
    "SetEndTime",
    "SetStartTimeOnFirstRunning",
    "SetStateStatus",
    "StartTaskRunInNewFlowRunAttempt",
]
