"""Benchmark: claiming due flow runs (D1, D8) — throughput and per-claim latency.

Creates a throw-away workspace with ``--historical`` finished runs (COMPLETED, the bulk of a real
table) and ``--due`` due SCHEDULED runs, then:

1. latency: one agent claims ``--samples`` runs one at a time (``flow_runs_claim(limit=1)``, the
   whole service call: its transaction, the SKIP LOCKED query on ``flow_run_due_idx``, the
   SCHEDULED → PENDING transition through the engine, the lease) and prints p50/p95/p99;
2. throughput: ``--clients`` threads (each its own connection, its own agent) claim in a loop until
   the remaining due runs are gone, and prints claims per second and the latency under contention;
3. the EXPLAIN of the claim query, to show the partial index serves it.

Target (issue 3): claim p95 < 20 ms with 1M historical runs and 10k due. The default (200k + 10k)
runs in about a minute; the 1M case (several minutes, mostly the insert):

    createdb flowdeck_bench  &&  DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck_bench \\
        .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://flowdeck_app@127.0.0.1:5432/flowdeck_bench REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python bench/claims.py --historical 1000000 --due 10000

Use a database of its own (never the tests' or a live one); the app role (``flowdeck_app``, subject
to row-level security) is what production uses. The rows are removed afterwards (``--keep`` keeps
them for a look with psql).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402

from accounts.authz import Principal  # noqa: E402
from accounts.models import Role, ServiceAccount, Workspace  # noqa: E402
from core.tenancy import rls_bypass, workspace_scope  # noqa: E402
from orchestration.models import Agent, Flow, FlowRun, FlowVersion, Project  # noqa: E402
from orchestration.services.claims import due_runs_sql, flow_runs_claim  # noqa: E402

INSERT_RUNS = """
INSERT INTO orchestration_flowrun (
    id, workspace_id, flow_id, flow_version_id, name, parameters, labels, created_by_kind, scheduled_start,
    state_type, state_name, state_message, state_timestamp, state_version, attempt, run_count,
    cancellation_requested, created_at)
SELECT gen_random_uuid(), %(ws)s, %(flow)s, %(version)s, 'run-' || g, '{}', %(labels)s, 'api',
       now() - (g || ' seconds')::interval, %(type)s, %(name)s, '', now(), 0, 1, 0, false, now()
FROM generate_series(1, %(count)s) AS g
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def setup(historical: int, due: int, clients: int) -> tuple[Workspace, list[Principal], list[Agent]]:
    slug = f"bench-claims-{uuid.uuid4().hex[:8]}"
    workspace = Workspace.objects.create(name="Bench claims", slug=slug)
    with rls_bypass():
        account = ServiceAccount.objects.unscoped().create(workspace=workspace, name="agent", role=Role.AGENT)
        project = Project.objects.unscoped().create(workspace=workspace, name="bench")
        flow = Flow.objects.unscoped().create(workspace=workspace, project=project, name="bench")
        version = FlowVersion.objects.unscoped().create(workspace=workspace, flow=flow, version=1,
                                                        content_hash="0" * 64)
        agents = [
            Agent.objects.unscoped().create(workspace=workspace, name=f"agent-{i}", labels=["bench"],
                                            service_account=account)
            for i in range(max(clients, 1))
        ]
        started = time.perf_counter()
        with connection.cursor() as cursor:
            done = 0
            while done < historical:  # in chunks, so 1M rows do not make one huge transaction's WAL
                chunk = min(100_000, historical - done)
                cursor.execute(INSERT_RUNS, {"ws": workspace.pk, "flow": flow.pk, "version": version.pk,
                                             "labels": '["bench"]', "type": "COMPLETED", "name": "Completed",
                                             "count": chunk})
                done += chunk
            cursor.execute(INSERT_RUNS, {"ws": workspace.pk, "flow": flow.pk, "version": version.pk,
                                         "labels": "[]", "type": "SCHEDULED", "name": "Scheduled", "count": due})
        print(f"setup: {historical:,} historical + {due:,} due runs inserted in {time.perf_counter() - started:.1f} s")
    analyze()  # after the commit, so the statistics see the rows
    actor = Principal(workspace=workspace, role=Role.AGENT, service_account=account)
    return workspace, [actor] * len(agents), agents


