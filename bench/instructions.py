"""User-space instructions per request on the agents' hot path, counted by valgrind's callgrind: a
figure that stays put on a machine whose speed drifts (on a shared VM the same commit moved ±20 %
in transitions/s within an hour; docs/performance.md, "Sixth round").

The requests go through the WSGI application every server process runs on its request threads
(``config.wsgi.application``, the same handler as ``config.asgi``'s), called in this process one
run's life at a time: create, claim, RUNNING, heartbeat, a task-run batch of 5, a log batch of
20, COMPLETED. The bodies are those of ``bench/api_http.py --agent-reports``, the database is
PostgreSQL as the application role (RLS on), seeded the same way. Callgrind counts two processes
that differ only in the number of lifecycles after the same warm-up (N and 2N); the difference
over N × 7 requests is the figure, so start-up and warm-up cancel out. Not in it: the kernel's
share (each round trip's system calls), the event loop, the event sender, PostgreSQL. Pair it
with ``bench/api_http.py``'s timings.

    .venv/bin/python bench/instructions.py [--lifecycles 40]   # about 5 minutes on 2 cores

Compare two commits by running it in each checkout (the counts depend on the Python build and
the dependencies, not on the machine's load).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from api_http import REPORT_LOG_LINES, REPORT_TASKS, django_setup, seed, teardown  # noqa: E402 (beside this file)

WARM_UP = 30


def child(env_file: Path, lifecycles: int, around: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
    """Runs under callgrind: warm up, then ``lifecycles`` run lifecycles through the handler
    (inside ``around()``, for a caller that measures them another way: bench/statement_time.py)."""
    seeded = json.loads(env_file.read_text())
    sys.path.insert(0, str(ROOT))
    from django.core.signals import request_started
    from django.db import close_old_connections

    from config.wsgi import application as app
    # One connection for the whole run, as a request thread keeps its pooled one.
    request_started.disconnect(close_old_connections)
    api = f"/api/v1/workspaces/{seeded['slug']}"

    def post(path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        raw = json.dumps(body).encode()
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": api + path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(raw)),
            "HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4()),
            "wsgi.input": io.BytesIO(raw), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        }
        answer: dict[str, str] = {}

        def start_response(status: str, headers: list, exc_info: Any = None) -> None:
            answer["status"] = status

        body_out = b"".join(app(environ, start_response))
        if not answer["status"].startswith("2"):
            raise SystemExit(f"{path}: {answer['status']} {body_out[:300]!r}")
        return json.loads(body_out)

    dev, agent, agent_id = seeded["dev_key"], seeded["agent_key"], seeded["agent_ids"][0]

    def lifecycle() -> None:
        post("/flow-runs/", {"flow": seeded["flow_id"], "idempotency_key": str(uuid.uuid4())}, dev)
        run = post(f"/agents/{agent_id}/claim/", {"limit": 1, "lease_seconds": 60}, agent)["results"][0]
        base, attempt = f"/flow-runs/{run['id']}", run["attempt"]
        post(base + "/set-state/", {"state": {"type": "RUNNING"}, "attempt": attempt}, agent)
        post(base + "/heartbeat/", {"attempt": attempt, "lease_seconds": 60}, agent)
        post(base + "/task-runs/", {"attempt": attempt, "reports": [
            {"task_key": f"t{i}", "state": {"type": "COMPLETED"}} for i in range(REPORT_TASKS)]}, agent)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        post(base + "/logs/", {"lines": [
            {"sequence": i, "level": "INFO", "timestamp": now, "message": f"line {i} of the bench flow"}
            for i in range(REPORT_LOG_LINES)]}, agent)
        post(base + "/set-state/", {"state": {"type": "COMPLETED"}, "attempt": attempt}, agent)

    for _ in range(WARM_UP):
        lifecycle()
    with around():
        for _ in range(lifecycles):
            lifecycle()


def counted(env_file: Path, lifecycles: int, out_dir: Path, server_env: dict[str, str]) -> subprocess.Popen[str]:
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.{lifecycles}",
           sys.executable, __file__, "--child", str(env_file), "--lifecycles", str(lifecycles)]
    return subprocess.Popen(cmd, cwd=ROOT, env=server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def collected(output: str) -> int:
    match = re.search(r"Collected : (\d+)", output)
    if match is None:
        raise SystemExit(f"callgrind printed no count:\n{output[-3000:]}")
    return int(match.group(1))


def database_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--pg", default="127.0.0.1:5432")
    ap.add_argument("--dbname", default="flowdeck_bench")
    ap.add_argument("--owner-user", default="flowdeck_owner")
    ap.add_argument("--app-user", default="flowdeck_app")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)


def child_env(args: argparse.Namespace, out_dir: Path) -> dict[str, str]:
    """The measured process's environment: production settings, the application role (RLS on)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "DATABASE_"))}
    env.update(
        DATABASE_URL=f"postgres://{args.app_user}@{args.pg}/{args.dbname}", REDIS_URL=args.redis_url,
        DJANGO_SETTINGS_MODULE="config.settings", FLOWDECK_PRODUCTION="true", SECRET_KEY=uuid.uuid4().hex * 2,
        FLOWDECK_INPROCESS_PERIODIC="false", FLOWDECK_DB_APP_ROLE=args.app_user,
        FLOWDECK_VAR_DIR=str(out_dir / "var"), FLOWDECK_CACHE_PREFIX="instructions",
        FLOWDECK_CHANNEL_PREFIX="instructions", PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--lifecycles", type=int, default=40, help="N: the two processes run N and 2N")
    database_arguments(ap)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.lifecycles)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")

    django_setup(f"postgres://{args.owner_user}@{args.pg}/{args.dbname}")
    seeded = seed(1)
    out_dir = Path(tempfile.mkdtemp(prefix="fd-instructions-"))
    env_file = out_dir / "seeded.json"
    env_file.write_text(json.dumps({k: v for k, v in seeded.items() if k not in ("workspace", "user")}))
    server_env = child_env(args, out_dir)
    n = args.lifecycles
    print(f"callgrind: {WARM_UP} warm-up lifecycles, then {n} and {2 * n}, in two processes (a few minutes)",
          flush=True)
    try:
        procs = {count: counted(env_file, count, out_dir, server_env) for count in (n, 2 * n)}
        totals = {}
        for count, proc in procs.items():
            output, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"the counted process failed:\n{output[-3000:]}")
            totals[count] = collected(output)
    finally:
        teardown(seeded)
    per_request = (totals[2 * n] - totals[n]) / (n * 7)
    print(f"user-space instructions per request (mean of the 7 requests of a run's life): {per_request / 1e6:.3f} M")
    print(f"  per run lifecycle: {per_request * 7 / 1e6:.2f} M   (callgrind files in {out_dir})")


if __name__ == "__main__":
    main()
