"""Who sees which project, flow and run: one rule (orchestration.selectors.projects), the same
as ``authorize`` for one object. Owners and Admins see everything; a person sees unrestricted
projects and the restricted ones shared with them; service-account keys and agents see
unrestricted projects only; another workspace's ids and malformed ids are NotFound."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from accounts.authz import NotFound, PermissionDenied, Principal
from accounts.models import ApiKey, Role
from core.tenancy import rls_bypass
from orchestration import selectors
from tests.factories import make_key
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def projects(world_a):  # type: ignore[no-untyped-def]
    """World A: "open" and "secret" (restricted), each with a flow and a run."""
    made = {}
    for name, restricted in (("open", False), ("secret", True)):
        project = ProjectFactory(workspace=world_a.workspace, name=name, is_restricted=restricted)
        version = FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace,
                                     flow__name=f"{name}-flow")
        made[name] = (project, version.flow, FlowRunFactory(flow_version=version, name=f"{name}-run"))
    return made


def _grant(level: str, user, project) -> None:  # type: ignore[no-untyped-def]
    with rls_bypass():
        assign_perm(f"{level}_project", user, project)


def _seen(scoped, principal: Principal) -> tuple[list[str], list[str], list[str]]:  # type: ignore[no-untyped-def]
    return (
        sorted(p.name for p in scoped(selectors.projects_visible_to, principal)),
        sorted(f.name for f in scoped(selectors.flows_visible_to, principal)),
        sorted(r.name for r in scoped(selectors.runs_visible_to, principal)),
    )


EVERYTHING = (["open", "secret"], ["open-flow", "secret-flow"], ["open-run", "secret-run"])
UNRESTRICTED = (["open"], ["open-flow"], ["open-run"])


@pytest.mark.parametrize(("role", "expected"), [
    (Role.OWNER, EVERYTHING), (Role.ADMIN, EVERYTHING), (Role.DEVELOPER, UNRESTRICTED), (Role.VIEWER, UNRESTRICTED),
])
def test_owners_and_admins_see_restricted_projects_others_do_not(projects, as_role, scoped, role, expected):
    assert _seen(scoped, as_role(role)) == expected


@pytest.mark.parametrize("level", ["view", "manage"])
def test_a_granted_person_sees_the_restricted_project_its_flows_and_runs(world_a, projects, as_role, scoped, level):
    viewer = as_role(Role.VIEWER)
    _grant(level, world_a.users[Role.VIEWER], projects["secret"][0])
    assert _seen(scoped, viewer) == EVERYTHING
    secret, flow, run = projects["secret"]
    assert scoped(selectors.access_project, viewer, secret.pk) == secret
    assert scoped(selectors.access_flow, viewer, flow.pk) == flow
    assert scoped(selectors.access_flow_run, viewer, run.pk) == run
    # the grant is personal
    assert _seen(scoped, as_role(Role.DEVELOPER)) == UNRESTRICTED


def test_a_persons_own_api_key_carries_their_grants(world_a, projects, scoped):
    user = world_a.users[Role.DEVELOPER]
    _grant("view", user, projects["secret"][0])
    key, _secret = make_key(workspace=world_a.workspace, user=user)
    assert key.kind == ApiKey.Kind.USER
    principal = Principal(workspace=world_a.workspace, role=Role.DEVELOPER, user=user, api_key=key)
    assert _seen(scoped, principal) == EVERYTHING


def test_a_service_account_key_does_not_pick_up_a_users_grants(world_a, projects, scoped):
    # a principal that names a user but acts through a service-account key (as authorize sees it)
    user = world_a.users[Role.DEVELOPER]
    _grant("manage", user, projects["secret"][0])
    key, _secret = make_key(workspace=world_a.workspace, service_account=world_a.agent)
    principal = Principal(workspace=world_a.workspace, role=Role.DEVELOPER, user=user,
                          service_account=world_a.agent, api_key=key)
    assert _seen(scoped, principal) == UNRESTRICTED
    secret, flow, run = projects["secret"]
    for access, obj in ((selectors.access_project, secret), (selectors.access_flow, flow),
                        (selectors.access_flow_run, run)):
        with pytest.raises(NotFound):
            scoped(access, principal, obj.pk)


def test_restricted_objects_are_not_found_for_those_they_are_not_shared_with(projects, as_role, scoped):
    developer = as_role(Role.DEVELOPER)
    secret, flow, run = projects["secret"]
    for access, obj in ((selectors.access_project, secret), (selectors.access_flow, flow),
                        (selectors.access_flow_run, run)):
        with pytest.raises(NotFound):
            scoped(access, developer, obj.pk)
        assert scoped(access, as_role(Role.ADMIN), obj.pk) == obj


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "12345", "00000000-0000-0000-0000-000000000000", None])
def test_a_malformed_or_missing_id_is_not_found(projects, as_role, scoped, bad_id):
    owner = as_role(Role.OWNER)
    for access in (selectors.access_project, selectors.access_flow, selectors.access_flow_run, selectors.access_agent):
        with pytest.raises(NotFound):
            scoped(access, owner, bad_id)


def test_another_workspaces_objects_are_not_found(world_a, world_b, as_role, scoped):
    project = ProjectFactory(workspace=world_b.workspace, name="theirs")
    version = FlowVersionFactory(flow__project=project, flow__workspace=world_b.workspace)
    run = FlowRunFactory(flow_version=version)
    owner = as_role(Role.OWNER)
    for access, obj in ((selectors.access_project, project), (selectors.access_flow, version.flow),
                        (selectors.access_flow_run, run)):
        with pytest.raises(NotFound):
            scoped(access, owner, obj.pk)
    assert _seen(scoped, owner) == ([], [], [])


def test_agents_see_no_projects_but_report_on_restricted_runs(world_a, projects, scoped):
    agent = Principal(workspace=world_a.workspace, role=Role.AGENT, service_account=world_a.agent)
    with pytest.raises(PermissionDenied):
        scoped(selectors.runs_visible_to, agent)
    _secret, _flow, run = projects["secret"]
    # an agent's actions are checked against its role in the workspace, not the run's project
    for action in ("flow_run:report_state", "log:write", "flow_run:claim", "agent:heartbeat"):
        assert scoped(selectors.access_flow_run, agent, run.pk, action) == run
    # reading runs as a person would is not an agent's: denied, and a restricted one does not exist
    with pytest.raises(PermissionDenied):
        scoped(selectors.access_flow_run, agent, projects["open"][2].pk)
    with pytest.raises(NotFound):
        scoped(selectors.access_flow_run, agent, run.pk)


def test_a_viewer_sees_a_run_but_may_not_update_it(projects, as_role, scoped):
    _open, _flow, run = projects["open"]
    assert scoped(selectors.access_flow_run, as_role(Role.VIEWER), run.pk) == run
    with pytest.raises(PermissionDenied):
        scoped(selectors.access_flow_run, as_role(Role.VIEWER), run.pk, "flow_run:update")
    assert scoped(selectors.access_flow_run, as_role(Role.DEVELOPER), run.pk, "flow_run:update") == run


def test_run_detail_loads_task_runs_and_states(projects, as_role, scoped, django_assert_num_queries):
    _open, _flow, run = projects["open"]
    detail = scoped(selectors.flow_run_detail, as_role(Role.VIEWER), run.pk)
    with django_assert_num_queries(0):
        assert list(detail.task_runs.all()) == [] and list(detail.states.all()) == []
        assert detail.flow.project.name == "open"


def test_flows_visible_to_narrows_by_project_and_name(world_a, projects, as_role, scoped):
    owner = as_role(Role.OWNER)
    secret = projects["secret"][0]
    assert [f.name for f in scoped(selectors.flows_visible_to, owner, project_id=secret.pk)] == ["secret-flow"]
    assert [f.name for f in scoped(selectors.flows_visible_to, owner, name="open-flow")] == ["open-flow"]
    assert scoped(selectors.flows_visible_to, owner, project_id="nope") == []
