"""Bulk actions never touch runs the actor cannot see: restricted projects not shared with them."""

from accounts.authz import principal_for_user
from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.models import FlowRun, StateType
from orchestration.services.runs import flow_run_bulk_action
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory


def _run_in(project):
    version = FlowVersionFactory(flow__project=project, flow__workspace=project.workspace)
    return FlowRunFactory(flow_version=version)


def test_bulk_cancel_skips_restricted_projects_not_shared_with_a_developer(world_a):
    open_run = _run_in(ProjectFactory(workspace=world_a.workspace, name="open"))
    hidden_run = _run_in(ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True))
    developer = principal_for_user(world_a.users[Role.DEVELOPER], world_a.workspace)
    with workspace_scope([world_a.workspace.pk]):
        changed = flow_run_bulk_action(actor=developer, action="cancel", filters={})
    assert changed == 1
    with rls_bypass():
        assert FlowRun.all_objects.get(pk=open_run.pk).state_type == StateType.CANCELLED
        assert FlowRun.all_objects.get(pk=hidden_run.pk).state_type == StateType.SCHEDULED


def test_admin_bulk_cancel_reaches_restricted_projects_too(world_a):
    hidden_run = _run_in(ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True))
    admin = principal_for_user(world_a.users[Role.ADMIN], world_a.workspace)
    with workspace_scope([world_a.workspace.pk]):
        assert flow_run_bulk_action(actor=admin, action="cancel", filters={}) == 1
    with rls_bypass():
        assert FlowRun.all_objects.get(pk=hidden_run.pk).state_type == StateType.CANCELLED
