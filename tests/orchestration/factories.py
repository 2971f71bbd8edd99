"""factory_boy factories for orchestration rows (tenant rows are created with the RLS bypass on)."""

from __future__ import annotations

import factory

from orchestration.models import Agent, Flow, FlowRun, FlowVersion, Project, TaskRun
from tests.factories import TenantFactory, WorkspaceFactory


class ProjectFactory(TenantFactory):
    class Meta:
        model = Project

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"project-{n}")


class FlowFactory(TenantFactory):
    class Meta:
        model = Flow

    project = factory.SubFactory(ProjectFactory)
    workspace = factory.SelfAttribute("project.workspace")
    name = factory.Sequence(lambda n: f"flow-{n}")


class FlowVersionFactory(TenantFactory):
    class Meta:
        model = FlowVersion

    flow = factory.SubFactory(FlowFactory)
    workspace = factory.SelfAttribute("flow.workspace")
    version = factory.Sequence(lambda n: n + 1)
    content_hash = factory.Sequence(lambda n: f"{n:064x}")
    tasks = factory.LazyFunction(lambda: [{"key": "extract", "name": "extract", "tags": [], "retries": 0}])
    edges = factory.LazyFunction(list)
    parameters = factory.LazyFunction(list)
    storage = factory.LazyFunction(lambda: {"type": "module", "module": "flows.etl"})


class AgentFactory(TenantFactory):
    class Meta:
        model = Agent

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"agent-{n}")
    labels = factory.LazyFunction(list)


class FlowRunFactory(TenantFactory):
    class Meta:
        model = FlowRun

    flow_version = factory.SubFactory(FlowVersionFactory)
    flow = factory.SelfAttribute("flow_version.flow")
    workspace = factory.SelfAttribute("flow_version.workspace")
    name = factory.Sequence(lambda n: f"run-{n}")


class TaskRunFactory(TenantFactory):
    class Meta:
        model = TaskRun

    flow_run = factory.SubFactory(FlowRunFactory)
    workspace = factory.SelfAttribute("flow_run.workspace")
    task_key = factory.Sequence(lambda n: f"task-{n}")
