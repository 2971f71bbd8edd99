"""Orchestration metadata and state. Flowdeck stores only what the SDK registers about a flow (its
DAG, parameters, schedule, where the code lives) and the states its runs go through; customers'
code and data never arrive here (A1). Result fields are references the agent chooses to report.

A flow run's current state is denormalised onto the run for fast lists; the full history is in the
``*State`` tables. Nothing outside ``orchestration.engine`` assigns a run's state.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from core.tenancy import TenantModel


class StateType(models.TextChoices):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"


# For membership tests: ``StateType.values`` builds a new list on every use.
STATE_TYPES: frozenset[str] = frozenset(StateType.values)
TERMINAL_STATES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})


class Catchup(models.TextChoices):
    ALL = "all", "Run every missed run"
    LATEST = "latest", "Run only the latest missed run"
    NONE = "none", "Skip missed runs"


class Project(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=1000, blank=True)
    # Restricted: visible only to Admins and to those granted view/manage on it (guardian).
    is_restricted = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        permissions = [("manage_project", "Manage this project and its flows")]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="project_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Flow(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="flows")
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=2000, blank=True)
    # The active version is the newest unarchived one unless a version is pinned.
    pinned_version = models.ForeignKey(
        "FlowVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Late-run policy: how late a run may start, and what happens to runs missed during an outage.
    max_lateness_seconds = models.PositiveIntegerField(null=True, blank=True)
    catchup = models.CharField(max_length=8, choices=Catchup.choices, default=Catchup.ALL)
    # At most this many runs of the flow RUNNING at once (None: no limit).
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    # Crashed runs (lost agent or process) are retried up to this many extra attempts.
    max_crash_retries = models.PositiveIntegerField(default=2)
    is_archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["workspace", "project", "name"], name="flow_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FlowVersion(TenantModel):
    """The metadata the SDK registered for one version of a flow. Never code, never data."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    # [{"key", "name", "tags": [...], "retries", "retry_delay_seconds", "timeout_seconds"}]
    tasks = models.JSONField(default=list)
    # [{"upstream", "downstream", "key": data key or null}]
    edges = models.JSONField(default=list)
    # [{"name", "type", "default", "required"}]
    parameters = models.JSONField(default=list)
    schedule = models.JSONField(null=True, blank=True)
    # How the agent finds the code: {"type": "module" | "file" | "git" | "image", ...}
    storage = models.JSONField(default=dict)
    labels = models.JSONField(default=list)
    # {"agent_type", "image", "env": [names only, never values], ...}
    run_config = models.JSONField(default=dict)
    is_archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=now)
    registered_by = models.CharField(max_length=254, blank=True)

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["flow", "version"], name="flow_version_unique_number"),
            models.UniqueConstraint(fields=["flow", "content_hash"], name="flow_version_unique_hash"),
        ]
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"{self.flow_id} v{self.version}"


class Schedule(TenantModel):
    class Kind(models.TextChoices):
        INTERVAL = "interval"
        CRON = "cron"
        RRULE = "rrule"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="schedules")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    anchor_date = models.DateTimeField(null=True, blank=True)
    cron = models.CharField(max_length=200, blank=True)
    rrule = models.TextField(blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    start_date = models.DateTimeField(null=True, blank=True)
    end_date = models.DateTimeField(null=True, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    # Created from the schedule in registered metadata: replaced when a new version brings another.
    from_registration = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["is_active"], name="schedule_active_idx")]

    def __str__(self) -> str:
        return f"{self.kind} schedule of {self.flow_id}"


