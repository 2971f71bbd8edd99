"""Fixtures of the orchestration GraphQL tests: world A's project with a DAG flow."""

import pytest

from tests.orchestration.factories import ProjectFactory

from .factories import DagFlowVersionFactory


@pytest.fixture
def dag_version(world_a):
    """Version 1 of flow "nightly" in project "etl" of world A: four tasks, three typed parameters."""
    project = ProjectFactory(workspace=world_a.workspace, name="etl", description="Warehouse loads")
    return DagFlowVersionFactory(
        flow__project=project, flow__name="nightly", flow__workspace=world_a.workspace, version=1
    )


@pytest.fixture
def dag_flow(dag_version):
    return dag_version.flow
