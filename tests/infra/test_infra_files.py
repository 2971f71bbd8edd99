"""infra/ cannot be run here (no Docker engine, no cluster), so these tests hold its shape: the YAML
parses, beat is a singleton, migrations run as the owner role and everything else as the app role."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from config.body_limit import READ_PAST_BYTES

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
CHART = INFRA / "helm" / "flowdeck"
SERVER_SERVICES = ("migrate", "web", "worker", "beat")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(INFRA / "compose.yaml")


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return load(CHART / "values.yaml")


def template(name: str) -> str:
    return (CHART / "templates" / name).read_text()


# --- compose -------------------------------------------------------------------------------------


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"postgres", "redis", "migrate", "web", "worker", "beat"}


def test_compose_beat_is_exactly_one_with_the_database_scheduler(compose: dict[str, Any]) -> None:
    beat = compose["services"]["beat"]
    assert beat["deploy"]["replicas"] == 1
    command = " ".join(beat["command"])
    assert "beat" in command
    assert "django_celery_beat.schedulers:DatabaseScheduler" in command


def test_compose_migrate_runs_as_owner_and_the_rest_as_app_role(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"][-2:] == ["migrate", "--noinput"]
    assert migrate["environment"]["DATABASE_URL"].startswith("postgres://flowdeck_owner:")
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://flowdeck_app:"), name
        assert env["FLOWDECK_DB_APP_ROLE"] == "flowdeck_app"
        assert env["FLOWDECK_INPROCESS_PERIODIC"] == "false", name
        assert env["REDIS_URL"].startswith("redis://")
        # Nothing long-running starts before migrations succeeded.
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_web_is_replicated_behind_the_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "ports" not in services["web"]  # replicas cannot share a host port; the proxy publishes it
    assert services["proxy"]["ports"]
    conf = (INFRA / "nginx" / "flowdeck.conf").read_text()
    assert "server web:8000" in conf
    assert "Upgrade $http_upgrade" in conf  # websockets


def test_compose_server_services_share_the_server_image(compose: dict[str, Any]) -> None:
    for name in SERVER_SERVICES:
        build = compose["services"][name]["build"]
        assert build["dockerfile"] == "infra/docker/Dockerfile"
        assert (INFRA / build["context"] / build["dockerfile"]).resolve().is_file()


def test_compose_mounted_files_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), source


def test_postgres_init_creates_both_roles_without_rls_bypass() -> None:
    script = (INFRA / "postgres" / "init-roles.sh").read_text()
    for role in ("flowdeck_owner", "flowdeck_app"):
        assert re.search(rf"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS", script), role
    assert "CREATE DATABASE flowdeck OWNER flowdeck_owner" in script


# --- Dockerfiles ---------------------------------------------------------------------------------


def test_server_dockerfile() -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM node:\S+ AS webapp", text, re.M)
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "requirements/base.txt" in text  # installs the lock, not loose ranges
    assert "npm --prefix frontend/app ci" in text
    # The web tier is config.serve: FLOWDECK_WEB_WORKERS processes on one port (docs/operations.md).
    assert 'CMD ["python", "-m", "config.serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    assert "FLOWDECK_WEB_WORKERS" in text
    assert "USER 10001" in text


def test_agent_dockerfile_has_no_server() -> None:
    text = (INFRA / "docker" / "Dockerfile.agent").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "agents_sdk" in text
    assert "requirements/" not in text and "manage.py" not in text
    assert 'ENTRYPOINT ["flowdeck"]' in text


# --- Helm ----------------------------------------------------------------------------------------


def test_chart_metadata() -> None:
    chart = load(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "flowdeck"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["appVersion"]


@pytest.mark.parametrize(
    "name",
    [
        "_helpers.tpl",
        "configmap.yaml",
        "secret.yaml",
        "web-deployment.yaml",
        "web-service.yaml",
        "worker-deployment.yaml",
        "beat-deployment.yaml",
        "migrate-secret.yaml",
        "migrate-job.yaml",
        "ingress.yaml",
    ],
)
def test_chart_template_exists(name: str) -> None:
    assert (CHART / "templates" / name).is_file()


def test_values_separate_the_owner_and_app_database_urls(values: dict[str, Any]) -> None:
    db = values["database"]
    assert db["appRole"] == "flowdeck_app"
    assert db["appUrl"].startswith("postgres://flowdeck_app:")
    assert db["ownerUrl"].startswith("postgres://flowdeck_owner:")
    assert values["ingress"]["enabled"] is False  # optional
    assert values["web"]["replicas"] >= 1 and values["worker"]["replicas"] >= 1


def test_beat_is_a_singleton(values: dict[str, Any]) -> None:
    assert "replicas" not in values["beat"]  # not configurable on purpose
    beat = template("beat-deployment.yaml")
    assert re.search(r"^  replicas: 1$", beat, re.M)
    assert ".Values.beat.replicas" not in beat
    assert "type: Recreate" in beat
    assert "django_celery_beat.schedulers:DatabaseScheduler" in beat


def test_migrate_job_is_a_pre_install_hook_using_the_owner_url() -> None:
    job = template("migrate-job.yaml")
    assert '"helm.sh/hook": pre-install,pre-upgrade' in job
    assert "kind: Job" in job
    assert '["python", "manage.py", "migrate", "--noinput"]' in job
    assert "key: OWNER_DATABASE_URL" in job
    assert "flowdeck.envFrom" not in job  # never the app secret
    secret = template("migrate-secret.yaml")
    assert '"helm.sh/hook": pre-install,pre-upgrade' in secret
    assert ".Values.database.ownerUrl" in secret
    # The hook secret exists before the job that reads it.
    weight = re.compile(r'"helm.sh/hook-weight": "(-?\d+)"')
    assert int(weight.search(secret).group(1)) < int(weight.search(job).group(1))  # type: ignore[union-attr]


def test_long_running_pods_never_see_the_owner_url() -> None:
    for name in ("web-deployment.yaml", "worker-deployment.yaml", "beat-deployment.yaml", "secret.yaml"):
        text = template(name)
        assert "ownerUrl" not in text and "OWNER_DATABASE_URL" not in text, name
    assert ".Values.database.appUrl" in template("secret.yaml")


def test_web_replicas_come_from_values() -> None:
    web = template("web-deployment.yaml")
    assert "replicas: {{ .Values.web.replicas }}" in web
    assert "path: /healthz" in web
    # Readiness checks the database and migrations; liveness only the process (G2).
    readiness, liveness = web.split("readinessProbe:")[1].split("livenessProbe:")
    assert "path: /readyz" in readiness and "path: /healthz" in liveness
    assert "- config.serve" in web


def test_web_workers_and_threads_come_from_values(values: dict[str, Any]) -> None:
    web = template("web-deployment.yaml")
    # Set from values, never from os.cpu_count(), which sees the node's CPUs, not the pod's.
    assert "name: FLOWDECK_WEB_WORKERS\n              value: {{ .Values.web.workers | quote }}" in web
    assert "name: FLOWDECK_WEB_THREADS\n              value: {{ .Values.web.threads | quote }}" in web
    assert "name: FLOWDECK_WEB_ACTIVE\n              value: {{ .Values.web.active | quote }}" in web
    assert values["web"]["workers"] >= 1 and values["web"]["threads"] >= values["web"]["active"] >= 1


def test_compose_web_runs_config_serve_with_the_workers_setting(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    assert web["command"] == ["python", "-m", "config.serve", "--host", "0.0.0.0", "--port", "8000"]
    # Passed through from infra/.env; empty means the default (one per CPU, 8 threads).
    assert web["environment"]["FLOWDECK_WEB_WORKERS"] == "${FLOWDECK_WEB_WORKERS:-}"
    assert web["environment"]["FLOWDECK_WEB_THREADS"] == "${FLOWDECK_WEB_THREADS:-}"
    assert web["environment"]["FLOWDECK_WEB_ACTIVE"] == "${FLOWDECK_WEB_ACTIVE:-}"
    example = (INFRA / ".env.example").read_text()
    assert re.search(r"^FLOWDECK_WEB_WORKERS=", example, re.M)
    assert re.search(r"^FLOWDECK_WEB_ACTIVE=", example, re.M)


# --- proxies and the body limit (docs/operations.md, "Proxies") -----------------------------------


def _trusts_everyone(entries: list[str]) -> bool:
    return any(e.strip() == "*" or e.strip().endswith("/0") for e in entries)


def test_nothing_shipped_trusts_forwarded_headers_from_everyone(values: dict[str, Any]) -> None:
    # "*" let every client choose its address with X-Forwarded-For (rate limits, the audit log).
    shipped = [INFRA / "compose.yaml", INFRA / ".env.example", CHART / "values.yaml", *(CHART / "templates").iterdir(),
               INFRA / "docker" / "Dockerfile"]
    for path in shipped:
        text = path.read_text()
        assert "FORWARDED_ALLOW_IPS" not in text, path  # uvicorn's name; the server reads FLOWDECK_TRUSTED_PROXIES
        assert not re.search(r"""TRUSTED_PROXIES\W+["']?\*""", text), path
    assert "forwardedAllowIps" not in values["web"]
    assert not _trusts_everyone(values["web"]["trustedProxies"])
    web = template("web-deployment.yaml")
    assert "name: FLOWDECK_TRUSTED_PROXIES" in web and ".Values.web.trustedProxies" in web


