"""Proposing a state for a run: lock the run, let the policy's rules accept, reject or rewrite the
proposal, then record it — all in one transaction (the shape of
Prefect's orchestration rules: a policy is an ordered list of rules, each seeing the proposal).

This module is the skeleton: it owns locking, the expected-version check (D3), history rows, the
denormalised current state and the event. The rules and policies (terminal states absorb, claims
are exclusive, retries, cancellation wins, concurrency slots…) plug in through ``policy``.

The steps are functions that every entry point calls — :func:`flow_run_set_state`,
:func:`task_run_set_state` and the batch of task-run reports (:mod:`.batch`,
:func:`~orchestration.engine.batch.task_run_set_states`):

- lock: :func:`lock_task_runs` (``FOR UPDATE``) and :func:`share_lock_flow_run` (``FOR SHARE``);
- the expected-version check: :func:`check_expected_version`;
- the policy's decision: :func:`decide`;
- the history row and the run's new state: :func:`accept` (then written by :func:`_record`, or in
  bulk by the batch); what the rules' after hooks add to a flow run's transition (releasing slots,
  ending task runs: :class:`Write`) goes with it, in one statement on PostgreSQL;
- the events: ``orchestration.events`` (one builder per event type).

**A stale expected version has one answer** (D3), from every entry point: the proposal is refused
with 409 ``Conflict`` code ``stale_state_version`` (``details``: the run's current ``state_type``,
``state_name``, ``state_version``; a batch adds the report's ``task_key`` and ``map_index``), and
nothing of the call is applied — a batch is refused as a whole, like a stale attempt. It is never an
ABORT result: ABORT means "this attempt is over" (a stale attempt, a run no longer held).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from accounts.authz import NotFound, Principal
from core.errors import Conflict
from core.rows import Columns, new
from core.transactions import in_transaction
from orchestration import events
from orchestration.alerts import triggers as alert_triggers
from orchestration.models import (
    STATE_TYPES,
    TERMINAL_STATES,
    Agent,
    Flow,
    FlowRun,
    FlowRunState,
    FlowVersion,
    StateType,
    TaskRun,
    TaskRunState,
)
from orchestration.services import live


def stale_attempt_reason(attempt: int | None, current: int) -> str:
    """The one wording of the stale-attempt refusal (D2, code ``stale_attempt``). The state rule,
    the flow-run heartbeat and task-run reports all answer with it, so an agent (or a test) reads
    the same sentence whichever of its racing requests is refused first."""
    return f"This report is for attempt {attempt}, but the run is on attempt {current}; stop this attempt."


def run_not_held_reason(state_name: str) -> str:
    """The one wording of "this run has ended or is no longer held" (code ``run_not_held``), for
    the heartbeat and task-run reports alike."""
    return f"This run is {state_name} and no longer held by an agent; stop it."


class SetStateStatus(enum.StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    WAIT = "WAIT"
    ABORT = "ABORT"


@dataclass
class ProposedState:
    type: str
    name: str = ""
    message: str = ""
    result_ref: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in STATE_TYPES:
            from core.errors import InvalidInput

            raise InvalidInput(
                f"'{self.type}' is not a state type; use one of {', '.join(StateType.values)}.",
                code="invalid_state",
                details={"type": ["Invalid."]},
            )
        if not self.name:
            self.name = self.type.title()


@dataclass
class OrchestrationResult:
    status: SetStateStatus
    state_type: str
    state_name: str
    state_version: int
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    run_id: Any = None
    attempt: int | None = None

    @property
    def http_status(self) -> int:
        """How the REST adapter answers: ACCEPT 201, REJECT/WAIT 200 (with the reason), ABORT 409
        (a stale attempt or a run the caller no longer owns: stop it, D2)."""
        return {SetStateStatus.ACCEPT: 201, SetStateStatus.ABORT: 409}.get(self.status, 200)


class Policy(Protocol):
    def apply(self, context: Any) -> None: ...


@dataclass
class Write:
    """A write a rule's after hook adds to a transition (:meth:`Context.write`): releasing slots,
    ending task runs. In the engine on PostgreSQL its CTEs join the one statement that records the
    state (:func:`_record`); elsewhere ``run`` does it (the ORM). ``rows`` names the CTE whose
    ``RETURNING`` rows ``done`` receives — ``run`` returns the same rows — at most one write per
    transition has one."""

    ctes: list[str]  # 'name AS (INSERT/UPDATE/DELETE …)', names unique within a transition
    params: list[Any]
    run: Callable[[], list[tuple[Any, ...]]]
    rows: str = ""
    done: Callable[[list[tuple[Any, ...]]], None] | None = None


def _after(policy: Policy, context: Context) -> None:
    after = getattr(policy, "after", None)
    if after is not None:
        after(context)


@dataclass
class Context:
    """What rules see and may change: the locked run, its current and proposed state."""

    run: FlowRun | TaskRun
    proposed: ProposedState
    actor: Principal | None
    attempt: int | None = None
    status: SetStateStatus = SetStateStatus.ACCEPT
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    # Set by the engine: the state the run is in (the FROM of the proposal), the database clock at
    # the start of the transaction (D6), the run fields rules changed (saved with the state).
    from_type: str = ""
    from_name: str = ""
    now: dt.datetime | None = None
    updates: set[str] = field(default_factory=set)
    # Per-call memo for look-ups rules share (a batch fills it once: limits, the version's tasks…).
    cache: dict[str, Any] = field(default_factory=dict)
    entered: list[Any] = field(default_factory=list)
    originals: dict[str, Any] = field(default_factory=dict)
    # ACCEPT with nothing to record: the run is already in the proposed state (a repeated report).
    unchanged: bool = False
    # The rules' writes the engine sends with the state (see write); None: each is done at once.
    writes: list[Write] | None = None

    def __post_init__(self) -> None:
        if not self.from_type:
            self.from_type = self.run.state_type
            self.from_name = self.run.state_name
        if self.now is None:
            self.now = getattr(self.run, "db_now", None)

    @property
    def to_type(self) -> str:
        return self.proposed.type

    @property
    def is_flow_run(self) -> bool:
        return isinstance(self.run, FlowRun)

    def set(self, **values: Any) -> None:
        """Change fields of the run; they are saved with the new state when it is accepted."""
        for name, value in values.items():
            self.originals.setdefault(name, getattr(self.run, name))
            setattr(self.run, name, value)
            self.updates.add(name)

    def undo(self) -> None:
        """Put back the run fields rules changed (the proposal was refused)."""
        for name, value in self.originals.items():
            setattr(self.run, name, value)
        self.updates.clear()
        self.originals.clear()

    def write(self, write: Write) -> None:
        """A rule's write that belongs to the transition: queued for the statement that records
        it while the engine records one, else (a rule tried alone) done now."""
        if self.writes is not None:
            self.writes.append(write)
            return
        rows = write.run()
        if write.done is not None:
            write.done(rows)

    def clock(self) -> dt.datetime:
        if self.now is None:
            self.now = db_now()
        return self.now

    def reject(self, reason: str, **details: Any) -> None:
        self.status, self.reason = SetStateStatus.REJECT, reason
        self.details.update(details)

    def abort(self, reason: str, **details: Any) -> None:
        self.status, self.reason = SetStateStatus.ABORT, reason
        self.details.update(details)

    def wait(self, reason: str, **details: Any) -> None:
        self.status, self.reason = SetStateStatus.WAIT, reason
        self.details.update(details)

    def accept_unchanged(self, reason: str, **details: Any) -> None:
        """Answer ACCEPT without recording anything: the run already is where the proposal
        would take it (no second history row, no new version, no event)."""
        self.status, self.reason, self.unchanged = SetStateStatus.ACCEPT, reason, True
        self.details.update(details)


def _default_policy() -> Policy:
    from .policies import CorePolicy

    return CorePolicy()


def _default_task_policy() -> Policy:
    from .policies import TaskPolicy

    return TaskPolicy()


def db_now() -> dt.datetime:
    """The database clock (D6): leases, lateness and state times never trust a client's clock.
    Inside a transaction it is the transaction's start time. SQLite (the embedded mode) has no
    clock worth the name, so the process clock stands in there. The only definition: import it
    from ``orchestration.engine``."""
    if not settings.IS_POSTGRES:
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        row = cursor.fetchone()
    assert row is not None
    now: dt.datetime = row[0]
    return now


def share_lock_flow_run(workspace_id: Any, flow_run_id: Any, *fields: str, with_now: bool = False,
                        with_version_tasks: bool = False) -> tuple[Any, ...] | None:
    """``fields`` of a flow run, its row locked ``FOR SHARE`` until the transaction ends: task-run
    reports of one run proceed in parallel, but the run's own state and attempt cannot change (it
    cannot end, or release its slots, while a task of it takes one). None when there is no such
    run. ``with_now`` adds :func:`db_now`, then ``with_version_tasks`` the tasks its version
    declares (a list), as the last values, read in the same statement. The ORM has no FOR SHARE,
    hence the SQL; SQLite locks the whole database anyway."""
    if not settings.IS_POSTGRES:
        row: tuple[Any, ...] | None = (
            FlowRun.objects.for_workspace(workspace_id).filter(pk=flow_run_id)
            .values_list(*fields, *(["flow_version_id"] if with_version_tasks else [])).first()
        )
        if row is None:
            return None
        values = list(row[:len(fields)])
        if with_now:
            values.append(db_now())
        if with_version_tasks:
            version = FlowVersion.objects.for_workspace(workspace_id).filter(pk=row[-1]).values_list("tasks").first()
            values.append((version[0] if version else None) or [])
        return tuple(values)
    table = FlowRun._meta.db_table
    columns = ", ".join([
        *(f'"{_column(FlowRun, name)}"' for name in fields), *(["now()"] if with_now else []),
        *([f'(SELECT v."tasks" FROM "{FlowVersion._meta.db_table}" v '  # noqa: S608 (names from the models)
           f'WHERE v."id" = "{table}"."flow_version_id" AND v."workspace_id" = "{table}"."workspace_id")']
          if with_version_tasks else []),
    ])
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT {columns} FROM "{table}" '  # noqa: S608 (names from the model)
            "WHERE id = %s AND workspace_id = %s FOR SHARE",
            [flow_run_id, workspace_id],
        )
        found = cursor.fetchone()
    if found is None:
        return None
    if not with_version_tasks:
        return tuple(found)
    # The JSON column arrives as text; the field's own converter reads it, as the ORM would.
    tasks = _VERSION_TASKS.load(found[-1:]).tasks
    return (*found[:-1], tasks or [])


def _column(model: Any, name: str) -> str:
    column: str = model._meta.get_field(name).column
    return column


def lock_task_runs(workspace_id: Any, **where: Any) -> QuerySet[TaskRun]:
    """The task runs matching ``where``, locked ``FOR UPDATE`` when read, each annotated with the
    database clock (``db_now``). The batch orders them (task key, map index) so that two batches of
    one flow run lock in the same order and never deadlock."""
    return TaskRun.objects.for_workspace(workspace_id).select_for_update().annotate(db_now=Now()).filter(**where)


def check_expected_version(run: FlowRun | TaskRun, expected_version: int | None, **details: Any) -> None:
    """D3: refuse a proposal made against a version the run has moved past (the one answer for a
    stale version; see the module docstring). ``details`` name the report in a batch."""
    if expected_version is not None and expected_version != run.state_version:
        what = "run" if isinstance(run, FlowRun) else "task run"
        raise Conflict(
            f"The {what}'s state changed since you read it; re-read and retry.",
            code="stale_state_version",
            details={**details, "state_type": run.state_type, "state_name": run.state_name,
                     "state_version": run.state_version},
        )


def decide(policy: Policy, context: Context) -> bool:
    """Let the policy's rules decide the proposal; True when there is a new state to record."""
    policy.apply(context)
    return context.status is SetStateStatus.ACCEPT and not context.unchanged


