"""A real server process (``python -m config.embedded --no-periodic``, the command the live and SDK
tests use, on the test database and Redis) with a small HTTP thread pool and a log of every thread
it starts (thread_log/sitecustomize.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sdk.conftest import LiveServer

THREADS = 3
THREAD_LOG_DIR = Path(__file__).resolve().parent / "thread_log"


class ThreadLoggingServer(LiveServer):
    def __init__(self, *, log_dir: Path) -> None:
        super().__init__(periodic_every=None, log_dir=log_dir)
        self.thread_log = log_dir / f"threads-{self.port}.txt"

    def env(self) -> dict[str, str]:
        env = super().env()
        path = os.pathsep.join([str(THREAD_LOG_DIR), *filter(None, [env.get("PYTHONPATH")])])
        env.update(PYTHONPATH=path, FLOWDECK_TEST_THREAD_LOG=str(self.thread_log), FLOWDECK_WEB_THREADS=str(THREADS))
        return env

    def threads_started(self) -> list[str]:
        return self.thread_log.read_text().splitlines() if self.thread_log.exists() else []


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory) -> Iterator[ThreadLoggingServer]:  # type: ignore[no-untyped-def]
    server = ThreadLoggingServer(log_dir=tmp_path_factory.mktemp("serving"))
    server.start()
    yield server
    server.stop()
