"""C1 for the orchestration GraphQL API: a member of world B gets null for every world A id in every
read and ``not_found`` for every mutation (with A's slug or with B's own slug and A's ids), and
nothing in world A changes. A meta-test checks the table names every orchestration mutation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphene.utils.str_converters import to_camel_case
from graphql import GraphQLNonNull

from accounts.models import Role
from config.schema import schema
from core.tenancy import rls_bypass
from orchestration.graphql.schema import OrchestrationMutation
from orchestration.models import FlowRun, FlowRunState
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.alerts.test_alerts_graphql_isolation import MUTATION_ARGUMENTS as ALERT_MUTATIONS
from tests.orchestration.factories import AgentFactory, FlowRunFactory, TaskRunFactory

from .factories import FlowRunStateFactory, LogEntryFactory, ScheduleFactory
from .test_flow_page_mutations import MUTATIONS as FLOW_PAGE_MUTATIONS


@pytest.fixture
def world_a_run(world_a, dag_version):
    run = FlowRunFactory(flow_version=dag_version, name="secret-run", state_type="FAILED", state_name="Failed",
                         agent=AgentFactory(workspace=world_a.workspace, name="secret-agent"))
    FlowRunStateFactory(flow_run=run)
    TaskRunFactory(flow_run=run, task_key="secret-task")
    LogEntryFactory(flow_run=run, message="secret log line")
    ScheduleFactory(flow=dag_version.flow)
    return run


def world_a_state(world_a) -> Any:  # type: ignore[no-untyped-def]
    with rls_bypass():
        return (
            sorted(FlowRun.objects.for_workspace(world_a.workspace).values_list("id", "state_type", "state_version")),
            FlowRunState.objects.for_workspace(world_a.workspace).count(),
        )


EVERY_READ = """query($ws: String!, $flow: ID!, $run: ID!) { orchestration(workspace: $ws) {
  dashboard { countsByState { count } runsByStateOverTime { count } lateRuns { id } failingRuns { id name }
              upcomingRuns { id } agents { id name } }
  projects { id name flows { id name } }
  flow(id: $flow) { id name schedules { id } versions { id } recentRuns { id } }
  flowRuns { edges { node { id name } } }
  flowRun(id: $run) { id name taskRuns { taskKey } logs { message } stateHistory { type } }
  agents { id name } } }"""


def test_world_a_ids_are_null_in_world_b(world_a, world_b, world_a_run):
    variables = {"ws": "globex", "flow": str(world_a_run.flow_id), "run": str(world_a_run.pk)}
    data = ok(gql(login(world_b.users[Role.OWNER]), EVERY_READ, variables))["orchestration"]
    assert data["flow"] is None and data["flowRun"] is None
    assert data["projects"] == [] and data["agents"] == [] and data["flowRuns"]["edges"] == []
    assert data["dashboard"] == {"countsByState": [], "runsByStateOverTime": [], "lateRuns": [], "failingRuns": [],
                                 "upcomingRuns": [], "agents": []}
    dumped = json.dumps(data)
    assert not [s for s in ("secret", str(world_a_run.pk), str(world_a.workspace.pk)) if s in dumped]


def test_world_a_slug_is_null_for_world_b(world_a, world_b, world_a_run):
    variables = {"ws": "acme", "flow": str(world_a_run.flow_id), "run": str(world_a_run.pk)}
    body = gql(login(world_b.users[Role.OWNER]), EVERY_READ, variables)
    assert ok(body) == {"orchestration": None}


# Mutation -> its arguments given world A's run and flow and the slug to send.
MUTATION_ARGUMENTS: dict[str, Any] = {
    "quickRun": lambda run, slug: {"workspace": slug, "flowId": str(run.flow_id), "parameters": '{"date": "x"}'},
    "cancelFlowRun": lambda run, slug: {"workspace": slug, "id": str(run.pk)},
    "restartFlowRun": lambda run, slug: {"workspace": slug, "id": str(run.pk)},
    "markFlowRun": lambda run, slug: {"workspace": slug, "id": str(run.pk), "stateType": "COMPLETED"},
    "deleteFlowRun": lambda run, slug: {"workspace": slug, "id": str(run.pk)},
}


def document_for(name: str, variables: dict[str, Any]) -> str:
    args = schema.graphql_schema.mutation_type.fields[name].args
    declarations = ", ".join(f"${arg}: {args[arg].type}" for arg in variables)
    passing = ", ".join(f"{arg}: ${arg}" for arg in variables)
    return f"mutation({declarations}) {{ {name}({passing}) {{ errors {{ code }} }} }}"


# Alert and channel mutations have their cross-workspace tests beside them (they need A's policies,
# incidents and channels): tests/orchestration/alerts/test_alerts_graphql_isolation.py and
# test_channels_graphql.py::test_another_workspaces_channel_is_null_and_never_listed; those of
# versions, schedules and projects in test_flow_page_mutations.py.
CHANNEL_MUTATIONS = {"createNotificationChannel", "updateNotificationChannel", "deleteNotificationChannel",
                     "sendTestNotification"}


def test_the_table_names_every_orchestration_mutation_with_its_required_arguments():
    ours = {to_camel_case(name) for name in OrchestrationMutation._meta.fields}
    assert set(MUTATION_ARGUMENTS) | set(ALERT_MUTATIONS) | CHANNEL_MUTATIONS | FLOW_PAGE_MUTATIONS == ours
    ours -= set(ALERT_MUTATIONS) | CHANNEL_MUTATIONS | FLOW_PAGE_MUTATIONS
    assert ours <= set(schema.graphql_schema.mutation_type.fields)
    for name in ours:
        field = schema.graphql_schema.mutation_type.fields[name]
        required = {arg for arg, definition in field.args.items() if isinstance(definition.type, GraphQLNonNull)}
        assert required <= set(MUTATION_ARGUMENTS[name](FlowRun(), "x")), name


@pytest.mark.parametrize("slug", ["acme", "globex"])
@pytest.mark.parametrize("name", sorted(MUTATION_ARGUMENTS))
def test_world_b_cannot_touch_world_a_runs(world_a, world_b, world_a_run, name, slug):
    before = world_a_state(world_a)
    variables = MUTATION_ARGUMENTS[name](world_a_run, slug)
    body = gql(login(world_b.users[Role.OWNER]), document_for(name, variables), variables)
    assert ok(body)[name]["errors"] == [{"code": "not_found"}]
    assert world_a_state(world_a) == before
