from core.tenancy import rls_bypass
from orchestration.models import FlowRun
from tests.orchestration.factories import FlowRunFactory


def test_factories_build_a_run_in_the_flows_workspace(flow_a):
    with rls_bypass():
        version = flow_a.versions.get()
    run = FlowRunFactory(flow_version=version)
    with rls_bypass():
        assert FlowRun.objects.for_workspace(flow_a.workspace).get() == run
