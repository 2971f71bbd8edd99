"""``python -m config.serve`` with several server processes (the production command: Dockerfile,
compose, Helm): FLOWDECK_WEB_WORKERS processes serve one port, each on its own SO_REUSEPORT socket;
one that dies is started again; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.sdk.conftest import ROOT, LiveServer


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def wait_until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def serving(django_db_setup, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:  # type: ignore[no-untyped-def]
    settings = LiveServer(periodic_every=None, log_dir=tmp_path)  # the test database and Redis
    env = {**settings.env(), "FLOWDECK_WEB_WORKERS": "2"}
    with (tmp_path / "serve.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "config.serve", "--host", "127.0.0.1",
                                 "--port", str(settings.port), "--log-level", "warning"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: len(children(proc.pid)) == 2 and healthy(settings.url), timeout=60)
        yield proc, settings.url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_share_the_port_are_restarted_and_stop_together(serving):  # type: ignore[no-untyped-def]
    proc, url = serving
    workers = children(proc.pid)
    # Each worker listens on the port itself (the parent never does): the kernel picks one per connection.
    port = int(url.rsplit(":", 1)[1])
    for pid in workers:
        listening = [c for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        assert [c.laddr.port for c in listening] == [port]
    assert not psutil.Process(proc.pid).net_connections("tcp")
    for _ in range(20):
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200  # a new connection each

    dead = min(workers)
    os.kill(dead, signal.SIGKILL)
    wait_until(lambda: dead not in children(proc.pid) and len(children(proc.pid)) == 2, timeout=60)
    wait_until(lambda: healthy(url), timeout=30)

    survivors = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in survivors)
