"""Benchmark: SLA alerts (issue 11) — the evaluator's pass time, and breach-to-notification latency.

1. Evaluator: seeds ``--workspaces`` (200) workspaces × ``--policies`` (50) SLA policies (10,000)
   of every kind over ``--flows`` (10) flows per workspace and ``--runs`` (200,000) runs with
   realistic states (mostly COMPLETED; some FAILED, CRASHED, CANCELLED long ago; a few RUNNING and
   SCHEDULED now), bulk-inserted with SQL. ``--breaching`` (2 %) of the flows really breach (a run
   failed after the policies were created, a run late with labels no agent covers, a run running
   for hours, a stale success for a short freshness window, a pre-start failure), and some agent
   policies name labels no agent carries; the rest keep their promises. Every policy notifies one
   webhook channel of its workspace: the deliveries are queued (to REDIS_URL's Celery queue), not
   sent, since no worker runs during this part.
   Then times ``orchestration.alerts.evaluator.evaluate_sla_policies()`` (every workspace, the
   beat tick): the first pass (opens the incidents), then ``--passes`` (10) steady-state passes
   (nothing new: dedup only). Prints each pass's time, median and p95 of the steady passes, the
   SQL queries per pass and the incidents opened. Target: one pass under 1 s.
2. Latency: a real server (``python -m config.embedded --no-periodic``, uvicorn) and a real Celery
   worker (``celery -A config worker``) on DATABASE_URL and REDIS_URL, a webhook receiver on
   loopback (a thread of this process, recording arrival times), one workspace with a failure
   policy (every failed run, the whole workspace) notifying that webhook. Each measured run has a
   flow of its own (a failure incident is per flow: a second failure of a flow whose incident is
   still open is rightly no new notification). ``--latency-runs`` (200) runs are created,
   claimed and set RUNNING through the REST agent protocol; then, one at a time, each is set
   FAILED (``POST …/flow-runs/<id>/set-state/``) and the clock runs from the REST response to the
   webhook's arrival at the receiver (the state-change trigger, the evaluator, the delivery task,
   the HTTP request). Prints p50 / p95 / p99 / max and how many notifications arrived (exactly one
   per failed run expected). Target: p99 < 2 s.

Use a database and a Redis database of its own (never the tests' or a live one: the latency part
purges the Celery queue of REDIS_URL before its worker starts), migrated; the app role is what
production uses (``ANALYZE`` after the seed runs as ``BENCH_OWNER_USER``, default flowdeck_owner):

    createdb flowdeck_bench && DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck_bench \\
        .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://flowdeck_app@127.0.0.1:5432/flowdeck_bench REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python bench/sla_alerts.py

Options: --workspaces, --policies (per workspace), --flows (per workspace), --runs (in all),
--breaching (fraction of flows), --passes, --latency-runs, --warmup, --only evaluator|latency,
--keep. The figures are printed with the machine's load average: on a shared machine, compare runs
made under the same load. The
latency part sets ``FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS=true`` for its server and worker (the
receiver is on 127.0.0.1, which A2 refuses otherwise). Everything it creates is removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts import keys  # noqa: E402
from accounts.models import ApiKey, Membership, Role, ServiceAccount, User, Workspace  # noqa: E402
from core.tenancy import rls_bypass  # noqa: E402
from orchestration.models import (  # noqa: E402
    Agent,
    Flow,
    FlowVersion,
    Incident,
    NotificationChannel,
    NotificationDelivery,
    PolicyChannel,
    Project,
    SlaPolicy,
)

KINDS = ("start", "duration", "failure", "freshness", "prestart", "agent")
LABEL = "default"
UNCOVERED = "gpu"  # no agent carries it: late runs with it are the correlated "no agent" cause
# Rows of a seeded workspace, children first (a raw DELETE each: Django's cascade would load them).
TABLES = ("deliveryattempt", "notificationdelivery", "incidentevent", "incidentrun", "incident", "policychannel",
          "slapolicy", "notificationchannel", "flowrunstate", "flowrun", "flowversion", "flow", "project", "agent")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


# --- 1. the evaluator ------------------------------------------------------------------------------

# Runs of every seeded flow, newest first (g = 1 is the newest), one every ``spacing`` seconds back
# from two hours ago: policies are "created" two hours ago, so all of this is history to them.
INSERT_HISTORY = """
INSERT INTO orchestration_flowrun (
    id, workspace_id, flow_id, flow_version_id, name, parameters, labels, created_by_kind, scheduled_start,
    state_type, state_name, state_message, state_timestamp, state_version, attempt, run_count,
    start_time, end_time, cancellation_requested, created_at)
