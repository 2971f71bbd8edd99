"""A real Celery worker and a real Celery beat on the pytest test database and the test Redis, for
tests that must see the platform ticks run as production runs them (beat schedules, the worker
executes; nothing in the test process calls a service).

Beat is started as ``infra/compose.yaml`` starts it (the DatabaseScheduler; the platform ticks
install themselves at its start) with ``FLOWDECK_PLATFORM_TICK_SECONDS=1``, so every tick runs every
second. Both connect as the application role (the test database's current user), like the
servers of tests/sdk/conftest.py. Their output goes to log files that a failing test prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

ROOT = Path(__file__).resolve().parents[3]
TICK_SECONDS = 1


def database_url() -> str:
    db = connections["default"].settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the test process dies (a killed pytest must not leave a
    beat ticking every second against the test database). Linux only; nothing elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class CeleryProcess:
    def __init__(self, name: str, args: list[str], env: dict[str, str], directory: Path, ready: str) -> None:
        self.name = name
        self.log_path = directory / f"{name}.log"
        self.ready_marker = ready
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", *args], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def count(self, text: str) -> int:
        return self.log().count(text)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        wait_for(lambda: self.ready_marker in self.log(), timeout, f"the Celery {self.name} to start", [self])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class CeleryStack:
    def __init__(self, worker: CeleryProcess, beat: CeleryProcess) -> None:
        self.worker = worker
        self.beat = beat

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.log()[-4000:]}" for p in (self.beat, self.worker))

    def task_succeeded(self, task: str) -> int:
        """How many runs of ``task`` the worker finished (its INFO log line per task)."""
        return sum(1 for line in self.worker.log().splitlines() if f"Task {task}[" in line and " succeeded in " in line)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, processes: list[CeleryProcess]) -> Any:
    """Poll ``predicate`` until it is true; a process that exits or the timeout fails the test with
    the processes' logs."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        dead = [p.name for p in processes if not p.alive()]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in processes)
            reason = f"{', '.join(dead)} exited" if dead else f"timed out after {timeout}s"
            raise AssertionError(f"{reason} waiting for {what}\n{logs}")
        time.sleep(0.1)


@contextmanager
def celery_worker_and_beat(directory: Path, extra_env: dict[str, str] | None = None) -> Iterator[CeleryStack]:
    """Start a worker (threads pool) and a beat; wait until both are up; stop both afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_"))}
    env.update(
        DATABASE_URL=database_url(),
        DATABASE_POOL="false",
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        DJANGO_SETTINGS_MODULE="config.settings",
        FLOWDECK_FAST_PASSWORD_HASHER="1",
        FLOWDECK_INPROCESS_PERIODIC="0",
        FLOWDECK_WEB_TIER_BEAT="0",
        FLOWDECK_PLATFORM_TICK_SECONDS=str(TICK_SECONDS),
        PYTHONDONTWRITEBYTECODE="1",
        **(extra_env or {}),
    )
    worker = CeleryProcess(
        "worker", ["worker", "--pool", "threads", "--concurrency", "4", "--loglevel", "INFO", "--without-gossip",
                   "--without-mingle", "--without-heartbeat", "--hostname", f"alerts-test-{os.getpid()}@%h"],
        env, directory, ready=" ready.")
    beat = CeleryProcess(
        "beat", ["beat", "--loglevel", "INFO", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                 "--pidfile", str(directory / "beat.pid"), "--schedule", str(directory / "beat-schedule")],
        env, directory, ready="platform tick(s) installed")
    stack = CeleryStack(worker, beat)
    try:
        worker.wait_ready(60)
        beat.wait_ready(60)
        yield stack
    finally:
        beat.stop()
        worker.stop()