class Agent(TenantModel):
    class Type(models.TextChoices):
        PROCESS = "process"
        DOCKER = "docker"
        KUBERNETES = "kubernetes"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.PROCESS)
    labels = models.JSONField(default=list)
    version = models.CharField(max_length=64, blank=True)
    service_account = models.ForeignKey(
        "accounts.ServiceAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    poll_interval_seconds = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(default=now)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The claim loop's last cycle: an agent that heartbeats but stopped polling is unhealthy.
    last_poll_at = models.DateTimeField(null=True, blank=True)
    # The last status a sweep announced: silence is noticed by the periodic sweep (nobody calls in
    # to say they stopped), recovery by the heartbeat that ends it.
    announced_status = models.CharField(max_length=16, default="offline")
    # Set when the agent said it stopped (a clean shutdown); cleared when it registers or heartbeats again.
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="agent_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FlowRun(TenantModel):
    class CreatedBy(models.TextChoices):
        USER = "user"
        SCHEDULE = "schedule"
        API = "api"

    # Every state change writes an entry into each index of this table: a foreign key whose column
    # already leads a composite index (listed in Meta) gets no index of its own. The workspace's
    # leads flow_run_ws_created_idx and flow_run_ws_state_idx, the flow's flow_run_flow_idx, the
    # schedule's flow_run_unique_schedule_start (partial, where set: a lookup by a schedule implies it).
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False)
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="runs", db_index=False)
    flow_version = models.ForeignKey(FlowVersion, on_delete=models.PROTECT, related_name="runs")
    name = models.CharField(max_length=200)
    parameters = models.JSONField(default=dict)
    labels = models.JSONField(default=list)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 (None = no key)
    created_by_kind = models.CharField(max_length=16, choices=CreatedBy.choices, default=CreatedBy.API)
    created_by_user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    schedule = models.ForeignKey(Schedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
                                 db_index=False)
    scheduled_start = models.DateTimeField(default=now)
    # Current state, denormalised from the newest FlowRunState row.
    state_type = models.CharField(max_length=16, choices=StateType.choices, default=StateType.SCHEDULED)
    state_name = models.CharField(max_length=32, default="Scheduled")
    state_message = models.TextField(blank=True)
    state_timestamp = models.DateTimeField(default=now)
    # Bumped on every accepted transition; a write with a stale expected_version is refused (D3).
    state_version = models.PositiveIntegerField(default=0)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    # Leases (D2, D5): a claim must turn into RUNNING, and a RUNNING run must heartbeat, in time.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    run_count = models.PositiveIntegerField(default=0)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    cancellation_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=now)
    # Flow of flows: the run (and its task run, when known) that created this one. Always a run of
    # the same workspace (services/runs.py checks it). Indexed only where set: most runs have none.
    parent_flow_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_runs", db_index=False
    )
    parent_task_run = models.ForeignKey(
        "TaskRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_flow_runs", db_index=False
    )

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="flow_run_unique_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["schedule", "scheduled_start"],
                condition=Q(schedule__isnull=False),
                name="flow_run_unique_schedule_start",
            ),
        ]
        indexes = [
            # D8: claims read only due SCHEDULED runs; a partial index keeps that fast with 1M runs.
            models.Index(
                fields=["scheduled_start"], condition=Q(state_type="SCHEDULED"), name="flow_run_due_idx"
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(state_type__in=["PENDING", "RUNNING", "CANCELLING"]),
                name="flow_run_lease_idx",
            ),
            models.Index(fields=["workspace", "state_type", "-created_at"], name="flow_run_ws_state_idx"),
            models.Index(fields=["workspace", "-created_at"], name="flow_run_ws_created_idx"),
            models.Index(fields=["flow", "-created_at"], name="flow_run_flow_idx"),
            models.Index(fields=["parent_flow_run", "-created_at"], condition=Q(parent_flow_run__isnull=False),
                         name="flow_run_parent_idx"),
            models.Index(fields=["parent_task_run"], condition=Q(parent_task_run__isnull=False),
                         name="flow_run_parent_task_idx"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class TaskRun(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index on the workspace alone: the hot statements name the workspace *and* the run, and with
    # one the planner could intersect it with the run's index and read every task run of the
    # workspace per request (a generic plan does for a big workspace among many small ones). The
    # index below serves both those statements and reads by workspace alone.
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False)
    # Indexed first in task_run_unique_key: an index of its own would only cost every insert.
    flow_run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="task_runs", db_index=False)
    task_key = models.CharField(max_length=200)
    map_index = models.IntegerField(default=-1)
    attempt = models.PositiveIntegerField(default=1)
    state_type = models.CharField(max_length=16, choices=StateType.choices, default=StateType.PENDING)
    state_name = models.CharField(max_length=32, default="Pending")
    state_message = models.TextField(blank=True)
    state_timestamp = models.DateTimeField(default=now)
    state_version = models.PositiveIntegerField(default=0)
    result_ref = models.CharField(max_length=1000, blank=True)
    tags = models.JSONField(default=list)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    # The flow-run attempt that last reported this task run: a report of a newer attempt starts it
    # over (a crash retry runs it again), one of an older attempt is refused (D2).
    flow_run_attempt = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["flow_run", "task_key", "map_index"], name="task_run_unique_key")
        ]
        indexes = [models.Index(fields=["workspace", "flow_run"], name="task_run_ws_run_idx")]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.task_key}[{self.map_index}]"


class StateRecord(TenantModel):
    """One row of a run's state history (the run keeps the newest one denormalised)."""

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=16, choices=StateType.choices)
    name = models.CharField(max_length=32)
    message = models.TextField(blank=True)
    timestamp = models.DateTimeField(default=now)
    result_ref = models.CharField(max_length=1000, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta(TenantModel.Meta):
        abstract = True
        ordering = ["timestamp", "id"]


class FlowRunState(StateRecord):
    # Indexed first in flow_run_state_run_idx (and TaskRunState.task_run in its own): written on
    # every transition, so no second index of the same column.
    flow_run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="states", db_index=False)

    class Meta(StateRecord.Meta):
        indexes = [models.Index(fields=["flow_run", "timestamp"], name="flow_run_state_run_idx")]


