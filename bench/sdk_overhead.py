"""Benchmark: the SDK's overhead per task, for a 1,000-task flow.

1. Locally (no server): ``flow.run()`` of a flow of 1,000 tasks that do nothing (a fan-in of 999
   independent tasks into one, so the runner's bookkeeping is what is measured), with the
   LocalExecutor. Prints the time per task beyond calling the functions themselves, twice: with the
   engine's INFO lines off (level WARNING: each task checks the level once) and on (two lines per
   task, formatted and written by a stream handler, to the null device).
2. Under an agent, with every state reported: a real Flowdeck server (``python -m config.embedded``
   in a subprocess, on DATABASE_URL and REDIS_URL), the run claimed with an agent's key, then
   executed exactly as the flow-run process does (``RunReporter`` as the observer: task-run states
   and logs batched by its background sender). Prints the time per task, the number of HTTP requests
   the run made, and how long after the flow's end every task state was visible on the server.

Targets (issue 4): ≤ 0.5 ms per task locally (issue 16: also with the INFO lines on); ≤ 1 ms per
task under an agent with every state reported, and all 1,000 task states visible within 2 s of the
flow's end.

    DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/sdk_overhead.py

Knobs: BENCH_TASKS (1000), BENCH_REPEAT (5). It creates a throw-away workspace and removes it.
"""

from __future__ import annotations

import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
# The servers and workers started here run on PostgreSQL, where the default key is refused
# (core/checks.py): a key for this run unless one is set.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("FLOWDECK_FAST_PASSWORD_HASHER", "1")