def _result(run: FlowRun | TaskRun, context: Context) -> OrchestrationResult:
    return OrchestrationResult(
        status=context.status,
        state_type=run.state_type,
        state_name=run.state_name,
        state_version=run.state_version,
        reason=context.reason,
        details=context.details,
        run_id=run.pk,
        attempt=run.attempt,
    )


def _set_state(
    run: FlowRun | TaskRun | None, state: ProposedState, actor: Principal | None, expected_version: int | None,
    attempt: int | None, policy: Policy, also: dict[str, Any] | None = None,
) -> tuple[Context, bool]:
    """The steps after the lock, shared by both single entry points: 404, the version check, the
    policy's decision, then (when accepted) the caller's ``also`` fields, the history row, the new
    state and the rules' after hooks. Returns the context and whether a new state was recorded."""
    if run is None:
        raise NotFound()
    check_expected_version(run, expected_version)
    context = Context(run=run, proposed=state, actor=actor, attempt=attempt)
    recorded = decide(policy, context)
    if recorded:
        if also:
            context.set(**also)
        if isinstance(run, FlowRun):
            _record(run, context, policy, FlowRunState, "flow_run")
        else:
            _record(run, context, policy, TaskRunState, "task_run")
    return context, recorded


_FLOW_RUN_FIELDS = tuple(f.name for f in FlowRun._meta.concrete_fields)
# What the rules read of a run's flow and agent (both locked reads load them with the run).
_RULES_READ_OF_FLOW = ("max_crash_retries", "concurrency_limit")
_RULES_READ_OF_AGENT = ("service_account",)