class TaskRunState(StateRecord):
    task_run = models.ForeignKey(TaskRun, on_delete=models.CASCADE, related_name="states", db_index=False)

    class Meta(StateRecord.Meta):
        indexes = [models.Index(fields=["task_run", "timestamp"], name="task_run_state_run_idx")]


class ConcurrencyLimit(TenantModel):
    """A task-level limit: at most ``limit`` task runs carrying ``tag`` RUNNING at once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tag = models.CharField(max_length=100)
    limit = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["workspace", "tag"], name="concurrency_limit_unique_tag")]

    def __str__(self) -> str:
        return f"{self.tag} ≤ {self.limit}"


class ConcurrencySlot(TenantModel):
    """One occupied slot of a limit, held by one running task run; deleted in the same transaction
    that ends (or crashes) the run, so a dead agent cannot leak slots."""

    id = models.BigAutoField(primary_key=True)
    # Indexed with the run, not alone (as TaskRun.workspace): slots are released by workspace and run.
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False)
    limit = models.ForeignKey(ConcurrencyLimit, on_delete=models.CASCADE, related_name="slots")
    task_run = models.ForeignKey(TaskRun, on_delete=models.CASCADE, related_name="slots")
    flow_run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["limit", "task_run"], name="concurrency_slot_unique")]
        indexes = [models.Index(fields=["workspace", "flow_run"], name="concurrency_slot_ws_run_idx")]


class LogEntry(TenantModel):
    id = models.BigAutoField(primary_key=True)
    # The workspace and the run are indexed first in the indexes below: indexes of their own would
    # cost every log line's insert and (the workspace's) invite the plan that reads the workspace
    # where the run's lines are wanted (see TaskRun.workspace).
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False)
    flow_run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="logs", db_index=False)
    task_run = models.ForeignKey(TaskRun, null=True, blank=True, on_delete=models.CASCADE, related_name="logs")
    # Per-run sequence number chosen by the sender: a re-sent batch inserts nothing twice (D4).
    sequence = models.BigIntegerField()
    level = models.PositiveSmallIntegerField()
    timestamp = models.DateTimeField()
    logger = models.CharField(max_length=200, blank=True)
    message = models.TextField()
    created_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["flow_run", "sequence"], name="log_unique_sequence")]
        indexes = [
            models.Index(fields=["flow_run", "timestamp", "id"], name="log_run_time_idx"),
            models.Index(fields=["workspace", "created_at"], name="log_ws_created_idx"),
        ]
        ordering = ["timestamp", "id"]


class IdempotencyRecord(TenantModel):
    """The stored response of an agent POST, keyed by its idempotency key (D4): a replay returns
    it; the same key with a different body is refused."""

    # Every agent POST inserts a record: the workspace's column leads idempotency_unique_key, so
    # it gets no index of its own.
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False)
    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=200)
    scope = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["workspace", "scope", "key"], name="idempotency_unique_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]


class WebTierBeat(models.Model):
    """The web tier's sign of life (one row, platform-wide, not a tenant table): every server
    process stamps ``last_seen_at`` with the database clock every second. Agents can only heartbeat
    while the web tier serves, so the reaper reads a stale stamp as "the web tier is down", not as
    "the agents are dead", and waits (issue 9, point 5); the beat that ends a gap moves every lease
    on by the gap's length (``orchestration.services.web_tier``)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    # Start of the current unbroken stretch of beats, and the newest beat.
    up_since = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # The last gap the web tier came back from (for operators and tests).
    last_gap_seconds = models.FloatField(default=0)
    last_gap_ended_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"web tier up since {self.up_since}"


class BulkAction(TenantModel):
    """One bulk action on runs (cancel, clear late, mark) and its progress. The runs matching the
    filter when it starts are worked through in small batches, each its own short transaction, so
    agents' writes to those runs are never held up for more than a moment; the counts move with
    every batch (``bulk_action.progress`` events), and ``done + skipped + failed == matched`` once
    it is finished."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        FINISHED = "finished"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action = models.CharField(max_length=16)
    filters = models.JSONField(default=dict)
    state_type = models.CharField(max_length=16, blank=True)  # what "mark" sets
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Runs the filter matched when the action started; then those changed, those left alone
    # because they no longer matched (they moved on meanwhile), and those the engine refused.
    matched = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # Who asked, to act with their role when it runs in the background.
    actor_role = models.CharField(max_length=16)
    created_by_user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    service_account = models.ForeignKey(
        "accounts.ServiceAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["workspace", "-created_at"], name="bulk_action_ws_created_idx")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} ({self.status})"


# SLA policies, incidents and notification channels are orchestration tables too; they are defined
# beside the code that uses them and registered here, with the app's other models.
from orchestration.alerts.models import (  # noqa: E402, F401
    DeliveryAttempt,
    Incident,
    IncidentEvent,
    IncidentRun,
    NotificationChannel,
    NotificationDelivery,
    PolicyChannel,
    SlaPolicy,
)
