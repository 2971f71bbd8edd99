"""A redis-server of a test's own, on a free port, that the test may stop and start again (always
empty: no RDB, no AOF). Tests that take Redis away must never touch the shared one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tests.sdk.conftest import free_port
from tests.sdk.e2e.harness import wait_for


class RedisProcess:
    """A redis-server of this test's own that can be stopped and started again, always empty."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--protected-mode", "no"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            wait_for(lambda: self._pings(client), timeout, "redis-server to answer", interval=0.05)
        finally:
            client.close()

    def _pings(self, client: redis.Redis) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()[-2000:]
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
