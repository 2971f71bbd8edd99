"""``flow.serialize()`` is exactly the registration metadata the server accepts: the server's own
validator takes it unchanged, keys are stable, and secrets never appear (env names only)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from flowdeck import Flow, Parameter, task, triggers, unmapped
from flowdeck.run_configs import DockerRun, KubernetesRun, LocalRun, UniversalRun
from flowdeck.storage import Docker, File, Git, Local, Module

# What flow.serialize() adds for Prefect 1 code (see tests/sdk/prefect1_compat/test_library_serialize.py).
PREFECT1_KEYS = ["__version__", "name", "type", "reference_tasks"]


@task(retries=2, retry_delay=timedelta(seconds=10), tags=["db"], timeout=1.5)
def extract(day: str) -> list[int]:
    return [1, 2, 3]


@task(cache_for=timedelta(hours=1))
def transform(x: int, factor: int) -> int:
    return x * factor


@task(trigger=triggers.all_finished)
def load(rows: list[int]) -> None:
    return None


class Hourly:
    """Stands in for a flowdeck.schedules schedule: anything with serialize()."""

    def serialize(self) -> dict[str, Any]:
        return {"clocks": [{"kind": "interval", "interval_seconds": 3600, "anchor_date": "2026-01-01T00:00:00+00:00",
                            "cron": None, "timezone": "UTC", "start_date": None, "end_date": None, "parameters": {}}]}


def build_flow(**flow_kwargs: Any) -> Flow:
    with Flow("etl", **flow_kwargs) as flow:
        day = Parameter("day", default="today")
        rows = extract(day)
        transformed = transform.map(rows, unmapped(Parameter("factor", default=2)))
        done = load(transformed)
        done.set_upstream(Parameter("dry_run", default=False))
    return flow


def test_serialize_is_exactly_the_server_metadata_shape() -> None:
    flow = build_flow(
        schedule=Hourly(), labels=["prod", "eu"],
        run_config=KubernetesRun(image="acme/etl:3", env=["DATABASE_URL"], labels=["k8s"], cpu_request="500m"),
        storage=Module("acme.flows.etl"),
    )
    meta = flow.serialize()
    assert list(meta) == ["tasks", "edges", "parameters", "schedule", "storage", "labels", "run_config",
                          "sla_policies", *PREFECT1_KEYS]
    assert meta["sla_policies"] == []  # always stated: registering none removes earlier declared ones
    tasks = {t["key"]: t for t in meta["tasks"]}
    assert list(tasks) == ["extract", "day", "transform", "factor", "load", "dry_run"]
    assert tasks["extract"] == {
        "key": "extract", "name": "extract", "tags": ["db"], "retries": 2, "retry_delay_seconds": 10,
        "timeout_seconds": 2, "trigger": "all_successful", "mapped": False,
        "slug": "extract", "max_retries": 2,  # Prefect 1's names, which the server ignores
    }
    assert tasks["transform"]["mapped"] is True
    assert tasks["transform"]["cache_expiration_seconds"] == 3600
    assert tasks["load"]["trigger"] == "all_finished"
    assert meta["edges"] == [  # sorted by downstream key, then argument
        {"upstream": "day", "downstream": "extract", "key": "day"},
        {"upstream": "dry_run", "downstream": "load", "key": None},
        {"upstream": "transform", "downstream": "load", "key": "rows"},
        {"upstream": "factor", "downstream": "transform", "key": "factor"},
        {"upstream": "extract", "downstream": "transform", "key": "x", "mapped": True},
    ]
    assert meta["parameters"] == [
        {"name": "day", "type": "str", "default": "today", "required": False},
        {"name": "dry_run", "type": "bool", "default": False, "required": False},
        {"name": "factor", "type": "int", "default": 2, "required": False},
    ]
    assert meta["schedule"] == Hourly().serialize()
    assert meta["storage"] == {"type": "module", "module": "acme.flows.etl", "flow_name": "etl"}
    assert meta["labels"] == ["eu", "prod"]
    assert meta["run_config"] == {
        "agent_type": "kubernetes", "env": ["DATABASE_URL"], "labels": ["k8s"], "image": "acme/etl:3",
        "cpu_request": "500m",  # container resources are registered for the Kubernetes agent
    }
    json.dumps(meta)  # plain JSON


def test_the_server_validator_accepts_it_unchanged() -> None:
    from orchestration.services.flows import content_hash, validate_metadata

    for flow in (
        build_flow(),
        build_flow(schedule=Hourly(), labels=["a"], run_config=DockerRun(image="x:1", env=["TOKEN"])),
        build_flow(storage=Git("https://example.com/acme/flows.git", "flows/etl.py", "main"), run_config=LocalRun()),
        build_flow(storage=Docker("acme/etl:3", module="flows.etl"), run_config=UniversalRun(labels=["gpu"])),
    ):
        meta = flow.serialize()
        # SLA policies are the flow's live settings (orchestration.alerts.policies), not version fields;
        # Prefect 1's keys restate the others and are not kept either.
        version_fields = {k: v for k, v in meta.items() if k != "sla_policies" and k not in PREFECT1_KEYS}
        version_fields["tasks"] = [{k: v for k, v in t.items() if k not in ("slug", "max_retries")}
                                   for t in meta["tasks"]]
        assert validate_metadata(meta) == version_fields
        assert content_hash(validate_metadata(meta)) == content_hash(version_fields)


def test_serialize_is_stable_for_the_same_code() -> None:
    first, second = build_flow().serialize(), build_flow().serialize()
    assert first == second
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_default_storage_is_the_defining_module() -> None:
    meta = build_flow().serialize()
    assert meta["storage"] == {"type": "module", "module": __name__, "flow_name": "etl"}
    assert meta["run_config"] == {}
    assert meta["schedule"] is None


def test_storage_classes_serialize_to_the_server_types() -> None:
    assert File("/srv/etl.py").serialize("f") == {"type": "file", "path": "/srv/etl.py", "flow_name": "f"}
    assert Local(path="etl.py", directory="/srv").serialize("f")["path"] == "/srv/etl.py"
    assert Git("git@host:r.git", flow_path="a.py", branch_name="dev").serialize("f") == {
        "type": "git", "repo": "git@host:r.git", "path": "a.py", "ref": "dev", "flow_name": "f",
    }
    assert Docker(registry_url="reg.io/", image_name="etl", image_tag="3", path="/app/etl.py").serialize("f") == {
        "type": "image", "image": "reg.io/etl:3", "path": "/app/etl.py", "flow_name": "f",
    }
    with pytest.raises(ValueError, match="dotted module name"):
        Module("not a module")


def test_run_configs_register_environment_variable_names_only() -> None:
    assert LocalRun(env=["API_TOKEN", "DB_URL"], labels=["b", "a"]).serialize() == {
        "agent_type": "process", "env": ["API_TOKEN", "DB_URL"], "labels": ["a", "b"],
    }
    with pytest.raises(ValueError, match="variable NAMES") as values:
        LocalRun(env={"API_TOKEN": "s3cr3t"})  # type: ignore[arg-type]
    assert "s3cr3t" not in str(values.value)
    with pytest.raises(ValueError, match="looks like NAME=value") as pair:
        DockerRun(image="x", env=["API_TOKEN=s3cr3t"])
    assert "s3cr3t" not in str(pair.value)
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        KubernetesRun(env=["1BAD"])
    k8s = KubernetesRun(image="i", memory_request="1Gi", image_pull_policy="IfNotPresent")
    assert k8s.serialize()["memory_request"] == "1Gi" and k8s.serialize()["image_pull_policy"] == "IfNotPresent"
    with pytest.raises(ValueError, match="image_pull_policy"):
        KubernetesRun(image_pull_policy="Sometimes")


def test_an_empty_flow_cannot_be_registered() -> None:
    with pytest.raises(ValueError, match="has no tasks"):
        Flow("empty", storage=Module("x")).serialize()


def test_parameter_defaults_must_be_json() -> None:
    from datetime import date

    @task
    def use(d: Any) -> Any:
        return d

    with Flow("dates", storage=Module("x")) as flow:
        use(Parameter("d", default=date(2026, 1, 1)))
    with pytest.raises(ValueError, match="default of parameter 'd'.*not JSON"):
        flow.serialize()


def test_register_posts_the_metadata_with_the_client_and_returns_the_version_id() -> None:
    import httpx

    requests: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(201, json={"version": {"id": "v-1", "version": 1, "flow": "f-1"}, "created": True})

    flow = build_flow()
    version_id = flow.register(
        project="analytics", api_url="http://flowdeck.test", api_key="fd_test_key", workspace="acme",
        transport=httpx.MockTransport(server),
    )
    assert version_id == "v-1"
    (request,) = requests
    assert request.method == "POST"
    assert request.url.path.endswith("/workspaces/acme/flows/register/")
    assert json.loads(request.content) == {"project": "analytics", "name": "etl", "metadata": flow.serialize()}
