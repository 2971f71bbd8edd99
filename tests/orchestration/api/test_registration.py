"""Flow registration over REST: the SDK's call. Metadata is validated (the DAG, parameters,
storage, run config, sizes) and hashed, so re-registering unchanged metadata creates nothing."""

from __future__ import annotations

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import Flow, FlowVersion, Project
from tests.orchestration.api.conftest import assert_error, register

pytestmark = pytest.mark.django_db


def test_developer_registers_a_flow_and_gets_version_1(world_a, metadata):
    # given a developer's API key (the SDK's credentials)
    client = world_a.client(Role.DEVELOPER, key=True)
    # when the SDK registers a flow
    response = register(client, world_a, metadata)
    # then project, flow and version 1 exist with the metadata
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["created"] is True
    assert body["version"]["version"] == 1
    assert body["flow"]["name"] == "nightly" and body["flow"]["project_name"] == "etl"
    assert [t["key"] for t in body["version"]["tasks"]] == ["extract", "transform", "load"]
    assert body["version"]["run_config"]["env"] == ["DATABASE_URL", "API_TOKEN"]
    with rls_bypass():
        assert Project.all_objects.filter(workspace=world_a.workspace, name="etl").count() == 1
        assert FlowVersion.all_objects.filter(flow__name="nightly").count() == 1


def test_reregistering_unchanged_metadata_returns_the_same_version(world_a, metadata):
    client = world_a.client(Role.DEVELOPER, key=True)
    first = register(client, world_a, metadata).json()
    # when the same metadata comes again, with keys in another order
    reordered = dict(reversed(list(metadata.items())))
    second = register(client, world_a, reordered)
    # then it is the existing version, answered 200 with created=false
    assert second.status_code == 200
    assert second.json()["created"] is False
    assert second.json()["version"]["id"] == first["version"]["id"]
    with rls_bypass():
        assert FlowVersion.all_objects.filter(workspace=world_a.workspace).count() == 1


def test_changed_metadata_creates_the_next_version(world_a, metadata):
    client = world_a.client(Role.DEVELOPER, key=True)
    register(client, world_a, metadata)
    metadata["tasks"][1]["retries"] = 3
    response = register(client, world_a, metadata)
    assert response.status_code == 201
    assert response.json()["version"]["version"] == 2
    with rls_bypass():
        assert Flow.all_objects.filter(workspace=world_a.workspace).count() == 1


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AGENT])
def test_viewer_and_agent_cannot_register(world_a, metadata, role):
    response = register(world_a.client(role, key=True), world_a, metadata)
    assert_error(response, 403, "permission_denied")


def _mutate(metadata, change):
    change(metadata)
    return metadata


