"""Input (strict: unknown fields are 400) and output serializers for the orchestration REST API.
Validation of meaning (the DAG, parameter types, state rules) lives in the services."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.openapi import ErrorDetailSerializer
from core.serializers import StrictInputSerializer
from orchestration.models import (
    Agent,
    Catchup,
    ConcurrencyLimit,
    Flow,
    FlowRun,
    FlowRunState,
    FlowVersion,
    LogEntry,
    Project,
    Schedule,
    StateType,
    TaskRun,
)
from orchestration.services.parameters import MAX_PARAMETERS_BYTES


def check_parameters_size(value: Any) -> Any:
    dumped = json.dumps(value, separators=(",", ":"), default=str)
    if "\\u0000" in dumped:
        raise serializers.ValidationError("Parameters cannot contain NUL characters (\\u0000).")
    size = len(dumped.encode())
    if size > MAX_PARAMETERS_BYTES:
        raise serializers.ValidationError(
            f"Parameters are {size:,} bytes; the limit is {MAX_PARAMETERS_BYTES:,} bytes (512 KB). "
            "Pass references to data, not the data itself."
        )
    return value


class StrList(serializers.ListField):
    child = serializers.CharField(max_length=100, allow_blank=False)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 100)
        super().__init__(**kwargs)


# --- inputs -------------------------------------------------------------------------------------


class ProjectCreateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    is_restricted = serializers.BooleanField(required=False, default=False)


class ProjectUpdateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    is_restricted = serializers.BooleanField(required=False)


class FlowUpdateIn(StrictInputSerializer):
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    max_lateness_seconds = serializers.IntegerField(min_value=0, max_value=10**9, required=False, allow_null=True)
    catchup = serializers.ChoiceField(choices=Catchup.values, required=False)
    concurrency_limit = serializers.IntegerField(min_value=0, max_value=10**6, required=False, allow_null=True)
    max_crash_retries = serializers.IntegerField(min_value=0, max_value=100, required=False)


class FlowRegisterIn(StrictInputSerializer):
    project = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=200)
    metadata = serializers.JSONField()


class VersionArchiveIn(StrictInputSerializer):
    archived = serializers.BooleanField(required=False, default=True)


class VersionPinIn(StrictInputSerializer):
    pinned = serializers.BooleanField(required=False, default=True)


class ScheduleIn(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=Schedule.Kind.values)
    interval_seconds = serializers.IntegerField(min_value=1, max_value=10**9, required=False, allow_null=True)
    anchor_date = serializers.DateTimeField(required=False, allow_null=True)
    cron = serializers.CharField(max_length=200, required=False, allow_blank=True)
    rrule = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    timezone = serializers.CharField(max_length=64, required=False)
    start_date = serializers.DateTimeField(required=False, allow_null=True)
    end_date = serializers.DateTimeField(required=False, allow_null=True)
    parameters = serializers.DictField(required=False, validators=[check_parameters_size])
    is_active = serializers.BooleanField(required=False)


class ScheduleUpdateIn(ScheduleIn):
    kind = serializers.ChoiceField(choices=Schedule.Kind.values, required=False)


class SchedulePauseIn(StrictInputSerializer):
    active = serializers.BooleanField()


class BulkRunIn(StrictInputSerializer):
    """One run of a bulk create (and the run fields of a single create)."""

    parameters = serializers.DictField(required=False, allow_null=True, validators=[check_parameters_size])
    labels = StrList(required=False, allow_null=True)
    scheduled_start = serializers.DateTimeField(required=False, allow_null=True)
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_null=True)
    name = serializers.CharField(max_length=200, required=False, allow_null=True)


class FlowRunCreateIn(BulkRunIn):
    flow = serializers.UUIDField()
    flow_version = serializers.UUIDField(required=False, allow_null=True)
    parent_flow_run = serializers.UUIDField(
        required=False, allow_null=True,
        help_text="Flow of flows: the run that starts this one (a run of the same workspace).")
    parent_task_run = serializers.UUIDField(
        required=False, allow_null=True,
        help_text="The task run of the parent run that starts this one; alone, its run is the parent.")


class FlowRunBulkCreateIn(StrictInputSerializer):
    flow = serializers.UUIDField()
    runs = serializers.ListField(child=BulkRunIn(), min_length=1, max_length=5000)


class BulkFiltersIn(StrictInputSerializer):
    flow = serializers.UUIDField(required=False)
    state_type = serializers.ListField(child=serializers.ChoiceField(choices=StateType.values), required=False,
                                       max_length=20)
    labels = StrList(required=False)
    scheduled_before = serializers.DateTimeField(required=False)
    scheduled_after = serializers.DateTimeField(required=False)


class FlowRunBulkActionIn(StrictInputSerializer):
    action = serializers.ChoiceField(choices=["cancel", "mark", "clear_late"])
    filters = BulkFiltersIn()
    state_type = serializers.ChoiceField(choices=StateType.values, required=False, allow_null=True)


class StateIn(StrictInputSerializer):
    type = serializers.ChoiceField(choices=StateType.values)
    name = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    message = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    result_ref = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class SetStateIn(StrictInputSerializer):
    state = StateIn()
    expected_version = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    attempt = serializers.IntegerField(min_value=1, max_value=10**6, required=False, allow_null=True)


class MarkIn(StrictInputSerializer):
    state_type = serializers.ChoiceField(choices=StateType.values)
    message = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")


class TaskRunReportIn(StrictInputSerializer):
    task_key = serializers.CharField(max_length=200)
    map_index = serializers.IntegerField(min_value=-1, max_value=10**7, required=False, default=-1)
    state = StateIn()
    expected_version = serializers.IntegerField(min_value=0, required=False, allow_null=True)


class TaskRunBatchIn(StrictInputSerializer):
    attempt = serializers.IntegerField(min_value=1, max_value=10**6)
    reports = serializers.ListField(child=TaskRunReportIn(), min_length=1, max_length=5000)


@extend_schema_field({"oneOf": [{"type": "integer", "minimum": 0, "maximum": 100},
                                 {"type": "string", "maxLength": 20}],
                       "description": "A level number 0–100 or a name (DEBUG, INFO, WARNING, ERROR, CRITICAL)."})
class LevelField(serializers.Field):
    """A level number 0–100 or a name (DEBUG, INFO, WARNING, ERROR, CRITICAL)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, (int, str)):
            raise serializers.ValidationError("A level is a number 0–100 or a level name.")
        if isinstance(data, str) and len(data) > 20:
            raise serializers.ValidationError("Unknown level name.")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class LogLineIn(StrictInputSerializer):
    sequence = serializers.IntegerField(min_value=0, max_value=2**62)
    level = LevelField()
    timestamp = serializers.DateTimeField()
    logger = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    message = serializers.CharField(max_length=10_000, allow_blank=True, trim_whitespace=False)
    task_run_id = serializers.UUIDField(required=False, allow_null=True)
    # What the SDK knows in the flow-run process: the task's key and map index (resolved here).
    task_key = serializers.CharField(max_length=200, required=False, allow_null=True)
    map_index = serializers.IntegerField(min_value=-1, max_value=10**7, required=False)