def lock_flow_runs(workspace_id: Any, *also: str) -> QuerySet[FlowRun]:
    """The workspace's flow runs, locked ``FOR UPDATE`` when read, as :func:`flow_run_set_state`
    needs them: what the rules read of the flow and the agent joined in, the database clock
    annotated (``db_now``). A caller that must choose the runs itself (a claim: ``SKIP LOCKED``)
    filters this and hands each run over (``locked=``); ``also`` loads more related fields
    (``flow__catchup``, ``flow_version__tasks``…) in the same read."""
    related = sorted({"flow", "agent", *(name.split("__")[0] for name in also if "__" in name)})
    return (
        FlowRun.objects.for_workspace(workspace_id)
        .select_for_update(of=("self",))
        .select_related(*related)
        # The rules read these of the flow and the agent; the run itself whole.
        .only(*_FLOW_RUN_FIELDS, *(f"flow__{name}" for name in _RULES_READ_OF_FLOW),
              *(f"agent__{name}" for name in _RULES_READ_OF_AGENT), *also)
        .annotate(db_now=Now())
        .order_by()  # no ORDER BY (the model's ordering, or .first()'s) to compile on every transition
    )


_RUN = Columns(FlowRun, "r")
_RUN_AGENT = Columns(Agent, "a", ("id", *_RULES_READ_OF_AGENT))
_VERSION = Columns(FlowVersion, "v")
_VERSION_TASKS = Columns(FlowVersion, "v", ["tasks"])