BAD_METADATA = {
    "cycle": (lambda m: m["edges"].append({"upstream": "load", "downstream": "extract"}), "dag_cycle"),
    "unknown-task-ref": (lambda m: m["edges"].append({"upstream": "extract", "downstream": "nope"}),
                         "invalid_metadata"),
    "self-edge": (lambda m: m["edges"].append({"upstream": "load", "downstream": "load"}), "invalid_metadata"),
    "duplicate-key": (lambda m: m["tasks"].append({"key": "load"}), "invalid_metadata"),
    "negative-retries": (lambda m: m["tasks"][0].update(retries=-1), "invalid_metadata"),
    "tags-not-strings": (lambda m: m["tasks"][0].update(tags=[1, 2]), "invalid_metadata"),
    "no-tasks": (lambda m: (m.update(tasks=[], edges=[])), "invalid_metadata"),
    "bad-param-type": (lambda m: m["parameters"].append({"name": "x", "type": "decimal"}), "invalid_metadata"),
    "default-wrong-type": (lambda m: m["parameters"].append({"name": "x", "type": "int", "default": "ten"}),
                           "invalid_metadata"),
    "bad-storage": (lambda m: m.update(storage={"type": "ftp"}), "invalid_metadata"),
    "storage-missing-module": (lambda m: m.update(storage={"type": "module"}), "invalid_metadata"),
    "env-dict-values": (lambda m: m["run_config"].update(env={"API_TOKEN": "s3cr3t"}), "invalid_metadata"),
    "env-name-equals-value": (lambda m: m["run_config"].update(env=["API_TOKEN=s3cr3t"]), "invalid_metadata"),
    "labels-not-list": (lambda m: m.update(labels="prod"), "invalid_metadata"),
    "bad-cpu-quantity": (lambda m: m["run_config"].update(cpu_request="lots"), "invalid_metadata"),
    "bad-pull-policy": (lambda m: m["run_config"].update(image_pull_policy="sometimes"), "invalid_metadata"),
    "unknown-field": (lambda m: m.update(code="print('hi')"), "invalid_metadata"),
    "too-many-tasks": (lambda m: m.update(tasks=[{"key": f"t{i}"} for i in range(2001)], edges=[]),
                       "invalid_metadata"),
    "too-many-edges": (lambda m: m.update(edges=[{"upstream": "extract", "downstream": "load"}] * 10_001),
                       "invalid_metadata"),
    # 300 tasks × 50 tags × 100 characters ≈ 1.5 MB: each field is in bounds, the whole is not.
    "too-large": (lambda m: m["tasks"].extend({"key": f"k{i}", "tags": [f"{j:03}" + "x" * 97 for j in range(50)]}
                                              for i in range(300)), "metadata_too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_bad_metadata_is_a_clear_400_and_stores_nothing(world_a, metadata, case):
    change, code = BAD_METADATA[case]
    response = register(world_a.client(Role.DEVELOPER, key=True), world_a, _mutate(metadata, change))
    error = assert_error(response, 400, code)
    assert error["details"]
    with rls_bypass():
        assert not FlowVersion.all_objects.filter(workspace=world_a.workspace).exists()


def test_container_resources_and_pull_policy_are_registered(world_a, metadata):
    metadata["run_config"].update(agent_type="kubernetes", image="acme/etl:3", cpu_request="500m", cpu_limit=2,
                                  memory_request="512Mi", memory_limit="1Gi", image_pull_policy="IfNotPresent")
    response = register(world_a.client(Role.DEVELOPER), world_a, metadata)
    assert response.status_code == 201, response.content
    run_config = response.json()["version"]["run_config"]
    resources = (run_config["cpu_request"], run_config["cpu_limit"], run_config["memory_request"],
                 run_config["memory_limit"], run_config["image_pull_policy"])
    assert resources == ("500m", "2", "512Mi", "1Gi", "IfNotPresent")


def test_a_cycle_is_reported_by_its_tasks(world_a, metadata):
    metadata["edges"].append({"upstream": "load", "downstream": "extract"})
    error = assert_error(register(world_a.client(Role.DEVELOPER), world_a, metadata), 400, "dag_cycle")
    assert error["details"]["edges"]["cycle"] == ["extract", "transform", "load", "extract"]
    assert "extract → transform → load → extract" in error["message"]


def test_secret_looking_env_says_secrets_must_not_be_sent(world_a, metadata):
    metadata["run_config"]["env"] = ["PASSWORD=hunter2"]
    error = assert_error(register(world_a.client(Role.DEVELOPER), world_a, metadata), 400)
    assert "secrets must not be sent" in error["message"]
    assert "hunter2" not in str(error)


@pytest.mark.parametrize(
    "body",
    [
        {"project": "etl", "name": "n"},  # no metadata
        {"project": "etl", "name": "n", "metadata": {}, "extra": 1},  # unknown field
        {"project": 5, "name": ["n"], "metadata": []},  # wrong types
        {"project": "", "name": "n", "metadata": {}},
    ],
)
def test_bad_register_bodies_are_400(world_a, body):
    response = world_a.client(Role.DEVELOPER).post(world_a.url("flows/register/"), body, format="json")
    assert_error(response, 400)


def test_malformed_json_is_400(world_a):
    response = world_a.client(Role.DEVELOPER).post(
        world_a.url("flows/register/"), data="{not json", content_type="application/json"
    )
    assert_error(response, 400, "malformed_request")


def test_registering_into_a_restricted_project_not_shared_is_404(world_a, metadata):
    from tests.orchestration.factories import ProjectFactory

    ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True)
    response = register(world_a.client(Role.DEVELOPER), world_a, metadata, project="secret")
    assert_error(response, 404, "not_found")


def test_nul_characters_in_metadata_are_a_clear_400(world_a, metadata):
    metadata["storage"]["module"] = "flows\u0000etl"
    assert_error(register(world_a.client(Role.DEVELOPER), world_a, metadata), 400, "invalid_text")


def test_a_registration_by_a_person_records_who_registered(world_a, metadata):
    body = register(world_a.client(Role.DEVELOPER), world_a, metadata).json()
    assert body["version"]["registered_by"] == world_a.users[Role.DEVELOPER].email