TASKS = int(os.environ.get("BENCH_TASKS", "1000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))


def build_flow(tasks: int) -> Any:
    from flowdeck import Flow, task

    @task
    def noop(i: int) -> int:
        return i

    @task
    def gather(values: list[int]) -> int:
        return len(values)

    with Flow("sdk-overhead") as flow:
        gather([noop(i) for i in range(tasks - 1)])
    return flow


class _EngineLogging:
    """The ``flowdeck`` logger at INFO, writing formatted lines to the null device (``on``), or at
    WARNING (off); put back as it was afterwards."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        import logging

        from flowdeck.utilities.logging import DEFAULT_FORMAT, get_logger

        self.logger = get_logger()
        self.saved = (self.logger.level, list(self.logger.handlers), self.logger.propagate)
        self.sink = open(os.devnull, "w")  # noqa: SIM115 (closed in __exit__)
        handler = logging.StreamHandler(self.sink)
        handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
        self.logger.handlers = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO if self.on else logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        level, handlers, propagate = self.saved
        self.logger.setLevel(level)
        self.logger.handlers = handlers
        self.logger.propagate = propagate
        self.sink.close()


def bench_local(logging_on: bool = False) -> float:
    with _EngineLogging(logging_on):
        return _bench_local("on" if logging_on else "off")


def _bench_local(label: str) -> float:
    flow = build_flow(TASKS)
    flow.run()  # warm up
    timings = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        state = flow.run()
        timings.append(time.perf_counter() - start)
        assert state.is_successful(), state
    # What the task bodies themselves cost, to subtract.
    start = time.perf_counter()
    values = [i for i in range(TASKS - 1)]
    len(values)
    bodies = time.perf_counter() - start
    per_task = (statistics.median(timings) - bodies) / TASKS * 1000
    print(f"local, engine logging {label}: {TASKS} tasks, flow.run() median {statistics.median(timings) * 1000:.1f} "
          f"ms over {REPEAT} runs → {per_task:.3f} ms per task (target ≤ 0.5)")
    return per_task


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: dict[str, int] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        kind = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        self.requests[kind] = self.requests.get(kind, 0) + 1
        return super().handle_request(request)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(port), "--no-periodic",
         "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "FLOWDECK_INPROCESS_PERIODIC": "0"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def _workspace() -> tuple[Any, dict[str, str]]:
    import django

    django.setup()
    from accounts import keys
    from accounts.models import ApiKey, Membership, Role, ServiceAccount, User, Workspace
    from core.tenancy import rls_bypass

    slug = f"bench-{uuid.uuid4().hex[:8]}"
    workspace = Workspace.objects.create(name="Bench", slug=slug)
    user = User.objects.create_user(f"{slug}@example.com", "x" * 20)
    Membership.objects.create(workspace=workspace, user=user, role=Role.DEVELOPER)
    made: dict[str, str] = {}
    with rls_bypass():
        account = ServiceAccount.all_objects.create(workspace=workspace, name="bench-agent", role=Role.AGENT)
        for kind, owner in (("user", {"user": user}), ("service_account", {"service_account": account})):
            generated = keys.generate(kind)
            ApiKey.all_objects.create(workspace=workspace, kind=kind, name="bench", **owner,
                                      lookup_prefix=generated.lookup_prefix, secret_hash=generated.secret_hash)
            made[kind] = generated.secret
    return (workspace, user), made


def _clean_up(created: tuple[Any, Any]) -> None:
    from core.tenancy import rls_bypass
    from orchestration.models import FlowRun

    workspace, user = created
    with rls_bypass():
        FlowRun.objects.for_workspace(workspace).delete()
        workspace.delete()
        user.delete()


def bench_agent(local_per_task: float) -> None:
    from flowdeck.client import Client
    from flowdeck.engine.state import Running
    from flowdeck.reporting import RunReporter

    created, made = _workspace()
    proc, url = _start_server()
    workspace = created[0].slug
    try:
        flow = build_flow(TASKS)
        developer = Client(api_url=url, api_key=made["user"], workspace=workspace)
        version, _ = developer.register_flow(project="bench", name=flow.name, metadata=flow.serialize())
        flow_id = version.get("flow") or version["flow_id"]
        run = developer.create_flow_run(str(flow_id))
        transport = CountingTransport()
        agent = Client(api_url=url, api_key=made["service_account"], workspace=workspace, transport=transport)
        agent_row = agent.register_agent("bench-agent", "process", [], "bench", 10)
        (claimed,) = agent.claim(agent_row["id"], limit=1, lease_seconds=60)
        assert claimed["id"] == run["id"]
        transport.requests.clear()
        # what the flow-run process does, timed from RUNNING to the flow's final state
        start = time.perf_counter()
        reporter = RunReporter(agent, claimed["id"], claimed["attempt"])
        reporter.flow_state(Running())
        state = flow.run(observer=reporter)
        ended = time.perf_counter()
        assert state.is_successful(), state
        assert reporter.close(timeout=60), "the reporter could not deliver everything"
        delivered = time.perf_counter()
        per_task = (ended - start) / TASKS * 1000

        def visible() -> int:
            detail = developer.get_flow_run(claimed["id"])
            return sum(1 for t in detail["task_runs"] if t["state_type"] == "COMPLETED")

        while visible() < TASKS:
            time.sleep(0.05)
        seen = time.perf_counter()
        print(f"under an agent: {TASKS} tasks, every state reported → {per_task:.3f} ms per task "
              f"({per_task - local_per_task:+.3f} ms vs local; target ≤ 1)")
        print(f"  HTTP requests by the run: {sum(transport.requests.values())} "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(transport.requests.items()))})")
        print(f"  all {TASKS} task states visible on the server {seen - ended:.2f} s after the flow ended "
              f"(reporter drained in {delivered - ended:.2f} s; target < 2 s)")
    finally:
        proc.terminate()
        proc.wait(10)
        _clean_up(created)


def main() -> None:
    import logging

    for name in ("httpx", "flowdeck"):  # the figures, not the chatter
        logging.getLogger(name).setLevel(logging.WARNING)
    local = bench_local(logging_on=False)
    bench_local(logging_on=True)
    if os.environ.get("DATABASE_URL"):
        bench_agent(local)
    else:
        print("under an agent: skipped (set DATABASE_URL and REDIS_URL to a migrated PostgreSQL + Redis)")


if __name__ == "__main__":
    main()