SELECT gen_random_uuid(), f.workspace_id, f.id, v.id, 'run-' || g, '{}', %(labels)s, 'schedule', s.at,
       s.state, initcap(s.state), '', s.at + s.took, 3, 1, 1, s.at + interval '2 seconds', s.at + s.took, false,
       s.at - interval '1 minute'
FROM orchestration_flow f
JOIN orchestration_flowversion v ON v.flow_id = f.id
CROSS JOIN generate_series(1, %(per_flow)s) AS g
CROSS JOIN LATERAL (
    SELECT now() - interval '2 hours' - (g * %(spacing)s || ' seconds')::interval AS at,
           ((30 + (g * 7919) %% 600) || ' seconds')::interval AS took,
           CASE WHEN r < 0.90 THEN 'COMPLETED' WHEN r < 0.95 THEN 'FAILED' WHEN r < 0.97 THEN 'CRASHED'
                ELSE 'CANCELLED' END AS state
    FROM (SELECT random() AS r, g AS _g) AS x
) AS s
WHERE f.workspace_id = ANY(%(ws)s::uuid[])
"""

# What happens since: each flow's latest run completed an hour ago, and one run waits for its time.
INSERT_RECENT = """
INSERT INTO orchestration_flowrun (
    id, workspace_id, flow_id, flow_version_id, name, parameters, labels, created_by_kind, scheduled_start,
    state_type, state_name, state_message, state_timestamp, state_version, attempt, run_count,
    start_time, end_time, cancellation_requested, created_at)
SELECT gen_random_uuid(), f.workspace_id, f.id, v.id, 'recent-' || s.n, '{}', %(labels)s, 'schedule', s.at,
       s.state, initcap(s.state), '', now(), 3, 1, s.rc, s.started, s.ended, false, now() - interval '2 hours'
FROM orchestration_flow f
JOIN orchestration_flowversion v ON v.flow_id = f.id
CROSS JOIN (VALUES
    (1, now() - interval '1 hour', 'COMPLETED', 1, now() - interval '1 hour', now() - interval '55 minutes'),
    (2, now() + interval '10 minutes', 'SCHEDULED', 0, NULL::timestamptz, NULL::timestamptz)
) AS s(n, at, state, rc, started, ended)
WHERE f.workspace_id = ANY(%(ws)s::uuid[])
"""

# A flow in ten also has a run going, started a minute ago (well inside its limits).
INSERT_RUNNING = """
INSERT INTO orchestration_flowrun (
    id, workspace_id, flow_id, flow_version_id, name, parameters, labels, created_by_kind, scheduled_start,
    state_type, state_name, state_message, state_timestamp, state_version, attempt, run_count,
    start_time, cancellation_requested, created_at)
SELECT gen_random_uuid(), f.workspace_id, f.id, v.id, 'running', '{}', %(labels)s, 'schedule',
       now() - interval '70 seconds', 'RUNNING', 'Running', '', now() - interval '1 minute', 2, 1, 1,
       now() - interval '1 minute', false, now() - interval '2 minutes'
