"""Benchmark: state-transition throughput of the orchestration engine on PostgreSQL.

1. Flow runs: 16 concurrent clients (processes, each with its own database connection) drive runs
   PENDING → RUNNING → COMPLETED through ``flow_run_set_state`` (the CorePolicy, the claiming
   agent as actor for RUNNING and COMPLETED), one transaction per transition. Prints transitions
   per second and p50/p99 latency, with the after-commit event publish (channel layer, Redis) and
   without it (the engine alone). Targets: ≥ 200/s, p99 < 100 ms.
2. Task runs: ``task_run_report_batch`` with batches of 1,000 reports (500 new task runs, each
   RUNNING then COMPLETED), from 1 client and from 4 clients on their own flow runs. Prints task-run
   states per second. Target: ≥ 2,000/s.

It creates a throw-away workspace and deletes it afterwards. Run it against a migrated database:

    DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck python bench/state_transitions.py

Knobs: BENCH_CLIENTS (16), BENCH_RUNS_PER_CLIENT (60), BENCH_BATCHES (10), BENCH_BATCH_SIZE (1000).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("FLOWDECK_FAST_PASSWORD_HASHER", "1")
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "16"))
os.environ.setdefault("DATABASE_POOL", "false")  # each client process opens its own connection

import django  # noqa: E402

django.setup()

from django.db import connection, connections, transaction  # noqa: E402

from accounts.authz import Principal  # noqa: E402
from accounts.models import Membership, Role, ServiceAccount, User, Workspace  # noqa: E402
from core.tenancy import rls_bypass, workspace_scope  # noqa: E402
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state  # noqa: E402
from orchestration.models import Agent, Flow, FlowRun, FlowVersion, Project  # noqa: E402
from orchestration.services.runs import flow_run_bulk_create  # noqa: E402
from orchestration.services.task_runs import task_run_report_batch  # noqa: E402

RUNS_PER_CLIENT = int(os.environ.get("BENCH_RUNS_PER_CLIENT", "60"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "10"))
BATCH_SIZE = int(os.environ.get("BENCH_BATCH_SIZE", "1000"))


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def set_up() -> dict[str, Any]:
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    workspace = Workspace.objects.create(name="Bench", slug=slug)
    user = User.objects.create_user(f"{slug}@example.com", "x" * 20)
    Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
    with rls_bypass():
        account = ServiceAccount.all_objects.create(workspace=workspace, name="bench-agent", role=Role.AGENT)
        agent = Agent.all_objects.create(workspace=workspace, name="bench-agent", service_account=account)
        project = Project.all_objects.create(workspace=workspace, name="bench")
        flow = Flow.all_objects.create(workspace=workspace, project=project, name="bench")
        FlowVersion.all_objects.create(
            workspace=workspace, flow=flow, version=1, content_hash="0" * 64,
            tasks=[{"key": "t", "name": "t", "tags": [], "retries": 0}],
        )
    owner = Principal(workspace=workspace, role=Role.OWNER, user=user)
    return {"workspace": workspace, "user": user, "owner": owner, "flow": flow, "agent": agent,
            "agent_actor": Principal(workspace=workspace, role=Role.AGENT, service_account=account)}


def create_runs(env: dict[str, Any], count: int) -> list[FlowRun]:
    with transaction.atomic():
        runs = flow_run_bulk_create(actor=env["owner"], flow=env["flow"], runs=[{} for _ in range(count)])
    with rls_bypass():  # the claim (not a state): the agent holds every run
        FlowRun.objects.for_workspace(env["workspace"]).filter(pk__in=[r.pk for r in runs]).update(agent=env["agent"])
    return runs


def _flow_client(env: dict[str, Any], run_ids: list[Any], quiet: bool, barrier: Any, out: Any) -> None:
    from channels.layers import channel_layers

    channel_layers.backends.clear()  # the parent's Redis connections do not survive the fork
    if quiet:
        import core.events

        core.events._send = lambda groups, event: None  # type: ignore[assignment]
    ws = env["workspace"].pk
    latencies: list[float] = []
    refused = 0
    barrier.wait()
    for run_id in run_ids:
        for state, actor in (("PENDING", None), ("RUNNING", env["agent_actor"]), ("COMPLETED", env["agent_actor"])):
            start = time.perf_counter()
            with workspace_scope([ws]):  # one transaction per transition, as an API request has
                result = flow_run_set_state(actor=actor, flow_run_id=run_id, workspace_id=ws, attempt=1,
                                            state=ProposedState(type=state))
            latencies.append(time.perf_counter() - start)
            refused += result.status is not SetStateStatus.ACCEPT
    connection.close()
    out.put((latencies, refused))


def bench_flow_runs(env: dict[str, Any], quiet: bool) -> None:
    runs = create_runs(env, CLIENTS * RUNS_PER_CLIENT)
    connections.close_all()  # each forked client opens its own connection
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(CLIENTS + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_flow_client, args=(env, [r.pk for r in runs[i * RUNS_PER_CLIENT:(i + 1) * RUNS_PER_CLIENT]],
                                               quiet, barrier, out))
        for i in range(CLIENTS)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    began = time.perf_counter()
    collected = [out.get() for _ in procs]
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join()
    flat = sorted(x for latencies, _ in collected for x in latencies)
    refused = sum(r for _, r in collected)
    label = "engine alone (event publish off)" if quiet else "with the after-commit event publish"
    print(f"flow-run transitions, {label}: {len(flat)} from {CLIENTS} concurrent clients in {elapsed:.2f} s "
          f"({refused} refused)")
    print(f"  throughput: {len(flat) / elapsed:.0f} transitions/s (target ≥ 200)")
    print(f"  latency p50: {statistics.median(flat) * 1000:.1f} ms, p99: {percentile(flat, 0.99) * 1000:.1f} ms "
          "(target p99 < 100)")


def bench_task_runs(env: dict[str, Any], clients: int) -> None:
    runs = create_runs(env, clients)
    ws = env["workspace"].pk
    for run in runs:
        for state in ("PENDING", "RUNNING"):
            with transaction.atomic(), workspace_scope([ws]):
                flow_run_set_state(actor=None, flow_run_id=run.pk, workspace_id=ws, state=ProposedState(type=state))
    per_batch = BATCH_SIZE // 2
    timings: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        run = runs[i]
        barrier.wait()
        try:
            for b in range(BATCHES):
                reports = [{"task_key": "t", "map_index": b * per_batch + j, "state_type": "RUNNING"}
                           for j in range(per_batch)]
                reports += [{"task_key": "t", "map_index": b * per_batch + j, "state_type": "COMPLETED",
                             "result_ref": f"s3://bench/{b}/{j}"} for j in range(per_batch)]
                start = time.perf_counter()
                with transaction.atomic():
                    results = task_run_report_batch(actor=env["agent_actor"], flow_run=run, attempt=1, reports=reports)
                took = time.perf_counter() - start
                assert all(r.status is SetStateStatus.ACCEPT for r in results)
                with lock:
                    timings.append(took)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    states = clients * BATCHES * per_batch * 2
    timings.sort()
    print(f"task-run states: {states} in batches of {per_batch * 2} from {clients} client(s) in {elapsed:.2f} s")
    print(f"  throughput: {states / elapsed:.0f} states/s (target ≥ 2,000); batch p50 "
          f"{statistics.median(timings) * 1000:.0f} ms, max {timings[-1] * 1000:.0f} ms")


def main() -> None:
    env = set_up()
    try:
        bench_flow_runs(env, quiet=False)
        bench_flow_runs(env, quiet=True)
        bench_task_runs(env, 1)
        bench_task_runs(env, 4)
    finally:
        with rls_bypass():
            FlowRun.objects.for_workspace(env["workspace"]).delete()  # runs PROTECT their versions
            env["workspace"].delete()
            env["user"].delete()


if __name__ == "__main__":
    main()
