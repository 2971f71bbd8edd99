"""The container spec (Docker) and Job manifest (Kubernetes) an agent builds for a claimed run:
image, command, environment (run-config variables from the agent's environment, never others; the
FLOWDECK_* connection; the claim record), labels, resources and pull policy. The Job manifest is
checked against the Kubernetes client's own model (``V1Job``)."""

from __future__ import annotations

import json

import pytest
from kubernetes.client import ApiClient, V1Job

from flowdeck.agent.base import ClaimedRun, LaunchError
from flowdeck.agent.docker import build_container_spec, container_api_url
from flowdeck.agent.kubernetes import build_job_manifest, job_name, label_value
from flowdeck.agent.resources import Resources, cpu_cores, memory_bytes
from tests.sdk.agent.conftest import RUN_ID, claim_record

AGENT_ENV = {"DATABASE_URL": "postgres://db/etl", "AWS_SECRET_ACCESS_KEY": "not-for-runs", "PATH": "/usr/bin"}


def docker_spec(run: ClaimedRun, **kwargs):  # type: ignore[no-untyped-def]
    options = dict(api_url="https://flowdeck.example.com", api_key="fd_sa_secret", workspace="acme",
                   agent_name="docker-1", lease_seconds=60, environ=AGENT_ENV)
    options.update(kwargs)
    return build_container_spec(run, **options)


def job(run: ClaimedRun, **kwargs):  # type: ignore[no-untyped-def]
    options = dict(namespace="flows", api_url="https://flowdeck.example.com", api_key="fd_sa_secret",
                   workspace="acme", agent_name="k8s eu/1", lease_seconds=60, environ=AGENT_ENV)
    options.update(kwargs)
    return build_job_manifest(run, **options)


# --- Docker ----------------------------------------------------------------------------------------


def test_container_runs_the_flow_run_entry_point_in_the_run_configs_image(claimed):
    spec = docker_spec(claimed)
    assert spec.image == "acme/etl:3"
    assert spec.command == ["python", "-m", "flowdeck.agent.execute"]
    assert spec.name == f"flowdeck-{RUN_ID}-2"


def test_container_env_has_named_variables_from_the_agent_and_the_flowdeck_connection(claimed):
    env = docker_spec(claimed).environment
    assert env["DATABASE_URL"] == "postgres://db/etl"
    assert "MISSING_VAR" not in env  # named by the run config, not set on the agent: left unset
    assert "AWS_SECRET_ACCESS_KEY" not in env and "PATH" not in env  # not named: never copied
    assert env["FLOWDECK_API_URL"] == "https://flowdeck.example.com"
    assert env["FLOWDECK_API_KEY"] == "fd_sa_secret"
    assert env["FLOWDECK_WORKSPACE"] == "acme"
    assert env["FLOWDECK_FLOW_RUN_ID"] == RUN_ID
    assert env["FLOWDECK_ATTEMPT"] == "2"


def test_container_gets_the_claim_record_with_only_completed_task_runs(claimed):
    record = json.loads(docker_spec(claimed).environment["FLOWDECK_FLOW_RUN_JSON"])
    assert record["id"] == RUN_ID and record["attempt"] == 2
    assert record["parameters"] == {"day": "monday"}
    assert record["storage"] == {"type": "module", "module": "flows.etl", "flow_name": "etl"}
    assert record["task_runs"] == [
        {"task_key": "extract", "map_index": -1, "state_name": "Success", "result_ref": "/results/extract"}]


def test_run_config_cannot_override_the_connection(claimed):
    run = ClaimedRun.from_claim(claim_record(version={"run_config": {"env": ["FLOWDECK_API_URL"]}}))
    spec = docker_spec(run, environ={"FLOWDECK_API_URL": "https://evil.example.com"}, default_image="x")
    assert spec.environment["FLOWDECK_API_URL"] == "https://flowdeck.example.com"


def test_container_labels_tie_it_to_the_run(claimed):
    labels = docker_spec(claimed).labels
    assert labels["io.flowdeck.flow-run-id"] == RUN_ID
    assert labels["io.flowdeck.attempt"] == "2"
    assert labels["io.flowdeck.flow-id"] == claimed.flow_id
    assert labels["io.flowdeck.agent"] == "docker-1"
    assert labels["io.flowdeck.workspace"] == "acme"


def test_container_resources_from_run_config_over_agent_defaults():
    run = ClaimedRun.from_claim(claim_record(version={"run_config": {"image": "i", "cpu_limit": "1.5",
                                                                     "memory_limit": "1Gi"}}))
    defaults = Resources(cpu_request="250m", memory_limit="256Mi")
    kwargs = docker_spec(run, resources=defaults).create_kwargs()
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["cpu_shares"] == 256
    assert kwargs["mem_limit"] == 1024**3
    assert "mem_reservation" not in kwargs