def locked_flow_runs(
    workspace_id: Any, run_ids: list[Any], *, flow_fields: tuple[str, ...] = (), version: bool = False,
    has_task_runs: bool = False,
) -> list[FlowRun]:
    """The runs ``run_ids`` of the workspace, locked ``FOR UPDATE``, oldest scheduled start first,
    as :func:`lock_flow_runs` reads them (what the rules read of the flow and the agent, the
    database clock as ``db_now``); ``flow_fields`` more of the flow, ``version`` the registered
    version, ``has_task_runs`` whether the run has any. The two hot paths (set-state, claims) read
    their runs here: on PostgreSQL in hand-written SQL, whose compilation by the ORM cost more CPU
    than the statement; elsewhere with :func:`lock_flow_runs`."""
    ids = [FlowRun._meta.pk.to_python(run_id) for run_id in run_ids]
    if not settings.IS_POSTGRES:
        also = [f"flow__{name}" for name in flow_fields]
        if version:
            also += [f"flow_version__{f.name}" for f in FlowVersion._meta.concrete_fields]
        query = lock_flow_runs(workspace_id, *also).filter(pk__in=ids).order_by("scheduled_start")
        if has_task_runs:
            query = query.annotate(has_task_runs=Exists(
                TaskRun.objects.for_workspace(workspace_id).filter(flow_run=OuterRef("pk"))))
        return list(query)
    flow = _flow_columns(tuple(sorted({"id", *_RULES_READ_OF_FLOW, *flow_fields})))
    # The clock as the ORM's Now() reads it on PostgreSQL: the statement's start.
    parts = [_RUN.sql, flow.sql, _RUN_AGENT.sql, *([_VERSION.sql] if version else []), "statement_timestamp()"]
    if has_task_runs:
        parts.append('EXISTS (SELECT 1 FROM "orchestration_taskrun" t '
                     'WHERE t."flow_run_id" = r."id" AND t."workspace_id" = r."workspace_id")')
    sql = (
        f'SELECT {", ".join(parts)} FROM "orchestration_flowrun" r '  # noqa: S608 (names from the models)
        'JOIN "orchestration_flow" f ON f."id" = r."flow_id" '
        'LEFT JOIN "orchestration_agent" a ON a."id" = r."agent_id" '
        + ('JOIN "orchestration_flowversion" v ON v."id" = r."flow_version_id" ' if version else "")
        # Each run by its primary key, whatever the plan: a prepared statement runs on a generic plan,
        # and for "id = ANY(array)" that plan read every run of the flow (docs/performance.md).
        + 'WHERE r."workspace_id" = %s AND '
        + ('r."id" = %s ' if len(ids) == 1 else 'r."id" IN (SELECT unnest(%s::uuid[])) ')
        + 'ORDER BY r."scheduled_start" FOR UPDATE OF r'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [getattr(workspace_id, "pk", workspace_id), ids[0] if len(ids) == 1 else ids])
        rows = cursor.fetchall()
    runs: list[FlowRun] = []
    for row in rows:
        run = _RUN.load(row)
        at = _RUN.width
        FlowRun.flow.field.set_cached_value(run, flow.load(row, at))
        at += flow.width
        FlowRun.agent.field.set_cached_value(run, _RUN_AGENT.load(row, at) if row[at] is not None else None)
        at += _RUN_AGENT.width
        if version:
            FlowRun.flow_version.field.set_cached_value(run, _VERSION.load(row, at))
            at += _VERSION.width
        run.db_now = row[at]
        if has_task_runs:
            run.has_task_runs = row[at + 1]
        runs.append(run)
    return runs