FROM orchestration_flow f
JOIN orchestration_flowversion v ON v.flow_id = f.id
WHERE f.workspace_id = ANY(%(ws)s::uuid[]) AND f.name LIKE %(names)s
"""


def _run_rows(cursor: Any, flow: Flow, version_id: Any, rows: list[dict[str, Any]]) -> None:
    """A few hand-made runs of one breaching flow (and their latest state row with details)."""
    for row in rows:
        run_id = uuid.uuid4()
        cursor.execute(
            """INSERT INTO orchestration_flowrun (
                   id, workspace_id, flow_id, flow_version_id, name, parameters, labels, created_by_kind,
                   scheduled_start, state_type, state_name, state_message, state_timestamp, state_version, attempt,
                   run_count, start_time, end_time, cancellation_requested, created_at)
               VALUES (%s, %s, %s, %s, %s, '{}', %s, 'schedule', now() - %s::interval, %s, %s, %s,
                       now() - %s::interval, 3, 1, %s, now() - %s::interval, now() - %s::interval, false,
                       now() - %s::interval - interval '1 minute')""",
            [run_id, flow.workspace_id, flow.pk, version_id, row["name"], json.dumps(row.get("labels", [LABEL])),
             row["scheduled_ago"], row["state"], row.get("state_name", row["state"].title()), row.get("message", ""),
             row.get("state_ago", "0 seconds"), row.get("run_count", 1), row.get("started_ago"),
             row.get("ended_ago"), row["scheduled_ago"]],
        )
        cursor.execute(
            """INSERT INTO orchestration_flowrunstate (workspace_id, flow_run_id, type, name, message, timestamp,
                   result_ref, details)
               VALUES (%s, %s, %s, %s, %s, now() - %s::interval, '', %s)""",
            [flow.workspace_id, run_id, row["state"], row.get("state_name", row["state"].title()),
             row.get("message", ""), row.get("state_ago", "0 seconds"), json.dumps(row.get("details", {}))],
        )


BREACHING_RUNS: list[dict[str, Any]] = [
    # failure: the latest run failed after the policy was created
    {"name": "failed", "state": "FAILED", "scheduled_ago": "20 minutes", "started_ago": "19 minutes",
     "ended_ago": "10 minutes", "state_ago": "10 minutes", "message": "Task load failed"},
    # start: late, with a label no agent carries (the correlated cause)
    {"name": "late", "state": "SCHEDULED", "state_name": "Late", "scheduled_ago": "10 minutes", "run_count": 0,
     "labels": [LABEL, UNCOVERED], "started_ago": None, "ended_ago": None, "state_ago": "9 minutes"},
    # duration: running for three hours
    {"name": "slow", "state": "RUNNING", "scheduled_ago": "3 hours", "started_ago": "3 hours", "ended_ago": None,
     "state_ago": "3 hours"},
    # prestart: the agent could not start the code (an import error it reported)
    {"name": "prestart", "state": "CRASHED", "scheduled_ago": "5 minutes", "started_ago": None, "ended_ago": None,
     "state_ago": "4 minutes", "message": "Could not import the flow: No module named 'pandas'",
     "details": {"prestart": True, "phase": "import", "error": "ModuleNotFoundError: No module named 'pandas'"}},
]


def seed(args: argparse.Namespace) -> list[Workspace]:
    started = time.perf_counter()
    tag = uuid.uuid4().hex[:6]
    per_flow = max(args.runs // (args.workspaces * args.flows) - 2, 1)
    breaching_every = max(int(round(1 / args.breaching)), 1) if args.breaching > 0 else 0
    created_at = timezone.now() - dt.timedelta(hours=2)
    with rls_bypass():
        workspaces = Workspace.objects.bulk_create(
            [Workspace(name=f"SLA bench {i}", slug=f"sla-bench-{tag}-{i}") for i in range(args.workspaces)])
        ws_ids = [w.pk for w in workspaces]
        projects = Project.objects.unscoped().bulk_create(
            [Project(workspace=w, name="bench") for w in workspaces])
        flows = Flow.objects.unscoped().bulk_create(
            [Flow(workspace=w, project=p, name=f"flow-{j:03d}", created_at=created_at)
             for w, p in zip(workspaces, projects, strict=True) for j in range(args.flows)])
        versions = FlowVersion.objects.unscoped().bulk_create(
            [FlowVersion(workspace_id=f.workspace_id, flow=f, version=1, content_hash="0" * 64, labels=[LABEL])
             for f in flows])
        version_of = {v.flow_id: v.pk for v in versions}
        Agent.objects.unscoped().bulk_create(
            [Agent(workspace=w, name="agent", labels=[LABEL], last_heartbeat_at=timezone.now(),
                   last_poll_at=timezone.now(), announced_status="healthy") for w in workspaces])
        channels = NotificationChannel.objects.unscoped().bulk_create(
            [NotificationChannel(workspace=w, name="ops", kind="webhook", config={"url": "http://127.0.0.1:9/hook"},
                                 secret=uuid.uuid4().hex) for w in workspaces])
        # Breaching flows get thresholds they break; the others thresholds nothing here comes near.
        breaching = {f.pk for i, f in enumerate(flows)
                     if breaching_every and i % breaching_every == breaching_every // 2}
        policies: list[SlaPolicy] = []
        for w, p in zip(workspaces, projects, strict=True):
            ws_flows = [f for f in flows if f.workspace_id == w.pk]
            for i in range(args.policies):
                kind = KINDS[i % len(KINDS)]
                flow = ws_flows[(i // len(KINDS)) % len(ws_flows)]
                hot = flow.pk in breaching
                fields: dict[str, Any] = {"workspace": w, "name": f"p{i:03d}-{kind}", "kind": kind,
                                          "created_at": created_at, "updated_at": created_at}
                scope = i % 10
                if kind == "agent":  # about the workspace's agents, not a flow
                    fields["agent_labels"] = [UNCOVERED] if hot else [LABEL]
                    fields["threshold_seconds"] = 120
                elif scope == 9:
                    fields["project"] = p
                elif scope == 8 and kind in ("start", "failure"):
                    pass  # the whole workspace
                else:
                    fields["flow"] = flow
                if kind == "start":
                    fields["threshold_seconds"] = 300
                elif kind == "duration":
                    fields.update(threshold_seconds=3600, predictive=i % 2 == 0)
                elif kind == "freshness":
                    fields["threshold_seconds"] = 1800 if hot else 86400
                policies.append(SlaPolicy(**fields))
        policies = SlaPolicy.objects.unscoped().bulk_create(policies, batch_size=2000)
        channel_of = {c.workspace_id: c for c in channels}
        PolicyChannel.objects.unscoped().bulk_create(
            [PolicyChannel(workspace_id=p.workspace_id, policy=p, channel=channel_of[p.workspace_id])
             for p in policies], batch_size=5000)
        with connection.cursor() as cursor:
            labels = json.dumps([LABEL])
            for chunk in range(0, len(ws_ids), 20):  # 20 workspaces a statement: bounded transactions' WAL
                params = {"ws": [str(w) for w in ws_ids[chunk:chunk + 20]], "labels": labels,
                          "per_flow": per_flow, "spacing": max(14 * 86400 // per_flow, 60)}
                cursor.execute(INSERT_HISTORY, params)
                cursor.execute(INSERT_RECENT, params)
                cursor.execute(INSERT_RUNNING, {**params, "names": "flow-%0"})
            for flow in flows:
                if flow.pk in breaching:
                    _run_rows(cursor, flow, version_of[flow.pk], BREACHING_RUNS)
            cursor.execute("SELECT count(*) FROM orchestration_flowrun WHERE workspace_id = ANY(%s::uuid[])",
                           [[str(w) for w in ws_ids]])
            (runs,) = cursor.fetchone()
    analyze()
    print(f"seeded in {time.perf_counter() - started:.1f} s: {len(workspaces)} workspaces, {len(flows)} flows, "
          f"{len(policies):,} policies ({', '.join(f'{k}: {sum(p.kind == k for p in policies)}' for k in KINDS)}), "
          f"{runs:,} runs; {len(breaching)} breaching flows")
    return workspaces


def analyze() -> None:
    """Fresh planner statistics, as autovacuum would leave them after such an insert. ANALYZE
    needs the tables' owner, which the app role is not; ``BENCH_OWNER_USER`` names it."""
    import psycopg

    db = connection.settings_dict
    owner = os.environ.get("BENCH_OWNER_USER", "flowdeck_owner")
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"], user=owner,
                         password=db["PASSWORD"] or None, autocommit=True) as conn:
        for table in ("flowrun", "flowrunstate", "flow", "slapolicy", "agent", "incident", "policychannel"):
            conn.execute(f"ANALYZE orchestration_{table}")


