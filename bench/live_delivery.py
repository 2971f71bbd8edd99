"""Benchmark: delivery latency of live updates, from a committed state change to a subscribed
browser socket, with 100 connected clients (issue 5).

Starts one real server (``python -m config.embedded --no-periodic`` in a subprocess, on DATABASE_URL
and REDIS_URL: the Redis channel layer and the Redis replay store), opens BENCH_CLIENTS (100)
browser sockets to one workspace with a real session cookie, then commits BENCH_CHANGES (200) flow-
run state changes through the service layer in this process (``flow_run_mark``, one transaction
each, alternating states), one at a time. Latency = the moment a client receives the
``flow_run.state_changed`` event − the moment the change's transaction committed (the on-commit
hook). Every client's every event counts: 100 × 200 samples.

Prints p50 / p90 / p99 / max, how many events were missed (expect 0), and the configuration.
Target (issue 5): p99 < 50 ms.

    DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/live_delivery.py

Knobs: BENCH_CLIENTS (100), BENCH_CHANGES (200), BENCH_GAP_MS (20: pause between changes). It
creates a throw-away workspace and removes it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The servers and workers started here run on PostgreSQL, where the default key is refused
# (core/checks.py): a key for this run unless one is set.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("FLOWDECK_FAST_PASSWORD_HASHER", "1")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import Client  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "100"))
CHANGES = int(os.environ.get("BENCH_CHANGES", "200"))
GAP = int(os.environ.get("BENCH_GAP_MS", "20")) / 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWDECK_INPROCESS_PERIODIC": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(port), "--log-level",
         "warning", "--no-periodic"], cwd=ROOT, env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def _world():  # type: ignore[no-untyped-def]
    from accounts.authz import Principal
    from accounts.models import Membership, Role, User, Workspace
    from core.tenancy import workspace_scope
    from orchestration.models import Flow, FlowVersion, Project
    from orchestration.services.runs import flow_run_create

    slug = f"bench-{uuid.uuid4().hex[:8]}"
    workspace = Workspace.objects.create(name="Bench", slug=slug)
    user = User.objects.create_user(f"{slug}@example.com", "x" * 20)
    Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
    actor = Principal(workspace=workspace, role=Role.OWNER, user=user)
    with workspace_scope([workspace.pk]):
        project = Project.objects.unscoped().create(workspace=workspace, name="bench")
        flow = Flow.objects.unscoped().create(workspace=workspace, project=project, name="bench")
        FlowVersion.objects.unscoped().create(workspace=workspace, flow=flow, version=1, content_hash="0" * 64,
                                              tasks=[], edges=[], parameters=[], storage={"type": "module"})
        run, _ = flow_run_create(actor=actor, flow=flow)
    client = Client()
    client.force_login(user)
    return workspace, actor, run, client.cookies["sessionid"].value


def _cleanup(workspace) -> None:  # type: ignore[no-untyped-def]
    from core.tenancy import rls_bypass
    from orchestration.models import FlowRun

    with rls_bypass():
        FlowRun.objects.unscoped().filter(workspace=workspace).delete()  # runs protect their versions
        workspace.delete()


async def _client(url: str, headers: dict[str, str], ready: asyncio.Event, counter: list[int],
                  arrivals: dict[int, list[float]], stop: asyncio.Event) -> None:
    async with connect(url, additional_headers=headers, max_queue=None) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        counter[0] += 1
        if counter[0] == CLIENTS:
            ready.set()
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.perf_counter()
            message = json.loads(raw)
            if message.get("type") == "event" and message["event"]["type"] == "flow_run.state_changed":
                arrivals.setdefault(message["event"]["data"]["state_version"], []).append(now)


async def _main(port: int) -> None:
    from core.tenancy import workspace_scope
    from orchestration.models import FlowRun
    from orchestration.services.runs import flow_run_mark

    workspace, actor, run, session = await asyncio.to_thread(_world)
    try:
        url = f"ws://127.0.0.1:{port}/ws/v1/workspaces/{workspace.slug}/events/"
        headers = {"Origin": f"http://127.0.0.1:{port}", "Cookie": f"sessionid={session}"}
        ready, stop, counter = asyncio.Event(), asyncio.Event(), [0]
        arrivals: dict[int, list[float]] = {}
        tasks = [asyncio.create_task(_client(url, headers, ready, counter, arrivals, stop)) for _ in range(CLIENTS)]
        await asyncio.wait_for(ready.wait(), 60)
        committed: dict[int, float] = {}

        def change(i: int) -> None:
            with workspace_scope([workspace.pk]):
                current = FlowRun.objects.for_workspace(workspace).get(pk=run.pk)
                with transaction.atomic():
                    result = flow_run_mark(actor=actor, flow_run=current,
                                           state_type="SCHEDULED" if i % 2 else "PAUSED")
                    version = result.state_version
                    transaction.on_commit(lambda: committed.__setitem__(version, time.perf_counter()))

        for i in range(CHANGES):
            await asyncio.to_thread(change, i)
            await asyncio.sleep(GAP)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        samples = [
            (arrived - committed[version]) * 1000
            for version, times in arrivals.items() if version in committed for arrived in times
        ]
        expected = CLIENTS * len(committed)
        samples.sort()

        def pct(p: float) -> float:
            return samples[min(len(samples) - 1, int(p / 100 * len(samples)))]

        print(f"live delivery: {CLIENTS} clients, {len(committed)} committed state changes, one server process, "
              f"Redis channel layer, {os.cpu_count()} cores")
        print(f"  database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
              f"redis: {settings.REDIS_URL or '(none)'}")
        print(f"  delivered {len(samples)} of {expected} (missed {expected - len(samples)})")
        if samples:
            print(f"  latency ms: p50 {pct(50):.1f}  p90 {pct(90):.1f}  p99 {pct(99):.1f}  "
                  f"max {samples[-1]:.1f}  mean {statistics.fmean(samples):.1f}")
            print(f"  target p99 < 50 ms: {'met' if pct(99) < 50 else 'NOT met'}")
    finally:
        await asyncio.to_thread(_cleanup, workspace)


def main() -> None:
    if not settings.REDIS_URL:
        raise SystemExit("Set REDIS_URL (and DATABASE_URL): this measures the Redis channel layer.")
    # A SIGTERM (e.g. from `timeout`) still stops the server subprocess below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    port = _free_port()
    server = _start_server(port)
    try:
        asyncio.run(asyncio.wait_for(_main(port), 600))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
