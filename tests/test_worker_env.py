"""The Redis database each pytest-xdist worker gets (tests/worker_env.py)."""

from __future__ import annotations

import pytest

from tests.worker_env import worker_redis_url


@pytest.mark.parametrize(("url", "worker", "expected"), [
    ("redis://127.0.0.1:6379/0", "gw0", "redis://127.0.0.1:6379/1"),
    ("redis://127.0.0.1:6379/0", "gw1", "redis://127.0.0.1:6379/2"),
    ("redis://127.0.0.1:6379", "gw0", "redis://127.0.0.1:6379/1"),
    ("redis://:secret@cache:6380/9", "gw1", "redis://:secret@cache:6380/11"),
    ("redis://127.0.0.1:6379/15", "gw0", "redis://127.0.0.1:6379/0"),
])
def test_each_worker_gets_a_database_after_the_configured_one(url: str, worker: str, expected: str) -> None:
    assert worker_redis_url(url, worker) == expected


def test_two_workers_never_share_a_database() -> None:
    urls = {worker_redis_url("redis://127.0.0.1:6379/0", f"gw{n}") for n in range(8)}
    assert len(urls) == 8 and "redis://127.0.0.1:6379/0" not in urls