def teardown(workspaces: list[Workspace]) -> None:
    ids = [str(w.pk) for w in workspaces]
    with rls_bypass(), connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"DELETE FROM orchestration_{table} WHERE workspace_id = ANY(%s::uuid[])", [ids])  # noqa: S608
    with rls_bypass():
        Workspace.objects.filter(pk__in=ids).delete()


class QueryCounter:
    """Counts the SQL statements run on this thread's connection (``connection.execute_wrapper``)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def refresh_agents(workspaces: list[Workspace]) -> None:
    """The seeded agents keep heartbeating and polling, as live agents do between two ticks."""
    with rls_bypass():
        Agent.objects.unscoped().filter(workspace__in=workspaces).update(
            last_heartbeat_at=timezone.now(), last_poll_at=timezone.now())


def bench_evaluator(args: argparse.Namespace) -> None:
    from orchestration.alerts.evaluator import evaluate_sla_policies

    workspaces = seed(args)
    try:
        times: list[float] = []
        for n in range(args.passes + 1):
            refresh_agents(workspaces)
            queries = QueryCounter()
            with connection.execute_wrapper(queries):
                started = time.perf_counter()
                changed = evaluate_sla_policies()
                elapsed = time.perf_counter() - started
            with rls_bypass():
                active = Incident.objects.unscoped().filter(workspace__in=workspaces).exclude(status="resolved").count()
                queued = NotificationDelivery.objects.unscoped().filter(workspace__in=workspaces).count()
            label = "first pass (opens incidents)" if n == 0 else f"steady pass {n:2d}"
            print(f"  {label:29s} {ms(elapsed)}  {queries.count:5d} queries  {changed:4d} opened/resolved  "
                  f"{active} open incidents, {queued} deliveries queued")
            if n:
                times.append(elapsed)
        if times:
            print(f"evaluator, steady state over {len(times)} passes: median {ms(statistics.median(times))}  "
                  f"p95 {ms(pct(times, 95))}  max {ms(max(times))}   (target: one pass < 1 s)")
        with rls_bypass():
            by_kind: dict[str, int] = {}
            for kind in Incident.objects.unscoped().filter(workspace__in=workspaces).values_list("kind", flat=True):
                by_kind[kind] = by_kind.get(kind, 0) + 1
        print(f"  incidents by kind: {', '.join(f'{k}: {v}' for k, v in sorted(by_kind.items())) or 'none'}")
    finally:
        if args.keep:
            print(f"kept {len(workspaces)} workspaces ({workspaces[0].slug} …)")
        else:
            teardown(workspaces)


# --- 2. breach-to-notification latency -----------------------------------------------------------

class Receiver:
    """A webhook receiver on loopback: records every POST with its arrival time (time.time())."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.time()
                with receiver.lock:
                    receiver.arrivals.append((arrived, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def find(self, needle: str) -> list[float]:
        with self.lock:
            return [at for at, _, body in self.arrivals if needle.encode() in body]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
          log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what}: the process exited; see {log}")
        time.sleep(0.005)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}" + (f"; see {log}" if log else ""))


