"""Benchmark: run lifecycles through the real server over HTTP, the way an agent meets Flowdeck,
side by side with the Prefect 3 peer harness (issue 12).

One lifecycle = 4 HTTP requests and 3 state transitions, the same shape as the peer's
(../shared/peers/prefect3/bench_api.py beside this checkout: create, set_state PENDING, RUNNING, COMPLETED):

  POST flow-runs/                      a developer's key; the run is SCHEDULED, due now
  POST agents/{agent}/claim/           the agent's key, limit=1: SCHEDULED → PENDING (SKIP LOCKED)
  POST flow-runs/{id}/set-state/       RUNNING, with the claim's attempt
  POST flow-runs/{id}/set-state/       COMPLETED

Every POST carries a fresh ``Idempotency-Key`` (and the create its ``idempotency_key`` field), as the
SDK's client sends them. N lifecycles per repeat are spread over C async workers, each with an
``httpx.AsyncClient`` and a connection of its own, as each agent has. The peer harness shares one
client of C connections among its workers (``--shared-pool`` does the same here): under load that
pool's hand-over races hold a few requests 100-400 ms before they are sent, which shows in the p99
and max though the server answered in time (docs/performance.md, "Thirteenth round"). A 429/502/503
or a transient transport error is retried like the peer's client (5 times, 2**try s backoff). A worker
claims whatever due run the server hands it (not necessarily the one it created, as with real
agents); each worker claims as an agent of its own (``--agents per-client``, 16 agents for 16
clients, one service account) or all as one agent (``--agents shared``). An empty claim is retried
after 5 ms and counted.

The server is started the way production serves it (infra/docker/Dockerfile, helm web deployment):

  uvicorn config.asgi:application --proxy-headers --lifespan off   [--workers N with --workers]

with FLOWDECK_PRODUCTION=true, FLOWDECK_INPROCESS_PERIODIC=false, Redis (db 12 by default), the
database pool on, and DATABASE_URL as the **application role** (flowdeck_app, row-level security
applies), on a PostgreSQL database of its own that has been migrated as the owner. The bench
itself seeds its workspace, keys, agents and flow through the ORM as the owner role
(``--owner-database-url``) and removes them afterwards (``--keep`` keeps them).

By default the app is wrapped (``--factory api_http:instrumented_application``, this module): an
ASGI shim times each request server-side and counts, per endpoint, the SQL statements Django sends
(``CursorWrapper``) and the database round trips the driver makes (every ``psycopg.Connection.wait``:
statements, BEGIN/COMMIT, pool checks, ``set_config``) and the wall time spent waiting on them.
Counting costs the server about 1 ms of CPU per request, so the shim counts only in one more,
untimed repeat after each concurrency's timed ones (100 lifecycles); in the timed repeats it is
switched off and only passes requests on. ``--plain`` runs the unwrapped production command instead
(then the per-endpoint server figures are absent, and queries per request come only from
PostgreSQL's own ``pg_stat_database`` counters: transactions per request, rows fetched/written per
request).
With ``--workers`` > 1 the shim's figures cover one worker only and are not printed.

Printed per concurrency (median of ``--reps`` repeats, spread in brackets): runs/s, transitions/s,
requests/s, p50/p99 per request (all kinds) and per endpoint, errors/retries/empty claims, server
CPU per request (utime+stime of the server process tree from /proc, before/after), PostgreSQL
backend CPU per request (this database's backends), box busy CPU, the load generator's CPU, the
server's RSS after; then the shim's per-endpoint table from the untimed repeat. ``--profile DIR``
then runs one more repeat at the highest concurrency under ``py-spy record`` (``--py-spy`` path;
``pip install --target <dir> py-spy``) and writes DIR/profile-c{C}.txt (collapsed stacks) and a category summary.

``--peer-url http://127.0.0.1:PORT/api --peer-pid PID`` also runs the peer harness (with
``--peer-python``, a venv that has prefect's httpx/psutil) with the same N, concurrencies and
repeats, alternating one peer repeat and one Flowdeck repeat (so a slow spell of a shared machine
falls on both), and prints the ratios (Flowdeck / Prefect 3). Before each concurrency and at the end
it prints the machine's speed (:func:`calibration`). The peers' own instructions (beside this
checkout) say how to start Prefect 3 on PostgreSQL.

    createdb -h 127.0.0.1 -U postgres -O flowdeck_owner flowdeck_bench
    DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck_bench .venv/bin/python manage.py migrate
    .venv/bin/python bench/api_http.py --database flowdeck_bench --clients 1,16 --runs 400 --reps 3

``--serve`` starts the server with the production command instead, ``python -m config.serve``
(``--workers`` N: N processes, each on its own SO_REUSEPORT socket; ``--plain`` or the shim as
above); ``--app MODULE:ATTR`` serves another ASGI application (to compare serving models).

``--embedded`` measures the embedded defaults instead (what ``scripts/start`` runs with no
environment): ``python -m config.embedded`` on a fresh SQLite file in a temporary var dir, seeded
through the ORM like the PostgreSQL database, then ``--runs`` creates (``--embedded create``, the
default) or whole lifecycles (``--embedded lifecycle``) at each concurrency, printing p50/p99/max,
errors, server CPU per request and RSS:

    .venv/bin/python bench/api_http.py --embedded --clients 16 --runs 500 --reps 1

Targets (issue 12): 16 clients ≥ 3.5× Prefect 3's transitions/s with p99 < 100 ms; more clients
never lower throughput; 1 client p50 < 10 ms per request; server CPU < 3 ms per hot-path request;
≤ 150 MB RSS per server process; embedded, 16 clients creating 500 runs: 0 errors and p99 < 1 s.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The peer harness lives beside the checkout (../shared/peers), not in it.
PEER_BENCH = ROOT.parent / "shared" / "peers" / "prefect3" / "bench_api.py"
KINDS = ("create", "claim", "running", "heartbeat", "task-runs", "logs", "completed")
# --agent-reports: what a running flow sends between RUNNING and COMPLETED (the SDK's batches).
REPORT_TASKS = 5
REPORT_LOG_LINES = 20
MAX_RETRIES = 5
RETRY_CODES = {429, 502, 503}
# Lifecycles in the untimed repeat that counts statements and round trips per endpoint.
COUNTED_RUNS = 100


# --- the server-side shim (imported by uvicorn inside the server process) -----------------------


def instrumented_application() -> Any:
    """uvicorn ``--factory`` target: ``config.asgi.application`` wrapped in a counting shim that is
    switched on only while it counts (``/__bench__/stats?counting=1``; off again with ``=0``).

    Counting costs the server about 1 ms of CPU per request (measured on a 2-core machine: 4.2-4.6
    against 3.3-3.4 ms per request at 16 clients): a lock and a dictionary per round trip, the
    thread-CPU clock per request. Switched off, the shim only passes each request on, so the timed
    repeats measure the production application."""
    import contextvars
    import threading

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import psycopg
    from django.db.backends import utils as db_utils

    from config import wsgi_bridge
    from config.asgi import application

    current: contextvars.ContextVar[str] = contextvars.ContextVar("bench_endpoint", default="(background)")
    lock = threading.Lock()
    fields = ("requests", "statements", "round_trips", "db_wait_s", "server_s", "thread_cpu_s")
    stats: dict[str, dict[str, float]] = {}
    sql_of: contextvars.ContextVar[list | None] = contextvars.ContextVar("bench_sql", default=None)
    last_sql: dict[str, list[str]] = {}  # the statements of the latest request of each kind
    counting = False  # the wrappers below are in place (count)

    def bump(kind: str, name: str, value: float) -> None:
        with lock:
            row = stats.setdefault(kind, dict.fromkeys(fields, 0.0))
            row[name] += value

    real_wait = psycopg.Connection.wait

    def wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_wait(self, gen, *args, **kwargs)
        finally:
            kind = current.get()
            what = getattr(gen, "__qualname__", type(gen).__name__)
            with lock:
                row = stats.setdefault(kind, dict.fromkeys(fields, 0.0))
                row["round_trips"] += 1
                row["db_wait_s"] += time.perf_counter() - started
                row[f"rt {what}"] = row.get(f"rt {what}", 0) + 1

    wrapper_class: Any = db_utils.CursorWrapper
    real_execute, real_executemany = wrapper_class._execute, wrapper_class._executemany

    def _execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        bump(current.get(), "statements", 1)
        statements = sql_of.get()
        if statements is not None:
            statements.append(str(args[0])[:300])
        return real_execute(self, *args, **kwargs)

    def _executemany(self: Any, *args: Any, **kwargs: Any) -> Any:
        bump(current.get(), "statements", 1)
        return real_executemany(self, *args, **kwargs)

    # CPU of the request's own thread (the view, middleware, SQL on the client side), per endpoint;
    # the event loop's and the event sender's share is in the process figure only.
    real_run = wsgi_bridge._Call.run

    def run(self: Any) -> Any:
        started = time.thread_time()
        try:
            return real_run(self)
        finally:
            bump(current.get(), "thread_cpu_s", time.thread_time() - started)

    def count(mode: str) -> None:
        """Put the counting wrappers in place ("1"), only the thread-CPU one ("cpu": a request's
        CPU without the per-round-trip wrappers' cost), or the originals back ("0")."""
        nonlocal counting
        counting = mode in ("1", "cpu")
        on = mode == "1"
        psycopg.Connection.wait = wait if on else real_wait  # type: ignore[method-assign]
        wrapper_class._execute, wrapper_class._executemany = \
            (_execute, _executemany) if on else (real_execute, real_executemany)
        wsgi_bridge._Call.run = run if counting else real_run  # type: ignore[method-assign]

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/__bench__/stats":
            query = scope.get("query_string", b"").decode()
            if "counting=" in query:
                count(query.split("counting=", 1)[1].split("&", 1)[0])
            if "reset=1" in query:
                with lock:
                    stats.clear()
            with lock:
                body = json.dumps({**stats, "_sql": last_sql} if "sql=1" in query else stats).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return None
        if not counting or scope["type"] != "http":
            return await application(scope, receive, send)
        kind = endpoint_kind(scope["method"], scope["path"])
        token, statements = current.set(kind), list[str]()
        sql_token = sql_of.set(statements)
        started = time.perf_counter()
        try:
            return await application(scope, receive, send)
        finally:
            bump(kind, "server_s", time.perf_counter() - started)
            bump(kind, "requests", 1)
            last_sql[kind] = statements
            current.reset(token)
            sql_of.reset(sql_token)

    return app


def endpoint_kind(method: str, path: str) -> str:
    if method != "POST":
        return f"{method} other"
    if path.endswith("/claim/"):
        return "claim"
    if path.endswith("/set-state/"):
        return "set-state"
    for suffix, kind in (("/heartbeat/", "heartbeat"), ("/task-runs/", "task-runs"), ("/logs/", "logs")):
        if path.endswith(suffix):
            return kind
    if path.endswith("/flow-runs/"):
        return "create"
    return "POST other"


# --- helpers ------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1)))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_pids(pid: int) -> list[int]:
    import psutil

    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return []


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            after_comm = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(after_comm[11]) + int(after_comm[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    return sum(proc_cpu_s(p) for p in tree_pids(pid))


def rss_mb(pid: int) -> list[float]:
    """RSS of each process of the server's tree (MiB), from /proc/<pid>/status."""
    out = []
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return out


def backends_cpu_s(dbname: str) -> float:
    """CPU seconds of the live PostgreSQL backends connected to ``dbname`` (the server's pool keeps
    its connections, so they live through a repeat)."""
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["name"] == "postgres" and f" {dbname} " in cmd:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def box_busy_cpu_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


# --- seeding (ORM, as the owner role) -----------------------------------------------------------


def django_setup(owner_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = owner_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DATABASE_POOL"] = "false"
    import django

    django.setup()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


def seed(n_agents: int) -> dict[str, Any]:
    from accounts import keys
    from accounts.models import ApiKey, Membership, Role, ServiceAccount, User, Workspace
    from core.tenancy import rls_bypass
    from orchestration.models import Agent, Flow, FlowVersion, Project

    slug = f"bench-http-{uuid.uuid4().hex[:8]}"
    workspace = Workspace.objects.create(name="Bench HTTP", slug=slug)
    user = User.objects.create_user(f"{slug}@example.com", "x" * 20)
    Membership.objects.create(workspace=workspace, user=user, role=Role.DEVELOPER)
    dev_key, agent_key = keys.generate(ApiKey.Kind.USER), keys.generate(ApiKey.Kind.SERVICE_ACCOUNT)
    with rls_bypass():
        account = ServiceAccount.all_objects.create(workspace=workspace, name="bench-agent", role=Role.AGENT)
        for kind, generated, owner in ((ApiKey.Kind.USER, dev_key, {"user": user}),
                                       (ApiKey.Kind.SERVICE_ACCOUNT, agent_key, {"service_account": account})):
            ApiKey.all_objects.create(workspace=workspace, kind=kind, name="bench", **owner,
                                      lookup_prefix=generated.lookup_prefix, secret_hash=generated.secret_hash)
        agents = [Agent.all_objects.create(workspace=workspace, name=f"bench-agent-{i}", service_account=account)
                  for i in range(n_agents)]
        project = Project.all_objects.create(workspace=workspace, name="bench")
        flow = Flow.all_objects.create(workspace=workspace, project=project, name="bench")
        FlowVersion.all_objects.create(workspace=workspace, flow=flow, version=1, content_hash="0" * 64,
                                       tasks=[{"key": "t", "name": "t", "tags": [], "retries": 0}])
    return {"workspace": workspace, "user": user, "slug": slug, "flow_id": str(flow.pk),
            "agent_ids": [str(a.pk) for a in agents], "dev_key": dev_key.secret, "agent_key": agent_key.secret}


def teardown(env: dict[str, Any]) -> None:
    from django.db import connection

    from core.tenancy import rls_bypass

    ws = env["workspace"].pk
    with rls_bypass(), connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {r[0] for r in cursor.fetchall()}
        # Children first (--agent-reports leaves task runs and log lines behind).
        for table in ("orchestration_idempotencyrecord", "orchestration_logentry", "orchestration_taskrunstate",
                      "orchestration_taskrun", "orchestration_flowrunstate", "orchestration_flowrun"):
            if table in tables:
                cursor.execute(f"DELETE FROM {table} WHERE workspace_id = %s", [ws])  # noqa: S608
    with rls_bypass():
        env["workspace"].delete()
        env["user"].delete()


HISTORY_SLUG = "bench-history"


def seed_history(n: int) -> int:
    """A workspace of ``n`` finished runs (each with its four states), made once per database and
    kept: a service in use has history, and the planner picks a hot statement's plan from the
    tables' statistics. On near-empty tables, PostgreSQL priced a run's lookup by id through the
    workspace's created-at index as dear as through its primary key, chose the former, and then
    read every run of the workspace for each state change (docs/performance.md, "Twelfth round").
    Returns how many runs the history holds."""
    from django.db import connection

    from accounts.models import Workspace
    from core.tenancy import rls_bypass
    from orchestration.models import Flow, FlowRun, FlowVersion, Project

    with rls_bypass():
        workspace = Workspace.objects.filter(slug=HISTORY_SLUG).first()
        if workspace is None:
            workspace = Workspace.objects.create(name="Bench history", slug=HISTORY_SLUG)
            project = Project.all_objects.create(workspace=workspace, name="history")
            flow = Flow.all_objects.create(workspace=workspace, project=project, name="history")
            FlowVersion.all_objects.create(workspace=workspace, flow=flow, version=1, content_hash="0" * 64,
                                           tasks=[{"key": "t", "name": "t", "tags": [], "retries": 0}])
        have = FlowRun.all_objects.filter(workspace=workspace).count()
        if have >= n:
            return have
        flow = Flow.all_objects.get(workspace=workspace)
        version = FlowVersion.all_objects.get(flow=flow)
        with connection.cursor() as cursor:
            # Finished runs spread over the last 30 days, then their four states (one statement each).
            cursor.execute(
                "WITH r AS (INSERT INTO orchestration_flowrun (workspace_id, id, flow_id, flow_version_id, name, "
                "parameters, labels, created_by_kind, scheduled_start, state_type, state_name, state_message, "
                "state_timestamp, state_version, attempt, run_count, start_time, end_time, "
                "cancellation_requested, created_at) "
                "SELECT %s, gen_random_uuid(), %s, %s, 'history-' || g, '{}', '[]', 'api', t, 'COMPLETED', "
                "'Completed', '', t + interval '3 s', 4, 1, 1, t + interval '1 s', t + interval '3 s', false, t "
                "FROM generate_series(1, %s) g, LATERAL (SELECT now() - g * interval '30 days' / %s AS t) x "
                "RETURNING id, workspace_id, created_at) "
                "INSERT INTO orchestration_flowrunstate (flow_run_id, workspace_id, type, name, message, "
                "result_ref, details, timestamp) "
                "SELECT r.id, r.workspace_id, s.type, s.name, '', '', '{}', r.created_at + s.k * interval '1 s' "
                "FROM r, (VALUES (0, 'SCHEDULED', 'Scheduled'), (1, 'PENDING', 'Pending'), "
                "(2, 'RUNNING', 'Running'), (3, 'COMPLETED', 'Completed')) s(k, type, name)",
                [workspace.pk, flow.pk, version.pk, n - have, n],
            )
    return n


def maintain(url: str) -> None:
    """What autovacuum does in production, between repeats: ``VACUUM (ANALYZE)`` every table the
    connecting role owns, so no repeat runs on stale statistics or on the dead rows of the one
    before. This machine's PostgreSQL has autovacuum off; in the bench's two databases (ours and,
    with ``--peer-db-url``, the peer's) nothing else would do it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
            "AND (tableowner = current_user OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))")]
        if tables:
            conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")


def autovacuum_setting(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return str(row[0]) if row else "?"


def pg_counters(dbname: str) -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT xact_commit + xact_rollback, tup_returned, tup_fetched, "
                       "tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = %s",
                       [dbname])
        xacts, returned, fetched, written = cursor.fetchone()
    connection.close()  # our own snapshot is cached per transaction; and our xact is counted, once
    return {"xacts": xacts, "tup_returned": returned, "tup_fetched": fetched, "tup_written": written}


# --- the server ---------------------------------------------------------------------------------


class Server:
    def __init__(self, args: argparse.Namespace, app_url: str, log_dir: Path) -> None:
        self.port = args.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = args.workers
        self.plain = args.plain or bool(args.app)
        target = [args.app or "config.asgi:application"] if self.plain else \
            ["api_http:instrumented_application", "--factory"]
        if args.serve:  # the production command: config.serve (SO_REUSEPORT workers)
            self.cmd = [sys.executable, "-m", "config.serve", "--app", *target, "--host", "127.0.0.1",
                        "--port", str(self.port), "--workers", str(args.workers)]
        else:
            self.cmd = [sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(self.port),
                        "--proxy-headers", "--lifespan", "off"]
            if args.workers > 1:
                self.cmd += ["--workers", str(args.workers)]
        if args.no_access_log:
            self.cmd.append("--no-access-log")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "DATABASE_"))}
        self.env.update(
            DATABASE_URL=app_url, REDIS_URL=args.redis_url, DJANGO_SETTINGS_MODULE="config.settings",
            FLOWDECK_PRODUCTION="true", SECRET_KEY=uuid.uuid4().hex * 2, FLOWDECK_INPROCESS_PERIODIC="false",
            FLOWDECK_DB_APP_ROLE="flowdeck_app", FLOWDECK_VAR_DIR=str(log_dir / "var"),
            FLOWDECK_CACHE_PREFIX="httpbench", FLOWDECK_CHANNEL_PREFIX="httpbench", PYTHONDONTWRITEBYTECODE="1",
        )
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "bench"), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])])
        self.env.update(kv.split("=", 1) for kv in args.server_env)
        self.log_path = log_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        import httpx

        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def shim(self, reset: bool = False, sql: bool = False,
             counting: bool | str | None = None) -> dict[str, Any] | None:
        """The shim's counts (None without it); ``counting`` switches it on, off, or to "cpu" only
        first, ``reset`` clears the counts first."""
        import httpx

        if self.plain or self.workers > 1:
            return None
        params = {"reset": "1"} if reset else {}
        if sql:
            params["sql"] = "1"
        if counting is not None:
            params["counting"] = counting if isinstance(counting, str) else "1" if counting else "0"
        return httpx.get(self.url + "/__bench__/stats", params=params, timeout=10).json()


# --- the load -----------------------------------------------------------------------------------


async def one_rep(server_url: str, env: dict[str, Any], n: int, conc: int, shared_agent: bool,
                  create_only: bool = False, agent_reports: bool = False, browser_load: int = 0,
                  own_clients: bool = False) -> dict[str, Any]:
    """``n`` lifecycles over ``conc`` clients; with ``browser_load``, that many more clients
    meanwhile ask for pages of 200 runs again and again, with a cookie (so the server takes them
    for a browser's: the whole middleware chain, no place kept for them in its gate), timed apart.

    With ``own_clients`` (the default of the command line) each client has its own
    ``httpx.AsyncClient`` and connection, as agents have; else they share one of ``conc``
    connections, as the peer's harness does (``--shared-pool``). A shared
    pool hands a freed connection to every request waiting for one, all but one then find it taken
    and wait again (httpcore's ``ConnectionNotAvailable`` retry), so under load a few requests
    wait 100-400 ms in the load generator before they are even sent (docs/performance.md,
    "Thirteenth round")."""
    import httpx

    api = f"{server_url}/api/v1/workspaces/{env['slug']}"
    dev = {"Authorization": f"Bearer {env['dev_key']}"}
    agent_h = {"Authorization": f"Bearer {env['agent_key']}"}
    lat: dict[str, list[float]] = {k: [] for k in KINDS}
    counters = {"retries": 0, "transport_errors": 0, "empty_claims": 0, "non_accept": 0}
    http_errors: list[str] = []
    # Each request's (start, seconds, kind), starts from the repeat's start: where the tail falls in time.
    timeline: list[tuple[float, float, str]] = []
    origin = time.perf_counter()
    next_i = 0
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    # Made before the clock starts: making a client builds its TLS context (tens of milliseconds).
    own = [httpx.AsyncClient(base_url=api, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                             timeout=60.0) for _ in range(conc if own_clients else 0)]
    async with contextlib.AsyncExitStack() as stack, \
            httpx.AsyncClient(base_url=api, limits=limits, timeout=60.0) as shared:
        for client in own:
            await stack.enter_async_context(client)

        async def timed(client: httpx.AsyncClient, kind: str, path: str, body: dict,
                        headers: dict) -> httpx.Response | None:
            headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}  # the same key on each retry
            t0 = time.perf_counter()
            r = None
            for try_count in range(1, MAX_RETRIES + 2):
                try:
                    r = await client.post(path, json=body, headers=headers)
                    if r.status_code not in RETRY_CODES:
                        break
                except httpx.TransportError as e:
                    counters["transport_errors"] += 1
                    r = None
                    http_errors.append(f"{kind}:{e!r}"[:200])
                if try_count > MAX_RETRIES:
                    break
                counters["retries"] += 1
                await asyncio.sleep(2**try_count * random.uniform(0.8, 1.2))
            lat[kind].append(time.perf_counter() - t0)
            timeline.append((t0 - origin, lat[kind][-1], kind))
            if r is None or r.status_code >= 400:
                if r is not None:
                    http_errors.append(f"{kind}:{r.status_code}:{r.text[:200]}")
                return None
            return r

        async def lifecycle(client: httpx.AsyncClient, agent_id: str) -> None:
            r = await timed(client, "create", "/flow-runs/",
                            {"flow": env["flow_id"], "idempotency_key": str(uuid.uuid4())}, dev)
            if r is None or create_only:
                return
            for _ in range(200):
                r = await timed(client, "claim", f"/agents/{agent_id}/claim/", {"limit": 1, "lease_seconds": 60},
                                agent_h)
                if r is None:
                    return
                results = r.json()["results"]
                if results:
                    break
                counters["empty_claims"] += 1
                await asyncio.sleep(0.005)
            else:
                return
            run = results[0]
            for kind, st in (("running", "RUNNING"), ("completed", "COMPLETED")):
                if kind == "completed" and agent_reports and not await reports(client, run):
                    return
                r = await timed(client, kind, f"/flow-runs/{run['id']}/set-state/",
                                {"state": {"type": st}, "attempt": run["attempt"]}, agent_h)
                if r is None:
                    return
                if r.json().get("status") != "ACCEPT":
                    counters["non_accept"] += 1
                    return

        async def reports(client: httpx.AsyncClient, run: dict[str, Any]) -> bool:
            """A flow-run heartbeat, one task-run batch (REPORT_TASKS tasks COMPLETED) and one log
            batch (REPORT_LOG_LINES lines), as the SDK's reporter sends them."""
            base, attempt = f"/flow-runs/{run['id']}", run["attempt"]
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            for kind, path, body in (
                ("heartbeat", "/heartbeat/", {"attempt": attempt, "lease_seconds": 60}),
                ("task-runs", "/task-runs/", {"attempt": attempt, "reports": [
                    {"task_key": f"t{i}", "state": {"type": "COMPLETED"}} for i in range(REPORT_TASKS)]}),
                ("logs", "/logs/", {"lines": [
                    {"sequence": i, "level": "INFO", "timestamp": now, "message": f"line {i} of the bench flow"}
                    for i in range(REPORT_LOG_LINES)]}),
            ):
                if await timed(client, kind, base + path, body, agent_h) is None:
                    return False
            return True

        async def worker(index: int) -> None:
            nonlocal next_i
            agent_id = env["agent_ids"][0 if shared_agent else index]
            client = own[index] if own_clients else shared
            while next_i < n:
                next_i += 1
                await lifecycle(client, agent_id)

        done = asyncio.Event()
        browser_lat: list[float] = []
        browser_limits = httpx.Limits(max_connections=max(browser_load, 1))

        async def browser(page: httpx.AsyncClient) -> None:
            # A key authenticates the request and the cookie is ignored (B7), but its presence
            # sends the request down the browsers' path.
            headers = {**dev, "Cookie": "fd_bench_browser=1"}
            while not done.is_set():
                t = time.perf_counter()
                r = await page.get("/flow-runs/", params={"limit": 200}, headers=headers)
                browser_lat.append(time.perf_counter() - t)
                if r.status_code != 200:
                    http_errors.append(f"browser:{r.status_code}:{r.text[:200]}")
                    return

        async def lifecycles() -> None:
            try:
                await asyncio.gather(*(worker(i) for i in range(conc)))
            finally:
                done.set()

        async with httpx.AsyncClient(base_url=api, limits=browser_limits, timeout=60.0) as page:
            t0 = origin = time.perf_counter()
            await asyncio.gather(lifecycles(), *(browser(page) for _ in range(browser_load)))
            wall = time.perf_counter() - t0

    all_lat = [x for v in lat.values() for x in v]
    ok_runs = len(lat["completed"]) - counters["non_accept"]
    return {
        "n": n, "concurrency": conc, "wall_s": wall, "completed_runs": ok_runs,
        "runs_per_s": ok_runs / wall, "transitions_per_s": 3 * ok_runs / wall,
        "requests": len(all_lat), "requests_per_s": len(all_lat) / wall,
        "p50_ms": 1000 * (pct(all_lat, 50) or 0), "p99_ms": 1000 * (pct(all_lat, 99) or 0),
        # The tail's shape: a few long stalls and a long slope of queueing look alike at p99 alone.
        "p90_ms": 1000 * (pct(all_lat, 90) or 0), "p95_ms": 1000 * (pct(all_lat, 95) or 0),
        "max_ms": 1000 * max(all_lat, default=0),
        "per_kind_ms": {k: {"p50": 1000 * (pct(v, 50) or 0), "p99": 1000 * (pct(v, 99) or 0), "count": len(v)}
                        for k, v in lat.items() if v},
        "tail": tail_shape(timeline),
        **counters, "http_errors": len(http_errors), "http_error_samples": http_errors[:3],
        "browser": {"requests": len(browser_lat), "p50_ms": 1000 * (pct(browser_lat, 50) or 0),
                    "p99_ms": 1000 * (pct(browser_lat, 99) or 0)} if browser_load else None,
    }


def tail_shape(timeline: list[tuple[float, float, str]]) -> dict[str, Any]:
    """Where the slowest 1 % of requests fall in time. Few windows of 250 ms holding them all is a
    stall (something stopped everything in flight at once); many is a slope of queueing. With the
    slowest few requests, as (start s, ms, kind)."""
    if not timeline:
        return {"windows": 0, "slow": 0, "slowest": []}
    cut = sorted(d for _, d, _ in timeline)[int(0.99 * (len(timeline) - 1))]
    slow = [(start, d, kind) for start, d, kind in timeline if d >= cut]
    # A request is in flight over [start, start + d]: the window it ended in is where it was held up.
    windows = {int((start + d) / 0.25) for start, d, _ in slow}
    slowest = sorted(slow, key=lambda item: -item[1])[:5]
    return {"windows": len(windows), "slow": len(slow),
            "slowest": [(round(start, 2), round(1000 * d, 1), kind) for start, d, kind in slowest]}


def measured_rep(server: Server, env: dict[str, Any], n: int, conc: int, args: argparse.Namespace) -> dict[str, Any]:
    """One timed repeat, the shim switched off (:func:`instrumented_application`)."""
    assert server.proc is not None
    pid = server.proc.pid
    time.sleep(1.1)  # PostgreSQL backends report their counters at most once a second
    pg0 = pg_counters(args.dbname)
    # What the earlier repeats left (their timings, the seeding) is frozen too: a full pass of this
    # process's collector mid-repeat then walks only what this repeat made (it took 72 ms otherwise).
    gc.collect()
    gc.freeze()
    s0, d0, b0, c0 = tree_cpu_s(pid), backends_cpu_s(args.dbname), box_busy_cpu_s(), time.process_time()
    with own_full_collections() as pauses:
        rep = asyncio.run(one_rep(server.url, env, n, conc, args.agents == "shared",
                                  agent_reports=args.agent_reports, browser_load=args.browser_load,
                                  own_clients=not args.shared_pool))
    rep["load_generator_gc_ms"] = pauses
    rep["server_cpu_s"] = tree_cpu_s(pid) - s0
    rep["db_cpu_s"] = backends_cpu_s(args.dbname) - d0
    rep["box_cpu_s"] = box_busy_cpu_s() - b0
    rep["client_cpu_s"] = time.process_time() - c0
    time.sleep(1.1)
    pg1 = pg_counters(args.dbname)
    req = max(rep["requests"], 1)
    rep["server_cpu_ms_per_req"] = 1000 * rep["server_cpu_s"] / req
    rep["db_cpu_ms_per_req"] = 1000 * rep["db_cpu_s"] / req
    rep["pg_per_req"] = {k: (pg1[k] - pg0[k] - (1 if k == "xacts" else 0)) / req for k in pg0}
    rep["rss_mb"] = rss_mb(pid)
    return rep


def counted_rep(server: Server, env: dict[str, Any], conc: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """One more repeat with the shim counting (not timed: counting costs the server CPU), for its
    per-endpoint statements, round trips and waits; then one with only each request thread's CPU
    clock read (``light_cpu_s``: the counting's wrappers inflate a request's CPU by about a third).
    None without the shim."""
    def untimed(mode: bool | str) -> dict[str, Any] | None:
        if server.shim(reset=True, counting=mode) is None:
            return None
        try:
            asyncio.run(one_rep(server.url, env, min(args.runs, COUNTED_RUNS), conc, args.agents == "shared",
                                agent_reports=args.agent_reports, own_clients=not args.shared_pool))
            return server.shim()
        finally:
            server.shim(counting=False)

    counts, light = untimed(True), untimed("cpu")
    if counts is not None and light is not None:
        for kind, row in counts.items():
            if not kind.startswith("_") and kind in light:
                row["light_cpu_s"] = light[kind]["thread_cpu_s"] * row["requests"] / max(light[kind]["requests"], 1)
    return counts


def med(reps: list[dict], key: str) -> str:
    values = [r[key] for r in reps]
    m = statistics.median(values)
    return f"{m:.1f}" if len(values) == 1 else f"{m:.1f} [{min(values):.1f}–{max(values):.1f}]"


@contextlib.contextmanager
def own_full_collections() -> Iterator[list[float]]:
    """The milliseconds of each full pass of this process's cyclic collector meanwhile. The load
    generator is one event loop: a pass stops it, and every request in flight then looks slower
    by that much, though the server answered in time."""
    pauses: list[float] = []
    started = [0.0]

    def record(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pauses.append(round(1000 * (time.perf_counter() - started[0]), 1))

    gc.callbacks.append(record)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(record)


def print_rep(label: str, conc: int, i: int, rep: dict[str, Any]) -> None:
    kinds = " ".join(f"{k}={v['p50']:.1f}/{v['p99']:.1f}" for k, v in rep["per_kind_ms"].items())
    print(f"  [{label}] c={conc} rep={i} wall={rep['wall_s']:.1f}s runs/s={rep['runs_per_s']:.1f} "
          f"trans/s={rep['transitions_per_s']:.1f} p50={rep['p50_ms']:.1f}ms p99={rep['p99_ms']:.1f}ms "
          f"(p50/p99 ms {kinds}) srvCPU/req={rep.get('server_cpu_ms_per_req', 0):.2f}ms "
          f"dbCPU/req={rep.get('db_cpu_ms_per_req', 0):.2f}ms errors={rep['http_errors']} "
          f"retries={rep.get('retries', rep.get('retryable_status_total', 0))} "
          f"empty_claims={rep.get('empty_claims', '-')} "
          f"load-generator-gc-ms={rep.get('load_generator_gc_ms', '-')}"
          + (f" tail: {t['slow']} slowest in {t['windows']} windows of 250 ms, e.g. {t['slowest'][:3]}"
             if (t := rep.get("tail")) else "")
          + (f" browser-pages={b['requests']} p50/p99={b['p50_ms']:.1f}/{b['p99_ms']:.1f}ms"
             if (b := rep.get("browser")) else ""), flush=True)


_walk_table: list[array.array[int]] = []  # made on first use: the server imports this module (the shim)


def calibration() -> str:
    """CPU milliseconds of two fixed pieces of pure-Python work (best of 5 each), printed beside
    each concurrency's figures: sittings on a shared machine differ in speed, and these say by how
    much. The loop stays in the caches; the walk jumps about 64 MB, so it slows when other tenants
    of the host fill the shared cache or the memory bus, as a server's large working set does."""
    def loop() -> int:
        table: dict[int, int] = {}
        for i in range(200_000):
            table[i & 1023] = table.get(i & 1023, 0) + i * i
        return len(table)

    if not _walk_table:
        _walk_table.append(array.array("I", bytes(4 * 16 * 1024 * 1024)))  # 64 MB, far beyond the caches

    def walk() -> int:
        table = _walk_table[0]
        i, mask = 0, len(table) - 1
        for _ in range(300_000):
            i = (i * 1103515245 + 12345 + table[i]) & mask
        return i

    times = []
    for work in (loop, walk):
        best = float("inf")
        for _ in range(5):
            started = time.thread_time()
            work()
            best = min(best, time.thread_time() - started)
        times.append(1000 * best)
    return f"the loop took {times[0]:.1f} ms of CPU, the memory walk {times[1]:.1f} ms (lower is faster)"


def print_summary(conc: int, reps: list[dict[str, Any]]) -> None:
    print(f"Flowdeck, {conc} client(s), median of {len(reps)} [min–max]:")
    print(f"  runs/s {med(reps, 'runs_per_s')}   transitions/s {med(reps, 'transitions_per_s')}   "
          f"requests/s {med(reps, 'requests_per_s')}")
    print(f"  per request: p50 {med(reps, 'p50_ms')} ms   p90 {med(reps, 'p90_ms')} ms   "
          f"p95 {med(reps, 'p95_ms')} ms   p99 {med(reps, 'p99_ms')} ms   max {med(reps, 'max_ms')} ms")
    for kind in KINDS:
        p50s = [r["per_kind_ms"][kind]["p50"] for r in reps if kind in r["per_kind_ms"]]
        p99s = [r["per_kind_ms"][kind]["p99"] for r in reps if kind in r["per_kind_ms"]]
        if p50s:
            print(f"    {kind:<10} p50 {statistics.median(p50s):6.1f} ms   p99 {statistics.median(p99s):6.1f} ms")
    print(f"  server CPU per request {med(reps, 'server_cpu_ms_per_req')} ms   "
          f"PostgreSQL backend CPU per request {med(reps, 'db_cpu_ms_per_req')} ms   "
          f"box busy CPU {med(reps, 'box_cpu_s')} s   load generator CPU {med(reps, 'client_cpu_s')} s")
    pg = {k: statistics.median(r["pg_per_req"][k] for r in reps) for k in reps[0]["pg_per_req"]}
    print(f"  pg_stat_database per request: transactions {pg['xacts']:.2f}, rows returned {pg['tup_returned']:.0f}, "
          f"fetched {pg['tup_fetched']:.1f}, written {pg['tup_written']:.2f}")
    if reps[0].get("browser"):
        pages, p50, p99 = (statistics.median(r["browser"][k] for r in reps) for k in ("requests", "p50_ms", "p99_ms"))
        print(f"  browser pages beside them (200 runs each): {pages:.0f} per repeat, p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms")
    errors = sum(r["http_errors"] for r in reps)
    print(f"  errors {errors}  retries {sum(r['retries'] for r in reps)}  empty claims "
          f"{sum(r['empty_claims'] for r in reps)}  non-ACCEPT {sum(r['non_accept'] for r in reps)}")
    if errors:
        print(f"  error samples: {[s for r in reps for s in r['http_error_samples']][:3]}")
    print(f"  server RSS after (MiB, per process): {[round(x) for x in reps[-1]['rss_mb']]}")


def print_counts(conc: int, shim: dict[str, Any]) -> None:
    print(f"  server side, per request (the shim, counting in one more repeat at {conc} client(s), then only "
          "reading each request thread's CPU clock in another, \"(light)\"; not in the figures above):")
    print(f"    {'endpoint':<12}{'requests':>9}{'statements':>12}{'round trips':>13}{'DB wait ms':>12}"
          f"{'server ms':>11}{'DB wait %':>11}{'thread CPU ms':>15}{'(light)':>9}")
    for kind, row in sorted(shim.items(), key=lambda kv: -kv[1]["requests"]):
        if kind.startswith("_"):
            continue
        n = row["requests"] or 1
        share = 100 * row["db_wait_s"] / row["server_s"] if row["server_s"] else 0
        print(f"    {kind:<12}{row['requests']:>9.0f}{row['statements'] / n:>12.1f}{row['round_trips'] / n:>13.1f}"
              f"{1000 * row['db_wait_s'] / n:>12.2f}{1000 * row['server_s'] / n:>11.2f}{share:>10.0f}%"
              f"{1000 * row.get('thread_cpu_s', 0) / n:>15.2f}{1000 * row.get('light_cpu_s', 0) / n:>9.2f}")
        gens = {k[3:]: v / n for k, v in row.items() if k.startswith("rt ")}
        if gens and row["requests"]:
            print("      round trips by driver call: " + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(gens.items(), key=lambda kv: -kv[1])))


# --- the peer -----------------------------------------------------------------------------------


def run_peer(args: argparse.Namespace, conc: int, out_dir: Path, rep: int) -> list[dict[str, Any]]:
    """One repeat of the peer's harness (it warms up first, unreported): the bench alternates a
    peer repeat with a Flowdeck one, so a slow spell of a shared machine falls on both."""
    out = out_dir / f"peer-c{conc}-{rep}.json"
    cmd = [args.peer_python, args.peer_bench, "--api", args.peer_url,
           "--server-pid", str(args.peer_pid), "--n", str(args.runs), "--concurrency", str(conc),
           "--reps", "1", "--label", "prefect3", "--db-proc-name", "postgres", "--out", str(out)]
    subprocess.run(cmd, check=True)
    result = json.loads(out.read_text())
    return result["runs"][str(conc)]["reps"]


# --- profiling ----------------------------------------------------------------------------------

CATEGORIES = (  # for each sample, the deepest frame that matches one of these decides its "self" category
    ("DB round trip (psycopg send/wait)", ("Connection.wait (psycopg", "waiting.py", "_execute_send", "_exec_command",
                                           "_maybe_prepare_gen", "_select_current_result", "fetchmany", "fetchall")),
    ("pool get/put/check", ("psycopg_pool",)),
    ("idle/wait (threads, selectors)", ("Condition.wait", "EpollSelector.select", "_wait_for_tstate_lock",
                                         "thread.py:81)", "Runner.run", "Event.wait", "Lock.acquire")),
    ("idempotency wrapper", ("services/idempotency.py",)),
    ("RLS set-up (core/tenancy)", ("core/tenancy.py",)),
    ("API-key auth", ("accounts/api/authentication.py", "accounts/keys.py", "services/api_keys.py")),
    ("authz / guard", ("accounts/authz", "accounts/api/guard.py")),
    ("engine (set_state)", ("orchestration/engine",)),
    ("claim service", ("services/claims.py",)),
    ("runs service", ("services/runs.py",)),
    ("events publish (Redis/channels)", ("core/events.py", "channels_redis", "redis/", "orchestration/events.py")),
    ("SLA trigger / alerts", ("orchestration/alerts",)),
    ("DRF serializers", ("rest_framework/serializers.py", "rest_framework/fields.py", "api/serializers.py")),
    ("JSON render/parse", ("json/encoder.py", "json/decoder.py", "rest_framework/renderers.py",
                           "rest_framework/parsers.py", "json/__init__.py")),
    ("Django ORM/SQL compile", ("django/db/models",)),
    ("Django DB backend (cursor, transaction)", ("django/db/backends", "django/db/transaction.py", "django/db/utils.py",
                                                 "psycopg/")),
    ("DRF view dispatch", ("rest_framework/",)),
    ("Django middleware/handlers", ("django/core/handlers", "django/middleware", "django/contrib", "allauth",
                                    "servestatic", "core/middleware.py")),
    ("threads: asgiref, WSGI pool, thread start", ("asgiref/", "wsgi_bridge.py", "threading.py", "concurrent/futures")),
    ("uvicorn/h11/asyncio", ("uvicorn/", "h11/", "asyncio/", "httptools")),
    ("logging (access log)", ("logging/",)),
)


def _thread_name(frames: list[str]) -> str:
    if any("SyncToAsync.thread_handler" in f for f in frames):
        return "request threads (sync_to_async: middleware + views)"
    name = next((f for f in frames[:2] if f.startswith("thread ")), "?")
    return name.split(": ", 1)[-1]


def summarize_profile(collapsed: Path) -> str:
    """Per thread, then inclusive shares per category (a sample counts once per category on its
    stack) and the "self" category of each sample (its deepest matching frame)."""
    totals: dict[str, int] = {}
    leaf: dict[str, int] = {}
    threads: dict[str, int] = {}
    n = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        n += count
        frames = stack.split(";")
        threads[_thread_name(frames)] = threads.get(_thread_name(frames), 0) + count
        code = [f for f in frames if not f.startswith(("process ", "thread "))]
        for name, needles in CATEGORIES:
            if any(any(nd in f for nd in needles) for f in code):
                totals[name] = totals.get(name, 0) + count
        for f in reversed(code):
            hit = next((name for name, needles in CATEGORIES if any(nd in f for nd in needles)), None)
            if hit:
                leaf[hit] = leaf.get(hit, 0) + count
                break
        else:
            leaf["(other)"] = leaf.get("(other)", 0) + count
    n = n or 1
    lines = [f"samples: {n}", "threads:"]
    lines += [f"  {100 * c / n:5.1f}%  {t}" for t, c in sorted(threads.items(), key=lambda kv: -kv[1])[:8]]
    lines.append("inclusive (category anywhere on the stack):")
    lines += [f"  {100 * c / n:5.1f}%  {k}" for k, c in sorted(totals.items(), key=lambda kv: -kv[1])]
    lines.append("self (deepest matching frame):")
    lines += [f"  {100 * c / n:5.1f}%  {k}" for k, c in sorted(leaf.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def profile_rep(server: Server, env: dict[str, Any], conc: int, args: argparse.Namespace, out_dir: Path) -> None:
    """Two more repeats under py-spy: ``--gil`` (only the thread holding the GIL: where the
    Python CPU goes) and ``--idle`` (every thread, waiting included: where the wall time goes)."""
    assert server.proc is not None
    for mode in ("gil", "wall"):
        out = out_dir / f"profile-c{conc}-{mode}.txt"
        flag = "--gil" if mode == "gil" else "--idle"
        spy = subprocess.Popen([args.py_spy, "record", "--pid", str(server.proc.pid), "--format", "raw", flag,
                                "--nonblocking", "--rate", str(args.profile_rate), "--threads", "--subprocesses",
                                "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.5)
        rep = asyncio.run(one_rep(server.url, env, args.runs, conc, args.agents == "shared",
                                  agent_reports=args.agent_reports, own_clients=not args.shared_pool))
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        print_rep(f"profiled {mode}", conc, 0, rep)
        summary = summarize_profile(out)
        (out_dir / f"profile-c{conc}-{mode}-summary.txt").write_text(summary + "\n")
        print(f"py-spy {flag} profile at {conc} clients ({out}):\n{summary}", flush=True)


# --- embedded mode (SQLite) ---------------------------------------------------------------------


def run_embedded(args: argparse.Namespace, concs: list[int]) -> None:
    """``--embedded``: what ``scripts/start`` runs with no environment (``python -m config.embedded``:
    SQLite, in-memory layers, the periodic loop in the process) on a fresh SQLite file in a
    temporary var dir; the bench seeds it through the ORM the same way as for PostgreSQL."""
    import httpx

    var_dir = Path(tempfile.mkdtemp(prefix="fd-api-http-embedded-"))
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {k: v for k, v in os.environ.items()
                  if not k.startswith(("FLOWDECK_", "DATABASE_", "REDIS_", "CELERY_"))}
    server_env.update(FLOWDECK_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="config.settings",
                      PYTHONDONTWRITEBYTECODE="1")
    server_env.update(kv.split("=", 1) for kv in args.server_env)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=server_env, check=True)
    # The bench process seeds the same file through the ORM.
    os.environ.update(FLOWDECK_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="config.settings")
    for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(key, None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    env = seed(max(concs + [4]))
    from django.db import connections

    connections.close_all()
    log_path = var_dir / "server.log"
    cmd = [sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning" if args.no_access_log else "info"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded server did not start; see {log_path}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        mode = "lifecycles" if args.embedded == "lifecycle" else "creates"
        print(f"Flowdeck embedded {url}: {' '.join(cmd[1:])} (SQLite in {var_dir}; {mode}; "
              f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')})", flush=True)
        asyncio.run(one_rep(url, env, 20, 4, False, create_only=args.embedded == "create"))  # warm-up
        for conc in concs:
            reps = []
            for i in range(args.reps):
                s0, c0 = tree_cpu_s(proc.pid), time.process_time()
                rep = asyncio.run(one_rep(url, env, args.runs, conc, args.agents == "shared",
                                          create_only=args.embedded == "create", agent_reports=args.agent_reports,
                                          own_clients=not args.shared_pool))
                rep["server_cpu_s"] = tree_cpu_s(proc.pid) - s0
                rep["client_cpu_s"] = time.process_time() - c0
                rep["server_cpu_ms_per_req"] = 1000 * rep["server_cpu_s"] / max(rep["requests"], 1)
                rep["rss_mb"] = rss_mb(proc.pid)
                print_rep("embedded", conc, i, rep)
                reps.append(rep)
            errors = sum(r["http_errors"] + r["transport_errors"] for r in reps)
            print(f"Flowdeck embedded (SQLite), {conc} client(s), {args.runs} {mode}, median of {len(reps)}:")
            print(f"  requests/s {med(reps, 'requests_per_s')}   p50 {med(reps, 'p50_ms')} ms   "
                  f"p99 {med(reps, 'p99_ms')} ms   max {med(reps, 'max_ms')} ms")
            rss = [round(x) for x in reps[-1]["rss_mb"]]
            print(f"  server CPU per request {med(reps, 'server_cpu_ms_per_req')} ms   errors {errors}   retries "
                  f"{sum(r['retries'] for r in reps)}   server RSS after (MiB): {rss}")
            if errors:
                print(f"  error samples: {[x for r in reps for x in r['http_error_samples']][:3]}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if args.keep:
            print(f"kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", dest="dbname", default="flowdeck_bench", help="a migrated database of its own")
    ap.add_argument("--pg", default="127.0.0.1:5432")
    ap.add_argument("--owner-user", default="flowdeck_owner")
    ap.add_argument("--app-user", default="flowdeck_app")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--clients", default="1,16", help="comma-separated concurrencies")
    ap.add_argument("--runs", type=int, default=400, help="lifecycles per repeat (the peer harness uses 2000)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn --workers (production runs 1 per replica)")
    ap.add_argument("--agents", choices=("per-client", "shared"), default="per-client")
    ap.add_argument("--browser-load", type=int, default=0, metavar="N",
                    help="N more clients asking for pages of 200 runs with a cookie during the timed repeats "
                         "(a browser's requests beside the agents'; their latency is printed apart, and the "
                         "server CPU per request then counts their CPU against the agents' requests)")
    ap.add_argument("--shared-pool", action="store_true",
                    help="the clients share one pool of connections, as the peer's harness does, instead of a "
                         "connection each, as agents have (a shared pool's hand-over races add 100-400 ms to a "
                         "few requests under load; docs/performance.md, \"Thirteenth round\")")
    ap.add_argument("--agent-reports", action="store_true",
                    help="between RUNNING and COMPLETED also send a flow-run heartbeat, a task-run batch "
                         f"({REPORT_TASKS} tasks) and a log batch ({REPORT_LOG_LINES} lines); "
                         "not comparable with the peer")
    ap.add_argument("--plain", action="store_true", help="serve config.asgi:application without the shim")
    ap.add_argument("--no-access-log", action="store_true", help="production keeps uvicorn's access log on")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--profile", metavar="DIR", help="one more repeat at the top concurrency under py-spy")
    ap.add_argument("--profile-rate", type=int, default=100)
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    ap.add_argument("--peer-url", help="a Prefect 3 API, e.g. http://127.0.0.1:4205/api")
    ap.add_argument("--peer-pid", type=int, help="the Prefect 3 server's PID (for its CPU/RSS)")
    ap.add_argument("--peer-bench", default=str(PEER_BENCH),
                    help="the peer's harness (default: shared/peers/prefect3/bench_api.py beside this checkout)")
    ap.add_argument("--peer-python", default=os.environ.get("PEER_PYTHON", "python3"))
    ap.add_argument("--peer-db-url", help="the peer's database as a superuser, e.g. "
                    "postgres://postgres@127.0.0.1:5432/prefect_bench: vacuumed and analyzed before each peer "
                    "repeat, as ours is before each of ours")
    ap.add_argument("--history", type=int, default=20000, metavar="N",
                    help="finished runs kept in a history workspace of the bench database (made once)")
    ap.add_argument("--out", help="write every repeat as JSON here")
    ap.add_argument("--server-env", action="append", default=[], metavar="K=V",
                    help="extra server environment, e.g. DATABASE_POOL_MAX_SIZE=20 (repeatable)")
    ap.add_argument("--show-sql", action="store_true", help="print one request's SQL per endpoint after warm-up")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--serve", action="store_true",
                    help="start the server with the production command, python -m config.serve (with --workers: "
                         "a process per worker, each on its own SO_REUSEPORT socket) instead of uvicorn's CLI")
    ap.add_argument("--app", metavar="MODULE:ATTR", help="serve this ASGI application instead (implies --plain); "
                    "e.g. to compare with another serving model")
    ap.add_argument("--embedded", nargs="?", const="create", choices=("create", "lifecycle"),
                    help="embedded defaults instead (python -m config.embedded on a fresh SQLite file): "
                         "'create' (default) only creates runs, 'lifecycle' runs whole lifecycles; "
                         "e.g. --embedded --clients 16 --runs 500 --reps 1 (issue 12: 0 errors, p99 < 1 s)")
    args = ap.parse_args()
    concs = [int(c) for c in args.clients.split(",")]
    if args.embedded:
        run_embedded(args, concs)
        return
    owner_url = f"postgres://{args.owner_user}@{args.pg}/{args.dbname}"
    app_url = f"postgres://{args.app_user}@{args.pg}/{args.dbname}"
    django_setup(owner_url)
    import django
    import uvicorn

    out_dir = Path(tempfile.mkdtemp(prefix="fd-api-http-"))
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    history = seed_history(args.history)
    env = seed(max(concs + [4]))  # the warm-up uses 4 clients
    server = Server(args, app_url, out_dir)
    results: dict[str, Any] = {"config": {}, "flowdeck": {}, "peer": {}}
    try:
        server.start()
        assert server.proc is not None
        pool_max = server.env.get("DATABASE_POOL_MAX_SIZE", "10")
        config = (f"Flowdeck {server.url}: {' '.join(server.cmd[2:])} {' '.join(args.server_env)}\n"
                  f"  PostgreSQL {args.pg}/{args.dbname} as {args.app_user} (RLS), pool max {pool_max}, "
                  f"Redis {args.redis_url}; Django {django.get_version()}, uvicorn {uvicorn.__version__}, "
                  f"Python {sys.version.split()[0]}\n"
                  f"  database: {history} finished runs of history; the server's autovacuum is "
                  f"{autovacuum_setting(owner_url)}; VACUUM (ANALYZE) before each repeat, "
                  f"{'both databases' if args.peer_db_url else 'ours only (no --peer-db-url)'}\n"
                  f"  load: {args.runs} lifecycles × {args.reps} repeats per concurrency {concs}, "
                  f"agents {args.agents}, httpx async in this process (1 core at most), "
                  f"{'one shared pool of connections, as the peer' if args.shared_pool else 'a connection per client'}"
                  f"{'' if args.shared_pool or not args.peer_url else ' (the peer: one shared pool)'}; "
                  f"machine: {os.cpu_count()} cores; "
                  f"shim {'absent' if args.plain else 'counting only in an untimed repeat'}; "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        print(config, flush=True)
        results["config"] = {"text": config, "args": vars(args)}
        server.shim(counting=True)  # the warm-up's SQL for --show-sql
        asyncio.run(one_rep(server.url, env, 50, 4, args.agents == "shared",  # warm-up, not reported
                            agent_reports=args.agent_reports))
        print(f"server RSS after warm-up (MiB): {[round(x) for x in rss_mb(server.proc.pid)]}")
        # This process set Django up and seeded through the ORM: a full pass of its collector over
        # all that took 92-110 ms, stopping the load generator's event loop mid-repeat, and the
        # requests in flight were counted that much slower (docs/performance.md, "Tenth round").
        # Frozen, the passes skip it. The peer's harness is its own, smaller process.
        gc.collect()
        gc.freeze()
        if args.show_sql and (shim := server.shim(sql=True)):
            for kind, statements in shim["_sql"].items():
                print(f"SQL of one {kind} request ({len(statements)} statements; BEGIN/COMMIT/pool check not shown):")
                print("\n".join(f"  {i + 1:2}. {q[:160]}" for i, q in enumerate(statements)))
        server.shim(counting=False)
        for conc in concs:
            print(f"machine speed before {conc} client(s): {calibration()}", flush=True)
            reps, peer_reps = [], []
            results["peer"][str(conc)] = peer_reps
            for i in range(args.reps):
                if args.peer_url:
                    if args.peer_db_url:
                        maintain(args.peer_db_url)
                    peer_reps += run_peer(args, conc, out_dir, i)
                maintain(owner_url)
                # ANALYZE makes every pooled connection plan its prepared statements afresh; a few
                # untimed lifecycles do that here, as autovacuum's rarer passes would in service.
                asyncio.run(one_rep(server.url, env, 2 * conc, conc, args.agents == "shared",
                                    agent_reports=args.agent_reports))
                rep = measured_rep(server, env, args.runs, conc, args)
                print_rep("flowdeck", conc, i, rep)
                reps.append(rep)
            results["flowdeck"][str(conc)] = reps
            print_summary(conc, reps)
            if (counts := counted_rep(server, env, conc, args)) is not None:
                print_counts(conc, counts)
                results["flowdeck"][f"{conc} counts"] = counts
            if args.peer_url:
                peer = results["peer"][str(conc)]
                for key in ("transitions_per_s", "p50_ms", "p99_ms"):
                    f, p = statistics.median(r[key] for r in reps), statistics.median(r[key] for r in peer)
                    print(f"  vs Prefect 3 at {conc}: {key} Flowdeck {f:.1f} / Prefect {p:.1f} = {f / p:.2f}×")
                pcpu = statistics.median(r["server_cpu_s"] / (4 * r["completed_runs"] or 1) for r in peer)
                print(f"  Prefect 3 server CPU per request {1000 * pcpu:.2f} ms")
        print(f"machine speed at the end: {calibration()}", flush=True)
        if args.profile:
            profile_rep(server, env, max(concs), args, Path(args.profile))
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    finally:
        server.stop()
        if args.keep:
            print(f"kept workspace {env['slug']}")
        else:
            teardown(env)
        print(f"server log: {server.log_path}")


if __name__ == "__main__":
    main()