def analyze() -> None:
    """Fresh planner statistics, as autovacuum would leave them after such an insert. ANALYZE
    needs the table's owner, which the app role is not; ``BENCH_OWNER_USER`` names it."""
    import psycopg

    db = connection.settings_dict
    owner = os.environ.get("BENCH_OWNER_USER", "flowdeck_owner")
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"], user=owner,
                         password=db["PASSWORD"] or None, autocommit=True) as conn:
        conn.execute("ANALYZE orchestration_flowrun")


def teardown(workspace: Workspace) -> None:
    with rls_bypass(), connection.cursor() as cursor:
        for table in ("orchestration_flowrunstate", "orchestration_flowrun"):
            cursor.execute(f"DELETE FROM {table} WHERE workspace_id = %s", [workspace.pk])  # noqa: S608
    with rls_bypass():
        workspace.delete()


def claim_once(actor: Principal, agent: Agent) -> tuple[float, int]:
    started = time.perf_counter()
    runs = flow_runs_claim(actor=actor, agent=agent, limit=1)
    return (time.perf_counter() - started) * 1000, len(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--historical", type=int, default=200_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1_000, help="sequential claims for the latency figures")
    parser.add_argument("--clients", type=int, default=8, help="parallel claimers for the throughput figure")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not settings.IS_POSTGRES:
        sys.exit("bench/claims.py measures PostgreSQL: set DATABASE_URL.")
    db = connection.settings_dict
    print(f"database: {db['NAME']} as {db['USER']} on {db['HOST']}; cores: {os.cpu_count()}; "
          f"historical={args.historical:,} due={args.due:,} samples={args.samples} clients={args.clients}")
    workspace, actors, agents = setup(args.historical, args.due, args.clients)
    try:
        with workspace_scope([workspace.pk]), connection.cursor() as cursor:
            sql, params = due_runs_sql(agents[0], 1)
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = [row[0] for row in cursor.fetchall()]
        print("claim query plan:\n  " + "\n  ".join(plan))
        print(f"served by flow_run_due_idx: {'yes' if any('flow_run_due_idx' in p for p in plan) else 'NO'}")

        for _ in range(20):  # warm-up: connection, plan caches
            claim_once(actors[0], agents[0])
        latencies = [claim_once(actors[0], agents[0])[0] for _ in range(min(args.samples, args.due - 20))]
        print(f"sequential claims (1 client, limit=1): n={len(latencies)}  p50={pct(latencies, 50):.2f} ms  "
              f"p95={pct(latencies, 95):.2f} ms  p99={pct(latencies, 99):.2f} ms  "
              f"mean={statistics.fmean(latencies):.2f} ms  → {1000 / statistics.fmean(latencies):.0f} claims/s")

        import core.events

        real_send = core.events._send
        core.events._send = lambda groups, event: None  # type: ignore[assignment]
        try:
            quiet = [claim_once(actors[0], agents[0])[0] for _ in range(min(args.samples, args.due - 20) // 2)]
        finally:
            core.events._send = real_send
        print(f"  the same without the after-commit event publish (channel layer): n={len(quiet)}  "
              f"p50={pct(quiet, 50):.2f} ms  p95={pct(quiet, 95):.2f} ms  p99={pct(quiet, 99):.2f} ms")
        latencies += quiet

        contended: list[float] = []
        claimed = [0] * args.clients
        lock = threading.Lock()

        def worker(index: int) -> None:
            mine: list[float] = []
            try:
                while True:
                    ms, n = claim_once(actors[index], agents[index])
                    if not n:
                        break
                    mine.append(ms)
                    claimed[index] += n
            finally:
                connections.close_all()
                with lock:
                    contended.extend(mine)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        total = sum(claimed)
        if contended:
            print(f"parallel claims ({args.clients} clients, limit=1): {total} runs in {elapsed:.1f} s  → "
                  f"{total / elapsed:.0f} claims/s  p50={pct(contended, 50):.2f} ms  "
                  f"p95={pct(contended, 95):.2f} ms  p99={pct(contended, 99):.2f} ms")
        with rls_bypass():
            duplicates = (FlowRun.objects.for_workspace(workspace).filter(state_type="PENDING").count()
                          - (len(latencies) + 20 + total))
        print(f"claimed twice: {max(duplicates, 0)} (PENDING rows vs claims reported)")
    finally:
        if args.keep:
            print(f"kept workspace {workspace.slug}")
        else:
            teardown(workspace)


if __name__ == "__main__":
    main()