def _processes(directory: Path) -> tuple[list[tuple[subprocess.Popen[bytes], Any]], str, Path]:
    """The server (uvicorn, no periodic loop) and one Celery worker, their output in files."""
    env = {**os.environ, "FLOWDECK_INPROCESS_PERIODIC": "0", "FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS": "true",
           "PYTHONDONTWRITEBYTECODE": "1"}
    port = _free_port()
    started = []
    server_log = (directory / "server.log").open("wb")
    started.append((subprocess.Popen(
        [sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(port), "--no-periodic",
         "--log-level", "warning"], cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT), server_log))
    worker_path = directory / "worker.log"
    worker_log = worker_path.open("wb")
    started.append((subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads", "--concurrency", "4",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--hostname", f"sla-bench-{port}@%h"],
        cwd=ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT), worker_log))
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    _wait(healthy, 60, "the server", started[0][0], directory / "server.log")
    _wait(lambda: " ready." in worker_path.read_text(errors="replace"), 60, "the Celery worker", started[1][0],
          worker_path)
    return started, url, worker_path


def _latency_workspace() -> tuple[Workspace, User, dict[str, str]]:
    slug = f"sla-latency-{uuid.uuid4().hex[:8]}"
    workspace = Workspace.objects.create(name="SLA latency bench", slug=slug)
    user = User.objects.create_user(f"{slug}@example.com", "x" * 20)
    Membership.objects.create(workspace=workspace, user=user, role=Role.ADMIN)
    made: dict[str, str] = {}
    with rls_bypass():
        account = ServiceAccount.all_objects.create(workspace=workspace, name="bench-agent", role=Role.AGENT)
        for kind, owner in (("user", {"user": user}), ("service_account", {"service_account": account})):
            generated = keys.generate(kind)
            ApiKey.all_objects.create(workspace=workspace, kind=kind, name="bench", **owner,
                                      lookup_prefix=generated.lookup_prefix, secret_hash=generated.secret_hash)
            made[kind] = generated.secret
    return workspace, user, made