@functools.cache
def _flow_columns(names: tuple[str, ...]) -> Columns:
    return Columns(Flow, "f", names)


# Refusals (404, stale version) come before anything is written: no savepoint needed.
@in_transaction
def flow_run_set_state(
    *,
    actor: Principal | None,
    flow_run_id: Any,
    state: ProposedState,
    workspace_id: Any,
    expected_version: int | None = None,
    attempt: int | None = None,
    policy: Policy | None = None,
    locked: FlowRun | None = None,
    also: dict[str, Any] | None = None,
) -> OrchestrationResult:
    """Propose ``state`` for a flow run of ``workspace_id``. Stale ``expected_version`` → 409;
    no such run in the workspace → 404.

    ``locked``: the run, already read by the caller in this transaction through
    :func:`lock_flow_runs` (it is not read again). ``also``: run fields the caller sets with the
    new state, written only when one is recorded (a claim's agent and lease).

    The caller's transaction must be scoped to the workspace (a request is; a service scopes
    itself; platform services use ``rls_bypass``)."""
    if locked is not None:
        assert locked.pk == flow_run_id and locked.workspace_id == workspace_id
        run: FlowRun | None = locked
    else:
        found = locked_flow_runs(workspace_id, [flow_run_id])
        run = found[0] if found else None
    context, recorded = _set_state(run, state, actor, expected_version, attempt, policy or _default_policy(), also)
    assert isinstance(context.run, FlowRun)
    if recorded:
        events.flow_run_state_changed(context.run)
        if context.run.state_type == StateType.SCHEDULED:
            live.runs_available([context.run])  # a retry or restart is claimable again: tell the agents
        # A start or an end may open or resolve SLA incidents: evaluated after commit, not at the next tick.
        alert_triggers.flow_run_state_changed(context.run)
    return _result(context.run, context)


