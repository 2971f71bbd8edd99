"""Factories for the rows the GraphQL tests read that tests/orchestration/factories.py has none for
(schedules, state history, log lines), and a flow with a small DAG and typed parameters."""

from __future__ import annotations

import factory
from django.utils import timezone

from orchestration.models import FlowRunState, LogEntry, Schedule, TaskRunState
from tests.factories import TenantFactory
from tests.orchestration.factories import FlowFactory, FlowRunFactory, FlowVersionFactory, TaskRunFactory

DAG_TASKS = [
    {"key": "extract", "name": "Extract", "tags": [], "retries": 0},
    {"key": "transform", "name": "Transform", "tags": ["cpu"], "retries": 2},
    {"key": "load", "name": "Load", "tags": [], "retries": 0},
    {"key": "report", "name": "Report", "tags": [], "retries": 0},
]
DAG_EDGES = [
    {"upstream": "extract", "downstream": "transform", "key": "rows"},
    {"upstream": "transform", "downstream": "load", "key": None},
    {"upstream": "extract", "downstream": "report", "key": None},
]
PARAMETERS = [
    {"name": "date", "type": "str", "default": None, "required": True},
    {"name": "limit", "type": "int", "default": 100, "required": False},
    {"name": "dry_run", "type": "bool", "default": False, "required": False},
]


class DagFlowVersionFactory(FlowVersionFactory):
    tasks = factory.LazyFunction(lambda: [dict(t) for t in DAG_TASKS])
    edges = factory.LazyFunction(lambda: [dict(e) for e in DAG_EDGES])
    parameters = factory.LazyFunction(lambda: [dict(p) for p in PARAMETERS])
    labels = factory.LazyFunction(lambda: ["etl"])
    run_config = factory.LazyFunction(lambda: {"agent_type": "process", "env": ["DB_URL"]})


class ScheduleFactory(TenantFactory):
    class Meta:
        model = Schedule

    flow = factory.SubFactory(FlowFactory)
    workspace = factory.SelfAttribute("flow.workspace")
    kind = Schedule.Kind.CRON
    cron = "0 * * * *"
    timezone = "Europe/Paris"


class FlowRunStateFactory(TenantFactory):
    class Meta:
        model = FlowRunState

    flow_run = factory.SubFactory(FlowRunFactory)
    workspace = factory.SelfAttribute("flow_run.workspace")
    type = "SCHEDULED"
    name = "Scheduled"
    timestamp = factory.LazyFunction(timezone.now)


class TaskRunStateFactory(TenantFactory):
    class Meta:
        model = TaskRunState

    task_run = factory.SubFactory(TaskRunFactory)
    workspace = factory.SelfAttribute("task_run.workspace")
    type = "RUNNING"
    name = "Running"
    timestamp = factory.LazyFunction(timezone.now)


class LogEntryFactory(TenantFactory):
    class Meta:
        model = LogEntry

    flow_run = factory.SubFactory(FlowRunFactory)
    workspace = factory.SelfAttribute("flow_run.workspace")
    sequence = factory.Sequence(lambda n: n + 1)
    level = 20
    timestamp = factory.LazyFunction(timezone.now)
    logger = "flowdeck.flow_runner"
    message = factory.Sequence(lambda n: f"line {n}")


__all__ = [
    "DagFlowVersionFactory", "FlowRunFactory", "FlowRunStateFactory", "LogEntryFactory", "ScheduleFactory",
    "TaskRunFactory", "TaskRunStateFactory",
]