class LogBatchIn(StrictInputSerializer):
    lines = serializers.ListField(child=LogLineIn(), min_length=1, max_length=1000)


class AttemptIn(StrictInputSerializer):
    attempt = serializers.IntegerField(min_value=1, max_value=10**6)


class FlowRunHeartbeatIn(AttemptIn):
    lease_seconds = serializers.IntegerField(min_value=10, max_value=3600, required=False, default=60)


class ReportHeartbeatIn(StrictInputSerializer):
    lease_seconds = serializers.IntegerField(min_value=10, max_value=3600, required=False, default=60)


class FlowRunReportIn(AttemptIn):
    """One combined agent report (``flow-runs/{id}/report/``): each part is optional and is what the
    separate endpoint takes (heartbeat, task-run batch, log batch, set-state); at least one part."""

    heartbeat = ReportHeartbeatIn(required=False)
    task_runs = serializers.ListField(child=TaskRunReportIn(), required=False, min_length=1, max_length=5000)
    logs = serializers.ListField(child=LogLineIn(), required=False, min_length=1, max_length=1000)
    state = StateIn(required=False)
    expected_version = serializers.IntegerField(min_value=0, required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(part in attrs for part in ("heartbeat", "task_runs", "logs", "state")):
            raise serializers.ValidationError(
                {"non_field_errors": ["Send at least one of heartbeat, task_runs, logs, state."]})
        if attrs.get("expected_version") is not None and "state" not in attrs:
            raise serializers.ValidationError({"expected_version": ["Only with a state."]})
        return attrs


class AgentRegisterIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    type = serializers.ChoiceField(choices=Agent.Type.values)
    labels = StrList(required=False, default=list)
    version = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    poll_interval_seconds = serializers.IntegerField(min_value=1, max_value=3600, required=False, default=10)


class HeldRunIn(StrictInputSerializer):
    id = serializers.UUIDField()
    attempt = serializers.IntegerField(min_value=1, max_value=10**6)


class AgentHeartbeatIn(StrictInputSerializer):
    polled = serializers.BooleanField(required=False, default=False)
    # The runs whose processes the agent is running: the answer names those it no longer holds.
    flow_runs = serializers.ListField(child=HeldRunIn(), required=False, max_length=1000)


class ClaimIn(StrictInputSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, required=False, default=1)
    lease_seconds = serializers.IntegerField(min_value=10, max_value=3600, required=False, default=60)
    lookahead_seconds = serializers.IntegerField(min_value=0, max_value=5, required=False, default=0)


class EmptyIn(StrictInputSerializer):
    """A POST that takes no body (any field is 400)."""


class ConcurrencyLimitIn(StrictInputSerializer):
    tag = serializers.CharField(max_length=100)
    limit = serializers.IntegerField(min_value=0, max_value=10**6)


# --- query parameters (lists: repeated or comma-separated) -------------------------------------------


class FlowFilterIn(serializers.Serializer):
    project = serializers.UUIDField(required=False)
    name = serializers.CharField(max_length=200, required=False)


class FlowRunFilterIn(serializers.Serializer):
    flow = serializers.UUIDField(required=False)
    state_type = serializers.ListField(child=serializers.ChoiceField(choices=StateType.values), required=False,
                                       max_length=20)
    state_name = serializers.CharField(max_length=32, required=False)
    labels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=50)
    scheduled_before = serializers.DateTimeField(required=False)
    scheduled_after = serializers.DateTimeField(required=False)
    created_by = serializers.ChoiceField(choices=FlowRun.CreatedBy.values, required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=50)
    without_live_agent = serializers.BooleanField(required=False)
    parent_flow_run = serializers.UUIDField(required=False)