def test_compose_trusts_only_the_proxys_pinned_address(compose: dict[str, Any]) -> None:
    subnet = ipaddress.ip_network(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    proxy_address = compose["services"]["proxy"]["networks"]["default"]["ipv4_address"]
    assert ipaddress.ip_address(proxy_address) in subnet
    for name in ("web", "worker", "beat"):
        assert compose["services"][name]["environment"]["FLOWDECK_TRUSTED_PROXIES"] == (
            f"${{FLOWDECK_TRUSTED_PROXIES:-{proxy_address}}}")
    example = (INFRA / ".env.example").read_text()
    assert re.search(rf"^FLOWDECK_TRUSTED_PROXIES={re.escape(proxy_address)}$", example, re.M)


def test_proxies_let_through_just_over_the_servers_body_limit(values: dict[str, Any]) -> None:
    def size(text: str) -> int:
        number, unit = re.fullmatch(r"(\d+)([km]?)", text.strip().lower()).groups()  # type: ignore[union-attr]
        return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]

    # Above the limit, so that a client gets Flowdeck's own 413 body rather than the proxy's page,
    # and within what the server reads past, so that the proxy gets that 413 rather than a reset.
    conf = (INFRA / "nginx" / "flowdeck.conf").read_text()
    nginx = size(re.search(r"client_max_body_size\s+(\S+);", conf).group(1))  # type: ignore[union-attr]
    ingress = size(values["ingress"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"])
    for allowed in (nginx, ingress):
        assert settings.MAX_REQUEST_BODY_BYTES < allowed <= settings.MAX_REQUEST_BODY_BYTES + READ_PAST_BYTES