# Refusals (404, stale version) come before anything is written: no savepoint needed.
@in_transaction
def task_run_set_state(
    *,
    actor: Principal | None,
    task_run_id: Any,
    state: ProposedState,
    workspace_id: Any,
    expected_version: int | None = None,
    attempt: int | None = None,
    policy: Policy | None = None,
) -> OrchestrationResult:
    """Propose ``state`` for one task run (a person's restart, a platform service). Agents report
    task runs in batches (:func:`~orchestration.engine.batch.task_run_set_states`), through the
    same steps. Stale ``expected_version`` → 409."""
    run = next(iter(lock_task_runs(workspace_id, pk=task_run_id).order_by()[:1]), None)
    context, recorded = _set_state(run, state, actor, expected_version, attempt, policy or _default_task_policy())
    assert isinstance(context.run, TaskRun)
    if recorded:
        events.task_run_state_changed(context.run)
    return _result(context.run, context)


STATE_FIELDS = ["state_type", "state_name", "state_message", "state_timestamp", "state_version"]


def history_row(run: FlowRun | TaskRun, state: ProposedState, history_model: Any, fk: str, at: dt.datetime) -> Any:
    return new(
        history_model, workspace_id=run.workspace_id, type=state.type, name=state.name[:32], message=state.message,
        result_ref=state.result_ref[:1000], details=state.details, timestamp=at, **{f"{fk}_id": run.pk},
    )


def accept(run: FlowRun | TaskRun, context: Context, history_model: Any, fk: str) -> Any:
    """Move the in-memory run to the accepted state and return its history row (unsaved): the
    caller writes both, one run at a time (:func:`_record`) or a batch at once."""
    state = context.proposed
    row = history_row(run, state, history_model, fk, context.clock())
    run.state_type = state.type
    run.state_name = state.name[:32]
    run.state_message = state.message
    run.state_timestamp = context.clock()
    run.state_version += 1
    if isinstance(run, TaskRun) and state.result_ref:
        context.set(result_ref=state.result_ref[:1000])
    return row


_HISTORY_COLUMNS = ("workspace_id", "type", "name", "message", "result_ref", "details", "timestamp")


@functools.cache
def _history_insert(history_model: Any, fk: str) -> tuple[str, list[Any]]:
    """The CTE ``h`` that inserts one history row (its parameters: the run id, then ``history``'s)."""
    history = [history_model._meta.get_field(name) for name in _HISTORY_COLUMNS]
    columns = ", ".join(f'"{f.column}"' for f in history)
    placeholders = ", ".join(["%s"] * len(history))
    insert = (
        f'h AS (INSERT INTO "{history_model._meta.db_table}" '  # noqa: S608 (names from the models)
        f'("{fk}_id", {columns}) VALUES (%s, {placeholders}))'
    )
    return insert, history