class StateFilterIn(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, max_value=2**62, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=200)


class LogFilterIn(serializers.Serializer):
    level_gte = serializers.IntegerField(min_value=0, max_value=100, required=False)
    task_run_id = serializers.UUIDField(required=False)
    after_sequence = serializers.IntegerField(min_value=-1, max_value=2**62, required=False)
    search = serializers.CharField(max_length=200, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=200)


class LogDownloadIn(serializers.Serializer):
    # Not ``format``: DRF reads that query parameter to pick a renderer.
    output = serializers.ChoiceField(choices=["text", "jsonl"], required=False, default="text")
    level_gte = serializers.IntegerField(min_value=0, max_value=100, required=False)
    task_run_id = serializers.UUIDField(required=False)
    search = serializers.CharField(max_length=200, required=False)


class TagIn(serializers.Serializer):
    tag = serializers.CharField(max_length=100)


# --- outputs ------------------------------------------------------------------------------------


class ProjectOut(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "description", "is_restricted", "created_at"]


class FlowVersionOut(serializers.ModelSerializer):
    flow = serializers.UUIDField(source="flow_id")

    class Meta:
        model = FlowVersion
        fields = ["id", "flow", "version", "content_hash", "tasks", "edges", "parameters", "schedule", "storage",
                  "labels", "run_config", "is_archived", "created_at", "registered_by"]


