"""Benchmark: what the run quota (EnforceRunQuota, billing/quotas.py) adds to creating a run, over
HTTP through the real server, the way a user meets it (issue 15: under 1 ms at 16 clients).

Two servers run side by side on the same migrated PostgreSQL database (as the application role,
RLS on), started like api_http.py starts one: one with billing off (no quota code runs) and one with
``FLOWDECK_BILLING=1``, where the bench workspace is on a plan with a run limit (Enterprise with a
custom limit far above what the bench creates), so every creation passes the guarded UPDATE of its
meter. Repeats alternate between the two servers. Each repeat creates ``--runs`` runs from
``--clients`` concurrent clients (``POST flow-runs/`` with an idempotency key, as the SDK sends it).

Printed per repeat and as medians: creates/s, p50/p99 per create, server CPU per create; then the
difference billing-on minus billing-off (the quota's cost per creation).

    createdb -h 127.0.0.1 -U postgres -O flowdeck_owner flowdeck_bench
    DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck_bench .venv/bin/python manage.py migrate
    .venv/bin/python bench/quota_cost.py --database flowdeck_bench --clients 16 --runs 800 --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_http  # noqa: E402 - the shared harness beside this file


def server_args(args: argparse.Namespace, billing: bool) -> argparse.Namespace:
    return argparse.Namespace(
        port=0, workers=1, plain=True, app=None, serve=False, no_access_log=True, redis_url=args.redis_url,
        server_env=[f"FLOWDECK_BILLING={'1' if billing else '0'}", "STRIPE_SECRET_KEY="],
    )


def subscribe_unlimited_enough(workspace: Any) -> None:
    """Enterprise with a run limit: the guarded UPDATE runs on every creation and never refuses."""
    from billing.models import Plan, Subscription
    from billing.plans import ensure_default_plans
    from core.tenancy import rls_bypass

    ensure_default_plans()
    with rls_bypass():
        Subscription.objects.unscoped().update_or_create(
            workspace=workspace, defaults={"plan": Plan.objects.get(code="enterprise"),
                                           "custom_runs_per_period": 1_000_000_000})


def one(server: api_http.Server, env: dict[str, Any], n: int, conc: int) -> dict[str, Any]:
    assert server.proc is not None
    cpu0 = api_http.tree_cpu_s(server.proc.pid)
    rep = asyncio.run(api_http.one_rep(server.url, env, n, conc, shared_agent=True, create_only=True))
    rep["cpu_ms_per_create"] = 1000 * (api_http.tree_cpu_s(server.proc.pid) - cpu0) / max(rep["requests"], 1)
    rep["creates_per_s"] = rep["requests"] / rep["wall_s"]
    rep["create_p50_ms"] = rep["per_kind_ms"]["create"]["p50"]
    rep["create_p99_ms"] = rep["per_kind_ms"]["create"]["p99"]
    return rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", dest="dbname", default="flowdeck_bench")
    ap.add_argument("--pg", default="127.0.0.1:5432")
    ap.add_argument("--owner-user", default="flowdeck_owner")
    ap.add_argument("--app-user", default="flowdeck_app")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--runs", type=int, default=800)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    api_http.django_setup(f"postgres://{args.owner_user}@{args.pg}/{args.dbname}")
    app_url = f"postgres://{args.app_user}@{args.pg}/{args.dbname}"
    out_dir = Path(tempfile.mkdtemp(prefix="fd-quota-cost-"))
    env = api_http.seed(1)
    subscribe_unlimited_enough(env["workspace"])
    servers = {"off": api_http.Server(server_args(args, False), app_url, out_dir),
               "on": api_http.Server(server_args(args, True), app_url, out_dir)}
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        for server in servers.values():
            server.start()
            one(server, env, 100, 4)  # warm-up: imports, connections, the meter row
        print(f"{args.runs} creates × {args.reps} repeats at {args.clients} clients; PostgreSQL {args.pg}/"
              f"{args.dbname} as {args.app_user} (RLS); billing off vs on (Enterprise, limit checked)", flush=True)
        for i in range(args.reps):
            for label in ("off", "on"):
                rep = one(servers[label], env, args.runs, args.clients)
                results[label].append(rep)
                print(f"  rep {i + 1} billing {label:3}: {rep['creates_per_s']:7.1f} creates/s  "
                      f"p50 {rep['create_p50_ms']:6.1f} ms  p99 {rep['create_p99_ms']:6.1f} ms  "
                      f"server CPU {rep['cpu_ms_per_create']:5.2f} ms/create  errors {rep['http_errors']}",
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
        api_http.teardown(env)

    def med(label: str, key: str) -> float:
        return statistics.median(r[key] for r in results[label])

    print("\nmedians            billing off   billing on   added by the quota")
    for key, unit in (("cpu_ms_per_create", "ms CPU"), ("create_p50_ms", "ms p50"), ("create_p99_ms", "ms p99"),
                      ("creates_per_s", "creates/s")):
        off, on = med("off", key), med("on", key)
        print(f"  {unit:14} {off:12.2f} {on:12.2f} {on - off:+12.2f}")
    added = med("on", "cpu_ms_per_create") - med("off", "cpu_ms_per_create")
    print(f"\nquota cost per creation: {added:+.2f} ms server CPU (target: under 1 ms at {args.clients} clients)")


if __name__ == "__main__":
    main()
