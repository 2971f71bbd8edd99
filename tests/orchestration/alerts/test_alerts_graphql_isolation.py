"""C1 for the SLA alert mutations: a member of world B gets ``not_found`` for each of them, with A's
slug or with B's own slug and A's ids, and nothing of world A changes. The argument table has the
shape of ``MUTATION_ARGUMENTS`` in tests/orchestration/graphql/test_isolation.py (given world A's
run and the slug), so that table can take these entries (``MUTATION_ARGUMENTS.update(...)``); this
module imports nothing from there."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.alerts.models import Incident, SlaPolicy
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def a_policy(run: Any) -> str:
    """World A's policy on the run's flow (made once). An unsaved run (the meta-test that reads the
    table's argument names) gets an id that names nothing, without touching the database."""
    if run.workspace_id is None:
        return str(uuid.uuid4())
    with rls_bypass():
        policy = SlaPolicy.all_objects.filter(workspace_id=run.workspace_id, name="secret-policy").first()
        if policy is None:
            policy = SlaPolicy.all_objects.create(workspace_id=run.workspace_id, name="secret-policy", kind="start",
                                                  threshold_seconds=300, flow_id=run.flow_id)
    return str(policy.pk)


def an_incident(run: Any) -> str:
    """World A's open incident about the run (made once; see :func:`a_policy` for unsaved runs)."""
    if run.workspace_id is None:
        return str(uuid.uuid4())
    with rls_bypass():
        incident = Incident.all_objects.filter(workspace_id=run.workspace_id, subject_key=f"run:{run.pk}").first()
        if incident is None:
            incident = Incident.all_objects.create(
                workspace_id=run.workspace_id, policy_id=a_policy(run), policy_name="secret-policy", kind="start",
                subject_key=f"run:{run.pk}", flow_id=run.flow_id, title="secret incident",
            )
    return str(incident.pk)


MUTATION_ARGUMENTS: dict[str, Any] = {
    "createSlaPolicy": lambda run, slug: {"workspace": slug, "input": {
        "name": "x", "kind": "start", "thresholdSeconds": 300, "flowId": str(run.flow_id)}},
    "updateSlaPolicy": lambda run, slug: {"workspace": slug, "id": a_policy(run), "input": {"thresholdSeconds": 900}},
    "setSlaPolicyPaused": lambda run, slug: {"workspace": slug, "id": a_policy(run), "paused": True},
    "deleteSlaPolicy": lambda run, slug: {"workspace": slug, "id": a_policy(run)},
    "acknowledgeIncident": lambda run, slug: {"workspace": slug, "id": an_incident(run)},
    "snoozeIncident": lambda run, slug: {"workspace": slug, "id": an_incident(run), "minutes": 30},
    "resolveIncident": lambda run, slug: {"workspace": slug, "id": an_incident(run)},
}


def document_for(name: str, variables: dict[str, Any]) -> str:
    from config.schema import schema

    args = schema.graphql_schema.mutation_type.fields[name].args
    declarations = ", ".join(f"${arg}: {args[arg].type}" for arg in variables)
    passing = ", ".join(f"{arg}: ${arg}" for arg in variables)
    return f"mutation({declarations}) {{ {name}({passing}) {{ errors {{ code }} }} }}"


def world_a_state(world: Any) -> Any:
    with rls_bypass():
        return (
            sorted(SlaPolicy.all_objects.filter(workspace=world.workspace)
                   .values_list("id", "name", "threshold_seconds", "is_paused")),
            sorted(Incident.all_objects.filter(workspace=world.workspace).values_list("id", "status")),
        )


def test_the_table_names_every_alert_mutation_with_its_required_arguments():
    from graphene.utils.str_converters import to_camel_case
    from graphql import GraphQLNonNull

    from config.schema import schema
    from orchestration.graphql.alert_mutations import AlertMutations
    from orchestration.models import FlowRun

    assert set(MUTATION_ARGUMENTS) == {to_camel_case(name) for name in AlertMutations._meta.fields}
    for name, arguments in MUTATION_ARGUMENTS.items():
        field = schema.graphql_schema.mutation_type.fields[name]
        required = {arg for arg, definition in field.args.items() if isinstance(definition.type, GraphQLNonNull)}
        assert required <= set(arguments(FlowRun(), "x")), name


@pytest.mark.parametrize("slug", ["acme", "globex"])
@pytest.mark.parametrize("name", sorted(MUTATION_ARGUMENTS))
def test_world_b_cannot_touch_world_a_policies_or_incidents(world_a, world_b, name, slug):
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    run = FlowRunFactory(flow_version=FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace))
    an_incident(run)
    before = world_a_state(world_a)
    variables = MUTATION_ARGUMENTS[name](run, slug)
    body = gql(login(world_b.users[Role.OWNER]), document_for(name, variables), variables)
    assert ok(body)[name]["errors"] == [{"code": "not_found"}]
    assert world_a_state(world_a) == before