class FlowVersionSummaryOut(serializers.ModelSerializer):
    class Meta:
        model = FlowVersion
        fields = ["id", "version", "content_hash", "is_archived", "created_at", "registered_by"]


class FlowOut(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project_id")
    project_name = serializers.CharField(source="project.name")
    pinned_version = serializers.UUIDField(source="pinned_version_id", allow_null=True)

    class Meta:
        model = Flow
        fields = ["id", "project", "project_name", "name", "description", "pinned_version", "max_lateness_seconds",
                  "catchup", "concurrency_limit", "max_crash_retries", "is_archived", "created_at"]


class FlowRegisterOut(serializers.Serializer):
    created = serializers.BooleanField()
    flow = FlowOut()
    version = FlowVersionOut()


class ScheduleOut(serializers.ModelSerializer):
    flow = serializers.UUIDField(source="flow_id")

    class Meta:
        model = Schedule
        fields = ["id", "flow", "kind", "interval_seconds", "anchor_date", "cron", "rrule", "timezone", "start_date",
                  "end_date", "parameters", "is_active", "from_registration", "created_at", "updated_at"]


class FlowRunOut(serializers.ModelSerializer):
    flow = serializers.UUIDField(source="flow_id")
    flow_version = serializers.UUIDField(source="flow_version_id")
    agent = serializers.UUIDField(source="agent_id", allow_null=True)
    schedule = serializers.UUIDField(source="schedule_id", allow_null=True)
    created_by_user = serializers.UUIDField(source="created_by_user_id", allow_null=True)
    parent_flow_run = serializers.UUIDField(source="parent_flow_run_id", allow_null=True,
                                            help_text="The run that started this one (flow of flows).")
    parent_task_run = serializers.UUIDField(source="parent_task_run_id", allow_null=True,
                                            help_text="The parent run's task run that started this one, when known.")

    class Meta:
        model = FlowRun
        fields = ["id", "flow", "flow_version", "name", "parameters", "labels", "idempotency_key", "created_by_kind",
                  "created_by_user", "schedule", "scheduled_start", "state_type", "state_name", "state_message",
                  "state_timestamp", "state_version", "agent", "lease_expires_at", "attempt", "run_count",
                  "start_time", "end_time", "cancellation_requested", "created_at", "parent_flow_run",
                  "parent_task_run"]


class TaskRunOut(serializers.ModelSerializer):
    flow_run = serializers.UUIDField(source="flow_run_id")

    class Meta:
        model = TaskRun
        fields = ["id", "flow_run", "task_key", "map_index", "attempt", "state_type", "state_name", "state_message",
                  "state_timestamp", "state_version", "result_ref", "tags", "start_time", "end_time", "created_at"]


class StateOut(serializers.ModelSerializer):
    class Meta:
        model = FlowRunState
        fields = ["id", "type", "name", "message", "timestamp", "result_ref", "details"]


class FlowRunDetailOut(FlowRunOut):
    task_runs = TaskRunOut(many=True)
    states = StateOut(many=True)
    has_live_agent = serializers.SerializerMethodField(
        help_text="Whether a healthy agent of the workspace covers this run's labels right now."
    )

    class Meta(FlowRunOut.Meta):
        fields = [*FlowRunOut.Meta.fields, "task_runs", "states", "has_live_agent"]

    def get_has_live_agent(self, run: FlowRun) -> bool:
        from orchestration.services.agents import run_has_live_agent

        return run_has_live_agent(run)


class ClaimedRunOut(FlowRunOut):
    """What an agent needs to start a run it claimed: the run and the registered metadata."""

    version = FlowVersionOut(source="flow_version")
    task_runs = TaskRunOut(many=True)

    class Meta(FlowRunOut.Meta):
        fields = [*FlowRunOut.Meta.fields, "version", "task_runs"]


class CurrentStateOut(serializers.Serializer):
    type = serializers.CharField()
    name = serializers.CharField()
    version = serializers.IntegerField()


class SetStateOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ACCEPT", "REJECT", "WAIT", "ABORT"])
    state = CurrentStateOut()
    reason = serializers.CharField(allow_blank=True)
    details = serializers.DictField()
    retry_after_seconds = serializers.IntegerField(required=False)


class SetStateConflictOut(serializers.Serializer):
    """A 409 of set-state: always the error; with the engine's answer beside it when the state was
    refused (`state_rejected`, `state_aborted`), alone when ``expected_version`` was stale
    (`stale_state_version`, the current state in ``details``)."""

    error = ErrorDetailSerializer()
    status = serializers.ChoiceField(choices=["REJECT", "ABORT"], required=False)
    state = CurrentStateOut(required=False)
    reason = serializers.CharField(allow_blank=True, required=False)
    details = serializers.DictField(required=False)


class LogEntryOut(serializers.ModelSerializer):
    flow_run = serializers.UUIDField(source="flow_run_id")
    task_run = serializers.UUIDField(source="task_run_id", allow_null=True)

    class Meta:
        model = LogEntry
        fields = ["id", "flow_run", "task_run", "sequence", "level", "timestamp", "logger", "message"]


class AgentOut(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = ["id", "name", "type", "labels", "version", "poll_interval_seconds", "created_at",
                  "last_heartbeat_at", "last_poll_at", "status"]

    def get_status(self, agent: Agent) -> str:
        from orchestration.services.agents import agent_status

        now = self.context.get("now")
        if now is None:
            from django.utils import timezone

            now = timezone.now()
        return agent_status(agent, now)


class ConcurrencyLimitOut(serializers.ModelSerializer):
    class Meta:
        model = ConcurrencyLimit
        fields = ["id", "tag", "limit", "created_at"]


class CountOut(serializers.Serializer):
    count = serializers.IntegerField()


class BulkActionOut(serializers.Serializer):
    """A bulk action and its progress; ``count`` (runs changed so far) is ``done``, kept for
    callers of the synchronous API."""

    id = serializers.UUIDField()
    action = serializers.CharField()
    filters = serializers.JSONField()
    state_type = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=["pending", "running", "finished", "failed"])
    matched = serializers.IntegerField()
    done = serializers.IntegerField()
    skipped = serializers.IntegerField()
    failed = serializers.IntegerField()
    count = serializers.IntegerField(source="done")
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ReportHeartbeatOut(serializers.Serializer):
    cancellation_requested = serializers.BooleanField()
    lease_expires_at = serializers.DateTimeField()
    state_type = serializers.CharField()
    attempt = serializers.IntegerField()


class ReportTaskRunsOut(serializers.Serializer):
    results = SetStateOut(many=True)


class FlowRunReportOut(serializers.Serializer):
    """The answers of the parts a report carried (a part not sent has no key). A REJECT/ABORT of
    ``state`` makes the reply 409 and adds ``error``; the other parts were applied all the same."""

    heartbeat = ReportHeartbeatOut(required=False)
    task_runs = ReportTaskRunsOut(required=False)
    logs = CountOut(required=False)
    state = SetStateOut(required=False)
    error = ErrorDetailSerializer(required=False, help_text="On a 409 only: why the state was refused, or that "
                                  "`expected_version` was stale (`stale_state_version`: then the error alone).")
