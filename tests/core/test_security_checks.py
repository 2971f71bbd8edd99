"""The production security checklist (core/checks.py, docs/operations.md): outside embedded mode no
server process, Celery worker or beat starts with a missing, default or short SECRET_KEY; in
production none starts with DEBUG, ALLOWED_HOSTS '*', plain http or proxies trusted from everywhere;
``manage.py check --deploy`` enforces the whole list; embedded mode generates its key once, in var/."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from core.checks import deployment_checks, startup_checks
from core.secret_key import INSECURE_DEFAULT_SECRET_KEY, weakness
from tests.sdk.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3y-" + "abcdefghij" * 6


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", PYTHONDONTWRITEBYTECODE="1")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _refusals(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "refuses to start" in line]


# --- Outside embedded mode: the key --------------------------------------------------------------


@pytest.mark.parametrize(("command", "key", "reason"), [
    (["-m", "config.serve"], None, "SECRET_KEY is unset"),
    (["-m", "config.serve"], "short-but-random-3f9a", "fewer than 50"),
    (["-m", "config.embedded", "--no-periodic"], INSECURE_DEFAULT_SECRET_KEY, "SECRET_KEY is unset"),
])
def test_a_server_on_postgresql_refuses_a_missing_default_or_short_key(command, key, reason) -> None:
    assert os.environ["DATABASE_URL"].startswith("postgres")
    done = _run([*command, "--host", "127.0.0.1", "--port", str(free_port())], _env(SECRET_KEY=key))
    assert done.returncode == 1
    refusals = _refusals(done.stderr)
    assert len(refusals) == 1 and reason in refusals[0] and "[flowdeck.E001;" in refusals[0], done.stderr


@pytest.mark.parametrize("command", [["worker", "--pool", "solo"], ["beat"]])
def test_celery_refuses_the_default_key_before_it_runs_anything(command, tmp_path) -> None:
    args = ["-m", "celery", "-A", "config.celery:app", *command, "--loglevel", "WARNING"]
    if command == ["beat"]:
        args += ["--schedule", str(tmp_path / "beat-schedule")]
    # CELERY_SKIP_CHECKS: Celery's Django fix-up would first run every system check and only log what
    # they find (it never stops a worker); the refusal is Flowdeck's own receiver (config/celery.py).
    done = _run(args, _env(CELERY_SKIP_CHECKS="1"))
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(_refusals(done.stderr)) == 1 and "flowdeck.E001" in done.stderr


def test_django_commands_stop_on_the_same_error(settings) -> None:
    settings.SECRET_KEY = INSECURE_DEFAULT_SECRET_KEY
    with pytest.raises(SystemCheckError, match="flowdeck.E001"):
        call_command("check")
    settings.SECRET_KEY = GOOD_KEY
    call_command("check")


# --- Production: the whole list -----------------------------------------------------------------


@pytest.fixture
def production(settings):  # type: ignore[no-untyped-def]
    """What config/settings.py sets with FLOWDECK_PRODUCTION and a correct environment."""
    settings.PRODUCTION = True
    settings.EMBEDDED_MODE = False
    settings.SECRET_KEY = GOOD_KEY
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["flowdeck.example.com"]
    settings.PUBLIC_URL = "https://flowdeck.example.com"
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.FLOWDECK_TRUSTED_PROXIES = ["10.0.0.0/8"]
    return settings


def _ids(messages) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.id for m in messages]


def test_a_correct_production_configuration_passes(production) -> None:  # type: ignore[no-untyped-def]
    assert startup_checks() == [] and deployment_checks() == []
    # Stripe and SMTP are not on the list.
    production.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    assert startup_checks() == []


@pytest.mark.parametrize(("change", "rule"), [
    ({"SECRET_KEY": "a" * 64}, "flowdeck.E001"),
    ({"DEBUG": True}, "flowdeck.E002"),
    ({"ALLOWED_HOSTS": ["*"]}, "flowdeck.E003"),
    ({"ALLOWED_HOSTS": []}, "flowdeck.E003"),
    ({"SESSION_COOKIE_SECURE": False}, "flowdeck.E004"),
    ({"SECURE_HSTS_SECONDS": 0}, "flowdeck.E004"),
    ({"PUBLIC_URL": "http://flowdeck.example.com"}, "flowdeck.E005"),
    ({"FLOWDECK_TRUSTED_PROXIES": ["*"]}, "flowdeck.E006"),
    ({"FLOWDECK_TRUSTED_PROXIES": ["10.0.0.1", "0.0.0.0/0"]}, "flowdeck.E006"),
])
def test_production_refuses_each_broken_rule(production, change, rule) -> None:  # type: ignore[no-untyped-def]
    for name, value in change.items():
        setattr(production, name, value)
    assert _ids(startup_checks()) == [rule]
    assert all(m.is_serious() for m in startup_checks())


def test_plain_http_on_the_machine_itself_is_allowed_in_production(production) -> None:  # type: ignore[no-untyped-def]
    production.PUBLIC_URL = "http://localhost:8000"  # infra/compose.yaml's default, tried on one machine
    assert startup_checks() == []


def test_outside_production_only_the_key_is_enforced_at_start_and_check_deploy_wants_everything(
    settings,
) -> None:
    settings.PRODUCTION = False
    settings.EMBEDDED_MODE = False
    settings.SECRET_KEY = GOOD_KEY
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = ["*"]
    settings.SESSION_COOKIE_SECURE = False
    assert startup_checks() == []
    assert set(_ids(deployment_checks())) == {"flowdeck.E000", "flowdeck.E002", "flowdeck.E003", "flowdeck.E004"}


def test_check_deploy_passes_a_production_environment_and_fails_a_default_one(settings) -> None:
    production = _env(
        SECRET_KEY=GOOD_KEY, FLOWDECK_PRODUCTION="true", ALLOWED_HOSTS="flowdeck.example.com",
        FLOWDECK_PUBLIC_URL="https://flowdeck.example.com", FLOWDECK_TRUSTED_PROXIES="10.0.0.0/8",
        FORWARDED_ALLOW_IPS=None, DEBUG=None,
    )
    # The security checks only (a whole --deploy run also builds the OpenAPI schema: slow, and
    # not what this test is about).
    passed = _run(["manage.py", "check", "--deploy", "--tag", "security"], production)
    assert passed.returncode == 0, passed.stderr
    assert "flowdeck." not in passed.stdout + passed.stderr

    # This test process: PostgreSQL with a good key, not production.
    assert not settings.PRODUCTION and weakness(settings.SECRET_KEY) is None
    with pytest.raises(SystemCheckError) as refused:
        call_command("check", deploy=True, tags=["security"])
    assert "flowdeck.E000" in str(refused.value) and "flowdeck.E004" in str(refused.value)
    assert "flowdeck.E001" not in str(refused.value)


# --- Embedded mode, and the image build ----------------------------------------------------------

SHOW_KEY = ("from django.conf import settings; from core.checks import startup_checks; "
            "print(settings.EMBEDDED_MODE, settings.SECRET_KEY, [m.id for m in startup_checks()])")


def test_embedded_mode_generates_its_key_once_keeps_it_private_and_starts(tmp_path) -> None:
    embedded = _env(DATABASE_URL=None, REDIS_URL=None, FLOWDECK_VAR_DIR=str(tmp_path))
    first = _run(["-c", SHOW_KEY], embedded).stdout.split()
    again = _run(["-c", SHOW_KEY], embedded).stdout.split()
    assert first[0] == "True" and first[2] == "[]"
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == first[1] == again[1]
    assert weakness(first[1]) is None
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if "secret" in p.name] == ["secret_key"]  # no temporary left

    # SQLite with FLOWDECK_PRODUCTION is not embedded mode: no key is generated, the start is refused.
    elsewhere = tmp_path / "production"
    done = _run(["-c", SHOW_KEY], {**embedded, "FLOWDECK_VAR_DIR": str(elsewhere), "FLOWDECK_PRODUCTION": "1"})
    assert done.stdout.split()[0] == "False" and "flowdeck.E001" in done.stdout
    assert not (elsewhere / "secret_key").exists()


def test_the_image_build_collects_static_files_with_its_placeholder_key(tmp_path) -> None:
    """infra/docker/Dockerfile runs collectstatic with a throwaway key: only the static-files checks
    run there, and nothing is generated into the image."""
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    assert "RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput" in dockerfile
    build = _env(SECRET_KEY="collectstatic-only", FLOWDECK_PRODUCTION="true", FLOWDECK_VAR_DIR=str(tmp_path),
                 DATABASE_URL=None, REDIS_URL=None)
    # --ignore "*": the command with its checks and settings, without walking every static file.
    done = _run(["manage.py", "collectstatic", "--noinput", "--dry-run", "--ignore", "*", "-v0"], build)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "secret_key").exists()