def _record(run: FlowRun | TaskRun, context: Context, policy: Policy, history_model: Any, fk: str) -> None:
    """Move the run to its new state, run the rules' after hooks (they see it there), then write
    the history row, the run and the hooks' writes (:class:`Write`): on PostgreSQL in one round
    trip (data-modifying CTEs around the run's UPDATE), elsewhere with the ORM."""
    row = accept(run, context, history_model, fk)
    context.writes = []
    try:
        _after(policy, context)
        writes = context.writes
    finally:
        context.writes = None
    fields = STATE_FIELDS + sorted(context.updates)
    if not settings.IS_POSTGRES:
        history_model.objects.unscoped().bulk_create([row])
        run.save(update_fields=fields)
        for write in writes:
            rows = write.run()
            if write.done is not None:
                write.done(rows)
        return
    model = type(run)
    columns: list[Any] = [model._meta.get_field(name) for name in fields]
    assignments = ", ".join(f'"{f.column}" = %s' for f in columns)
    conn = connections[DEFAULT_DB_ALIAS]  # one thread-local lookup, not several per value
    values = [f.get_db_prep_save(getattr(run, f.attname), conn) for f in columns]
    insert, history = _history_insert(history_model, fk)
    row_values = [f.get_db_prep_save(getattr(row, f.attname), conn) for f in history]
    ctes = ", ".join([insert, *(cte for write in writes for cte in write.ctes)])
    params = [run.pk, *row_values, *(param for write in writes for param in write.params)]
    update = f'UPDATE "{model._meta.db_table}" SET {assignments} WHERE "id" = %s'  # noqa: S608
    returning = [write for write in writes if write.rows]
    assert len(returning) <= 1, "one write per transition may return rows"
    # With rows to return, the run's UPDATE is a CTE too and the statement returns those rows.
    sql = (f"WITH {ctes}, u AS ({update}) SELECT * FROM {returning[0].rows}"  # noqa: S608 (names from the code)
           if returning else f"WITH {ctes} {update}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *values, run.pk])
        rows = [tuple(found) for found in cursor.fetchall()] if returning else []
    for write in writes:
        if write.done is not None:
            write.done(rows if write.rows else [])


_OPEN_EXCLUDED = sorted(str(s) for s in TERMINAL_STATES)


def close_open_task_runs(context: Context, *, flow_run: FlowRun, state: ProposedState, at: dt.datetime) -> None:
    """End every task run of ``flow_run`` that is not in a terminal state with ``state`` (terminal),
    stamping its end time and a history row — because its flow run ended or its attempt is over,
    and nothing will ever report it again. Called from a rule's after hook: the write joins the
    flow run's transition (:meth:`Context.write`; the flow run is locked, so no task-run report of
    it is in flight). A run may have thousands of mapped task runs: on PostgreSQL this is two CTEs
    of the transition's statement whatever their number (an UPDATE … RETURNING feeding the history
    INSERT), elsewhere three statements. Publishes one ``task_run.states_changed`` event."""
    assert state.type in TERMINAL_STATES
    name = state.name[:32]
    task_runs, history = TaskRun._meta.db_table, TaskRunState._meta.db_table
    ctes = [
        f'task_runs_closed AS (UPDATE "{task_runs}" SET state_type = %s, state_name = %s, state_message = %s, '  # noqa: S608 (names from the models)
        "state_timestamp = %s, end_time = %s, state_version = state_version + 1 "
        "WHERE workspace_id = %s AND flow_run_id = %s AND state_type <> ALL(%s) "
        "RETURNING id, task_key, map_index)",
        f'task_runs_closed_h AS (INSERT INTO "{history}" '  # noqa: S608
        '("workspace_id", "task_run_id", "type", "name", "message", "result_ref", "details", "timestamp") '
        "SELECT %s, id, %s, %s, %s, '', %s::jsonb, %s FROM task_runs_closed)",
    ]
    params = [
        state.type, name, state.message, at, at, flow_run.workspace_id, flow_run.pk, _OPEN_EXCLUDED,
        flow_run.workspace_id, state.type, name, state.message, json.dumps(state.details), at,
    ]

    def announce(closed: list[tuple[Any, ...]]) -> None:
        if closed:
            events.task_run_states_changed(flow_run.workspace_id, flow_run.pk, [
                TaskRun(pk=pk, task_key=key, map_index=index, state_type=state.type, state_name=name)
                for pk, key, index in closed[:events.TASK_RUNS_LISTED]
            ])

    context.write(Write(ctes=ctes, params=params, rows="task_runs_closed", done=announce,
                        run=lambda: _close_open_task_runs_orm(flow_run, state, at)))


def _close_open_task_runs_orm(flow_run: FlowRun, state: ProposedState, at: dt.datetime) -> list[tuple[Any, ...]]:
    from django.db.models import F

    name, message = state.name[:32], state.message
    open_runs = TaskRun.objects.for_workspace(flow_run.workspace_id).filter(flow_run_id=flow_run.pk).exclude(
        state_type__in=_OPEN_EXCLUDED)
    closed = list(open_runs.values_list("pk", "task_key", "map_index"))
    if closed:
        open_runs.update(  # the same rows: the flow run is locked, nothing reports them meanwhile
            state_type=state.type, state_name=name, state_message=message, state_timestamp=at, end_time=at,
            state_version=F("state_version") + 1,
        )
        TaskRunState.objects.unscoped().bulk_create(
            [TaskRunState(workspace_id=flow_run.workspace_id, task_run_id=pk, type=state.type, name=name,
                          message=message, details=state.details, timestamp=at) for pk, _, _ in closed],
            batch_size=2000,
        )
    return closed