def _api(url: str, slug: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{url}/api/v1/workspaces/{slug}/", headers={"Authorization": f"Bearer {key}"},
                        timeout=30)


def _call(http: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    response = http.request(method, path, json=body)
    if response.status_code >= 400:
        raise SystemExit(f"{method} {path} → {response.status_code}: {response.text[:2000]}")
    return response.json() if response.content else None


def bench_latency(args: argparse.Namespace) -> None:
    from flowdeck import Flow as SdkFlow
    from flowdeck import task
    from flowdeck.client import Client

    if not settings.REDIS_URL:
        raise SystemExit("the latency part needs REDIS_URL (the Celery broker and the channel layer).")
    from config.celery import app

    app.control.purge()  # tasks queued earlier with no worker (the evaluator part's deliveries)
    directory = Path(tempfile.mkdtemp(prefix="sla-bench-"))
    receiver = Receiver()
    workspace, user, made = _latency_workspace()
    processes: list[tuple[subprocess.Popen[bytes], Any]] = []
    try:
        processes, url, worker_log = _processes(directory)
        admin = _api(url, workspace.slug, made["user"])
        channel = _call(admin, "POST", "notification-channels/",
                        {"name": "bench receiver", "kind": "webhook", "config": {"url": receiver.url}})
        _call(admin, "POST", "sla-policies/", {"name": "every failure", "kind": "failure", "consecutive_failures": 1,
                                                "channel_ids": [channel["id"]]})

        @task
        def work() -> None:
            pass

        with SdkFlow("sla-latency") as flow:
            work()
        developer = Client(api_url=url, api_key=made["user"], workspace=workspace.slug)
        agent = Client(api_url=url, api_key=made["service_account"], workspace=workspace.slug)
        # One flow per measured run: a failure incident may be per flow, and a second failure of a
        # flow whose incident is still open is (rightly) no new notification.
        total = args.latency_runs + args.warmup
        flow_ids = []
        for i in range(total):
            version, _ = developer.register_flow(project="bench", name=f"sla-latency-{i:04d}",
                                                 metadata=flow.serialize())
            flow_ids.append(str(version.get("flow") or version["flow_id"]))
        runs = [developer.create_flow_run(flow_id) for flow_id in flow_ids]
        agent_row = agent.register_agent("bench-agent", "process", [], "bench", 10)
        claimed: dict[str, dict[str, Any]] = {}
        while len(claimed) < total:
            batch = agent.claim(agent_row["id"], limit=min(50, total - len(claimed)), lease_seconds=3600)
            if not batch:
                raise SystemExit(f"only {len(claimed)} of {total} runs could be claimed")
            claimed.update({r["id"]: r for r in batch})
        for run in runs:
            agent.set_flow_run_state(run["id"], {"type": "RUNNING"}, attempt=claimed[run["id"]]["attempt"])
        print(f"latency: server + Celery worker (threads ×4) + webhook receiver on loopback, {os.cpu_count()} cores; "
              f"{args.latency_runs} runs failed one at a time through the REST agent protocol "
              f"({args.warmup} warm-up runs first)")
        latencies: list[float] = []
        from_request: list[float] = []
        for n, run in enumerate(runs):
            sent = time.time()
            answer = agent.set_flow_run_state(run["id"], {"type": "FAILED", "message": "bench failure"},
                                              attempt=claimed[run["id"]]["attempt"])
            answered = time.time()
            if answer.get("status") != "ACCEPT":
                raise SystemExit(f"FAILED was not accepted: {answer}")
            arrived = _wait(lambda run_id=run["id"]: receiver.find(run_id), 30,
                            f"the notification of run {run['id']}", processes[1][0], worker_log)
            if n >= args.warmup:
                latencies.append(arrived[0] - answered)
                from_request.append(arrived[0] - sent)
        time.sleep(1)  # late duplicates, if any, would arrive now
        opened = sum(1 for _, _, body in receiver.arrivals if b"incident.opened" in body)
        print(f"  REST response → webhook arrives: p50 {ms(pct(latencies, 50))}  p95 {ms(pct(latencies, 95))}  "
              f"p99 {ms(pct(latencies, 99))}  max {ms(max(latencies))}  (n={len(latencies)}; target p99 < 2 s)")
        print(f"  request sent → webhook arrives:  p50 {ms(pct(from_request, 50))}  p95 {ms(pct(from_request, 95))}  "
              f"p99 {ms(pct(from_request, 99))}")
        print(f"  notifications received: {len(receiver.arrivals)} ({opened} incident.opened) for {total} failed runs")
    finally:
        for proc, log in reversed(processes):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        receiver.stop()
        teardown([workspace])
        with rls_bypass():
            user.delete()


def main() -> None:
    import logging

    for name in ("httpx", "flowdeck"):  # the figures, not the chatter
        logging.getLogger(name).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspaces", type=int, default=200)
    parser.add_argument("--policies", type=int, default=50, help="SLA policies per workspace")
    parser.add_argument("--flows", type=int, default=10, help="flows per workspace")
    parser.add_argument("--runs", type=int, default=200_000, help="runs in all")
    parser.add_argument("--breaching", type=float, default=0.02, help="fraction of flows that breach")
    parser.add_argument("--passes", type=int, default=10, help="steady-state passes after the first")
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5, help="failed runs before the measured ones")
    parser.add_argument("--only", choices=("evaluator", "latency"))
    parser.add_argument("--keep", action="store_true", help="keep the evaluator part's workspaces")
    args = parser.parse_args()
    if not settings.IS_POSTGRES:
        sys.exit("bench/sla_alerts.py measures PostgreSQL: set DATABASE_URL (and REDIS_URL).")
    db = connection.settings_dict
    print(f"database: {db['NAME']} as {db['USER']} on {db['HOST']}; redis: {settings.REDIS_URL or 'none'}; "
          f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    if args.only != "latency":
        print(f"evaluator: {args.workspaces} workspaces × {args.policies} policies, {args.flows} flows each, "
              f"{args.runs:,} runs, {args.breaching:.0%} of flows breaching, 1 + {args.passes} passes")
        bench_evaluator(args)
    if args.only != "evaluator":
        bench_latency(args)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
