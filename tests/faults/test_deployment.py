"""A fresh deployment started the way ``infra/compose.yaml`` starts it (its ``migrate``, ``worker``
and ``beat`` commands, nothing else: no ``manage.py setup_periodic_tasks``) has beat running every
platform tick (issue 9, point 6).

The deployment gets a new, empty database in the stack's PostgreSQL and its own Redis database
(the broker), so the stack's own worker and beat do not take part.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from orchestration.periodic import PLATFORM_TICKS
from tests.faults.stack import APP_ROLE, OWNER_ROLE, ROOT, Stack

pytestmark = pytest.mark.postgres

COMPOSE = ROOT / "infra" / "compose.yaml"
# The compose file's own default (4 prefork children) is more than a test needs.
COMPOSE_VARIABLES = {"FLOWDECK_WORKER_CONCURRENCY": "1"}


def compose_command(service: str) -> list[str]:
    """The service's command from infra/compose.yaml, ``${VAR:-default}`` substituted, run with
    this interpreter."""
    command = yaml.safe_load(COMPOSE.read_text())["services"][service]["command"]

    def substitute(word: str) -> str:
        return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: COMPOSE_VARIABLES.get(m[1], m[2]), word)

    words = [substitute(word) for word in command]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    if words[0] == "celery":
        return [sys.executable, "-m", "celery", *words[1:]]
    raise AssertionError(f"unexpected command for {service}: {words}")


class Deployment:
    def __init__(self, stack: Stack, tmp: Path) -> None:
        self.stack = stack
        self.tmp = tmp
        self.database = f"fresh_{uuid.uuid4().hex[:10]}"
        self.owner_url = f"postgres://{OWNER_ROLE}@127.0.0.1:{stack.pg.port}/{self.database}"
        self.app_url = f"postgres://{APP_ROLE}@127.0.0.1:{stack.pg.port}/{self.database}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, *, owner: bool = False, tick_seconds: int | None = None) -> dict[str, str]:
        env = self.stack.server_env()
        env.pop("FLOWDECK_PLATFORM_TICK_SECONDS")
        env.update(DATABASE_URL=self.owner_url if owner else self.app_url,
                   REDIS_URL=f"redis://127.0.0.1:{self.stack.redis.port}/1",
                   FLOWDECK_VAR_DIR=str(self.tmp / "var"))
        if tick_seconds:
            env["FLOWDECK_PLATFORM_TICK_SECONDS"] = str(tick_seconds)
        return env

    def sql(self, query: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.owner_url, autocommit=True, options="-c app.rls_bypass=on") as conn:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []

    def start(self, service: str, env: dict[str, str]) -> None:
        with (self.tmp / f"{service}.log").open("ab") as log:
            self.processes[service] = subprocess.Popen(compose_command(service), cwd=ROOT, env=env, stdout=log,
                                                       stderr=subprocess.STDOUT)

    def log(self, service: str) -> str:
        return (self.tmp / f"{service}.log").read_text(errors="replace")

    def wait_for_log(self, service: str, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.log(service)):
            proc = self.processes[service]
            assert proc.poll() is None, f"{service} exited:\n{self.log(service)[-3000:]}"
            assert time.monotonic() < deadline, f"{service} never logged {pattern!r}:\n{self.log(service)[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def deployment(stack: Stack, tmp_path: Path) -> Iterator[Deployment]:
    stack.ensure_up()
    fresh = Deployment(stack, tmp_path)
    stack.sql(f"CREATE DATABASE {fresh.database} OWNER {OWNER_ROLE}")
    try:
        yield fresh
    finally:
        fresh.stop()
        stack.sql(f"DROP DATABASE IF EXISTS {fresh.database} WITH (FORCE)")


def flowdeck_ticks(deployment: Deployment) -> dict[str, tuple[str, int, bool]]:
    rows = deployment.sql(
        "SELECT t.name, t.task, i.every, t.enabled FROM django_celery_beat_periodictask t "
        "JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id WHERE t.name LIKE 'flowdeck: %%'")
    return {name: (task, every, enabled) for name, task, every, enabled in rows}


def test_compose_migrate_installs_the_ticks_and_compose_beat_runs_every_one(deployment: Deployment):
    # when: compose's migrate job runs on the empty database, as the owner role
    migrate = subprocess.run(compose_command("migrate"), cwd=ROOT, env=deployment.env(owner=True),
                             capture_output=True, text=True, timeout=300, check=False)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-3000:]
    # then: beat's schedule already holds every platform tick, at its own interval
    assert flowdeck_ticks(deployment) == {t.name: (t.task, t.every_seconds, True) for t in PLATFORM_TICKS}

    # given: a database that predates that (its ticks gone), and a schedule due to be expanded
    deployment.sql("DELETE FROM django_celery_beat_periodictask WHERE name LIKE 'flowdeck: %%'")
    schedule_id = seed_schedule(deployment)
    # when: compose's worker and beat start (with the test knob: every tick every second)
    deployment.start("worker", deployment.env())
    deployment.start("beat", deployment.env(tick_seconds=1))
    # then: beat installed the ticks at its start ...
    deployment.wait_for_log("beat", rf"beat: {len(PLATFORM_TICKS)} platform tick\(s\) installed", timeout=90)
    assert flowdeck_ticks(deployment) == {t.name: (t.task, 1, True) for t in PLATFORM_TICKS}
    # ... the worker ran every one of them ...
    for tick in PLATFORM_TICKS:
        deployment.wait_for_log("worker", rf"Task {re.escape(tick.task)}\[[^\]]+\] succeeded", timeout=90)
    # ... and the scheduler tick expanded the schedule into runs
    deadline = time.monotonic() + 30
    while not deployment.sql("SELECT count(*) FROM orchestration_flowrun WHERE schedule_id = %s", schedule_id)[0][0]:
        assert time.monotonic() < deadline, "the scheduler tick never created the schedule's runs"
        time.sleep(0.2)


def seed_schedule(deployment: Deployment) -> str:
    """An interval schedule on a new flow in the fresh database (the suite's factories)."""
    script = (
        "import django; django.setup()\n"
        "from django.utils import timezone\n"
        "from tests.orchestration.factories import FlowVersionFactory\n"
        "from tests.orchestration.schedules.factories import ScheduleFactory\n"
        "now = timezone.now()\n"
        "schedule = ScheduleFactory(flow=FlowVersionFactory().flow, interval_seconds=600, created_at=now,"
        " updated_at=now)\n"
        "print(schedule.pk)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=deployment.env(), capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]
