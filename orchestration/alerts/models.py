"""SLA policies, the incidents they open, and where people are told about them.

A :class:`SlaPolicy` states a promise about runs (start on time, finish in time, do not fail, stay
fresh, keep an agent for these labels, start at all). The evaluator turns each broken promise into
one :class:`Incident` per (policy, subject) while it is open — the partial unique constraint is what
makes two evaluators running at once open it only once. An incident lists the runs it covers
(:class:`IncidentRun`) and keeps a timeline (:class:`IncidentEvent`). Each opening and each
resolution becomes one :class:`NotificationDelivery` per channel (unique per incident, channel and
event, so a tick that runs twice never sends twice); every try of a delivery is a
:class:`DeliveryAttempt`.

These models live in the ``orchestration`` app (imported by ``orchestration.models``); their
tables are tenant tables like every other, under row-level security.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from core.tenancy import TenantModel


class PolicyKind(models.TextChoices):
    START = "start", "Start within"
    DURATION = "duration", "Finish within"
    FAILURE = "failure", "Failures"
    FRESHNESS = "freshness", "Freshness"
    AGENT = "agent", "Agent coverage"
    PRESTART = "prestart", "Pre-start failure"


class BreachAction(models.TextChoices):
    NONE = "none", "Alert only"
    CANCEL_RUN = "cancel_run", "Cancel the run"
    FAIL_RUN = "fail_run", "Mark the run failed"
    PAUSE_SCHEDULES = "pause_schedules", "Pause the flow's schedules"


class Severity(models.TextChoices):
    CRITICAL = "critical"
    WARNING = "warning"


class SlaPolicy(TenantModel):
    """A promise about the runs of a workspace, a project or a flow (at most one of the two is set),
    optionally narrowed to runs that carry every label in ``labels``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=2000, blank=True)
    kind = models.CharField(max_length=16, choices=PolicyKind.choices)
    project = models.ForeignKey("orchestration.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    flow = models.ForeignKey("orchestration.Flow", null=True, blank=True, on_delete=models.CASCADE,
                             related_name="sla_policies")
    labels = models.JSONField(default=list, blank=True)  # runs must carry all of these
    # X of the kind: start/duration/freshness/agent. Unused by failure and prestart.
    threshold_seconds = models.PositiveIntegerField(null=True, blank=True)
    # failure: alert after this many consecutive failed runs of a flow (1 = every failed run).
    consecutive_failures = models.PositiveIntegerField(default=1)
    # duration: warn when a running run passes the flow's p95 of its last ``history_size`` successes.
    predictive = models.BooleanField(default=False)
    history_size = models.PositiveIntegerField(default=20)
    # agent: the label set some healthy agent must cover.
    agent_labels = models.JSONField(default=list, blank=True)
    action = models.CharField(max_length=16, choices=BreachAction.choices, default=BreachAction.NONE)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.CRITICAL)
    is_paused = models.BooleanField(default=False)
    # Declared next to a flow in the SDK: ``flowdeck register`` creates/updates it by (flow, name).
    from_registration = models.BooleanField(default=False)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="sla_policy_unique_name"),
            models.CheckConstraint(condition=Q(project__isnull=True) | Q(flow__isnull=True),
                                   name="sla_policy_one_scope"),
        ]
        indexes = [models.Index(fields=["workspace", "is_paused"], name="sla_policy_ws_paused_idx")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class NotificationChannel(TenantModel):
    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"
        SLACK = "slack", "Slack"
        PAGERDUTY = "pagerduty", "PagerDuty"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # email: {"addresses": [...]}; webhook: {"url"}; slack: {"url"}; pagerduty: {"routing_key", "url"?}
    config = models.JSONField(default=dict)
    # The webhook's signing secret (HMAC-SHA256); empty for the other kinds.
    secret = models.CharField(max_length=128, blank=True)
    is_enabled = models.BooleanField(default=True)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="channel_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.kind} channel {self.name}"


class PolicyChannel(TenantModel):
    """Which channels a policy notifies (a tenant table of its own, so RLS covers it)."""

    id = models.BigAutoField(primary_key=True)
    policy = models.ForeignKey(SlaPolicy, on_delete=models.CASCADE, related_name="policy_channels")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="policy_channels")

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["policy", "channel"], name="policy_channel_unique")]


class Incident(TenantModel):
    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Kept when the policy is deleted (SET_NULL), with its name and kind copied.
    policy = models.ForeignKey(SlaPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    policy_name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=PolicyKind.choices)
    # What is broken, as a stable key: "run:<id>", "flow:<id>", "labels:gpu,eu" (a correlated
    # cause: no agent covers these labels), "agent-labels:…". One open incident per (policy, key).
    subject_key = models.CharField(max_length=300)
    flow = models.ForeignKey("orchestration.Flow", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="incidents")
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.CRITICAL)
    title = models.CharField(max_length=500)
    # Why, in words a person acts on ("No live agent covers the labels gpu, eu").
    cause = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(default=now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=254, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=254, blank=True)  # empty: resolved by itself
    last_evaluated_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["policy", "subject_key"], condition=~Q(status="resolved"),
                                    name="incident_one_open_per_subject"),
        ]
        indexes = [
            models.Index(fields=["workspace", "status", "-opened_at"], name="incident_ws_status_idx"),
            models.Index(fields=["flow", "status"], name="incident_flow_status_idx"),
        ]
        ordering = ["-opened_at"]

    def __str__(self) -> str:
        return self.title


class IncidentRun(TenantModel):
    """A run an incident covers (one for a run's own breach, many for a correlated cause)."""

    id = models.BigAutoField(primary_key=True)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="incident_runs")
    flow_run = models.ForeignKey("orchestration.FlowRun", on_delete=models.CASCADE, related_name="incident_runs")
    added_at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["incident", "flow_run"], name="incident_run_unique")]
        indexes = [models.Index(fields=["flow_run"], name="incident_run_run_idx")]


class IncidentEvent(TenantModel):
    """One line of an incident's timeline."""

    class Kind(models.TextChoices):
        OPENED = "opened"
        RUNS_ADDED = "runs_added"
        ACKNOWLEDGED = "acknowledged"
        SNOOZED = "snoozed"
        UNSNOOZED = "unsnoozed"
        RESOLVED = "resolved"
        ACTION = "action"
        NOTIFIED = "notified"
        NOTIFICATION_FAILED = "notification_failed"

    id = models.BigAutoField(primary_key=True)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    message = models.TextField()
    actor = models.CharField(max_length=254, blank=True)  # empty: Flowdeck itself
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=now)

    class Meta(TenantModel.Meta):
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["incident", "at"], name="incident_event_idx")]


class NotificationDelivery(TenantModel):
    class Event(models.TextChoices):
        OPENED = "opened"
        RESOLVED = "resolved"
        TEST = "test"

    class Status(models.TextChoices):
        PENDING = "pending"
        RETRYING = "retrying"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16, choices=Event.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # What is sent (the same body every try, so a receiver can deduplicate), secrets left out.
    payload = models.JSONField(default=dict)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["incident", "channel", "event"], condition=Q(incident__isnull=False),
                                    name="delivery_once_per_incident_event"),
        ]
        indexes = [
            models.Index(fields=["channel", "-created_at"], name="delivery_channel_idx"),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
        ]
        ordering = ["-created_at"]


class DeliveryAttempt(TenantModel):
    """One try of a delivery: what was sent where, what came back."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(NotificationDelivery, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=now)
    request = models.JSONField(default=dict)  # method, url (host only for secrets in paths), headers
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=1000, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_unique")]
        ordering = ["number"]
