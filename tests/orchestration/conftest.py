"""Fixtures shared by the orchestration tests."""

import pytest

from tests.orchestration.factories import FlowVersionFactory, ProjectFactory


@pytest.fixture
def flow_a(world_a):
    """A project with one flow and one registered version in workspace A."""
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    return FlowVersionFactory(flow__project=project, flow__name="nightly", flow__workspace=world_a.workspace).flow