def test_image_falls_back_to_image_storage_then_the_agents_default():
    storage_image = ClaimedRun.from_claim(claim_record(version={
        "run_config": {}, "storage": {"type": "image", "image": "acme/flows:7", "module": "flows"}}))
    assert docker_spec(storage_image).image == "acme/flows:7"
    no_image = ClaimedRun.from_claim(claim_record(version={"run_config": {}}))
    assert docker_spec(no_image, default_image="acme/base:1").image == "acme/base:1"
    with pytest.raises(LaunchError, match="No image"):
        docker_spec(no_image)


def test_server_on_the_agents_loopback_is_reached_through_the_host_gateway(claimed):
    spec = docker_spec(claimed, api_url="http://127.0.0.1:8000")
    assert spec.environment["FLOWDECK_API_URL"] == "http://host.docker.internal:8000"
    assert spec.create_kwargs()["extra_hosts"] == {"host.docker.internal": "host-gateway"}
    assert container_api_url("http://localhost:8000", network="host") == ("http://localhost:8000", {})


def test_invalid_resources_are_a_prestart_failure():
    run = ClaimedRun.from_claim(claim_record(version={"run_config": {"image": "i", "memory_limit": "lots"}}))
    with pytest.raises(LaunchError, match="memory"):
        docker_spec(run)


# --- Kubernetes ----------------------------------------------------------------------------------------


def test_job_manifest_is_a_valid_v1_job_that_round_trips_through_the_client_model(claimed):
    manifest = job(claimed, resources=Resources(cpu_request="500m", memory_limit="1Gi"), service_account="flows",
                   image_pull_policy="always")
    model = V1Job.from_dict(manifest)
    assert model is not None
    # Nothing in the manifest is unknown to the model or dropped by it.
    assert ApiClient().sanitize_for_serialization(model) == manifest


def test_job_spec_leaves_retries_to_flowdeck(claimed):
    spec = job(claimed)["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert "serviceAccountName" not in pod


def test_job_container_image_command_pull_policy_and_service_account(claimed):
    manifest = job(claimed, image_pull_policy="if-not-present", service_account="flow-runner")
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "acme/etl:3"
    assert container["command"] == ["python", "-m", "flowdeck.agent.execute"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["serviceAccountName"] == "flow-runner"
    assert "imagePullPolicy" not in job(claimed)["spec"]["template"]["spec"]["containers"][0]


def test_job_env_and_api_key_from_a_secret(claimed):
    container = job(claimed, api_key_secret=("flowdeck", "key"))["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"] == {"name": "DATABASE_URL", "value": "postgres://db/etl"}
    assert "MISSING_VAR" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["FLOWDECK_API_KEY"] == {"name": "FLOWDECK_API_KEY",
                                       "valueFrom": {"secretKeyRef": {"name": "flowdeck", "key": "key"}}}
    assert "fd_sa_secret" not in json.dumps(container)
    assert env["FLOWDECK_FLOW_RUN_ID"]["value"] == RUN_ID
    assert json.loads(env["FLOWDECK_FLOW_RUN_JSON"]["value"])["id"] == RUN_ID


def test_job_resources_requests_and_limits():
    run = ClaimedRun.from_claim(claim_record(version={"run_config": {"image": "i", "memory_request": "512Mi"}}))
    container = job(run, resources=Resources(cpu_limit="2"))["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"memory": "512Mi"}, "limits": {"cpu": "2"}}


def test_job_name_and_labels_are_valid_kubernetes_names(claimed):
    manifest = job(claimed)
    assert manifest["metadata"]["name"] == job_name(claimed) == f"flowdeck-{RUN_ID}-2"
    assert len(manifest["metadata"]["name"]) <= 63
    labels = manifest["metadata"]["labels"]
    assert labels["flowdeck.io/flow-run-id"] == RUN_ID
    assert labels["flowdeck.io/attempt"] == "2"
    assert labels["flowdeck.io/agent"] == "k8s-eu-1"
    assert manifest["spec"]["template"]["metadata"]["labels"] == labels
    assert manifest["metadata"]["annotations"]["flowdeck.io/flow-run-name"] == "nightly-0042"
    assert label_value("-" + "x" * 80) == "x" * 62


# --- quantities ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("512Mi", 512 * 1024**2), ("1Gi", 1024**3), ("1G", 10**9), ("256M", 256 * 10**6), ("512m", 512 * 1024**2),
    ("1g", 1024**3), (2048, 2048), ("1.5Gi", int(1.5 * 1024**3)),
])
def test_memory_quantities(text, expected):
    assert memory_bytes(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("500m", "0.5"), ("2", "2"), (0.25, "0.25"), ("1500m", "1.5")])
def test_cpu_quantities(text, expected):
    assert str(cpu_cores(text).normalize()) == expected


@pytest.mark.parametrize("bad", ["lots", "1Qi", "-5Mi"])
def test_bad_memory_quantities_are_refused(bad):
    with pytest.raises(ValueError, match="memory"):
        memory_bytes(bad)


@pytest.mark.parametrize("bad", ["many", "-1", "0", "0m"])
def test_bad_cpu_quantities_are_refused(bad):
    with pytest.raises(ValueError, match="CPU"):
        cpu_cores(bad)
