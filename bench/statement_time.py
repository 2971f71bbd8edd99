"""Where a hot-path request's database time goes: each statement's wall time and each wait of the
driver, per request, on the agents' hot path at one client (docs/performance.md, "Eighth round").

The requests are those of ``bench/instructions.py`` (the same harness: the WSGI application every
server process runs, called in a process of its own one run's life at a time: create, claim,
RUNNING, heartbeat, a task-run batch, a log batch, COMPLETED; PostgreSQL as the application role,
RLS on). After the warm-up, every statement Django sends is timed (``execute_wrapper``: the
driver's work, the round trip and PostgreSQL's execution) and so is every wait of psycopg by kind
(statements, COMMIT, the autocommit switches), and the prepared statements' plan counts are read
from ``pg_prepared_statements`` (a statement that keeps getting custom plans is planned on every
call). At one client a statement is worth about half a millisecond of latency, so this is the table
to read before merging or removing one; pair it with ``bench/instructions.py`` for CPU.

    .venv/bin/python bench/statement_time.py [--lifecycles 150]   # about a minute

Compare two commits by running it in each checkout, alternating: the figures are wall times and
move with the machine's load.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from api_http import django_setup, seed, teardown  # noqa: E402 (beside this file)
from instructions import WARM_UP, child, child_env, database_arguments  # noqa: E402

REQUESTS_PER_LIFECYCLE = 7


@contextmanager
def timed(lifecycles: int) -> Iterator[None]:
    """Time every statement and every driver wait of the block, then print them per request."""
    import psycopg
    from django.db import connection

    statements: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    waits: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    wait = psycopg.Connection.wait

    def timed_wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return wait(self, gen, *args, **kwargs)
        finally:
            entry = waits[getattr(gen, "__qualname__", "?")]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    def timed_statement(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = statements[" ".join(sql.split())[:100]]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    psycopg.Connection.wait = timed_wait  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(timed_statement):
            yield
    finally:
        psycopg.Connection.wait = wait  # type: ignore[method-assign]
    requests = lifecycles * REQUESTS_PER_LIFECYCLE
    print(f"{lifecycles} lifecycles after {WARM_UP} of warm-up, {requests} requests")
    print("driver waits per request:")
    for name, (count, seconds) in sorted(waits.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:<40} {count / requests:5.2f} calls  {1000 * seconds / requests:6.3f} ms"
              f"  ({1000 * seconds / count:.3f} ms each)")
    print("statements (ms each, per lifecycle, text):")
    for text, (count, seconds) in sorted(statements.items(), key=lambda kv: -kv[1][1]):
        print(f"  {1000 * seconds / count:6.3f} ms  x{count / lifecycles:4.1f}  {text}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans, left(statement, 90) FROM pg_prepared_statements "
                       "ORDER BY custom_plans DESC, generic_plans DESC")
        print("prepared statements (generic plans, custom plans, text):")
        for generic, custom, text in cursor.fetchall():
            print(f"  {generic:6} {custom:6}  {' '.join(text.split())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--lifecycles", type=int, default=150)
    database_arguments(ap)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.lifecycles, around=lambda: timed(args.lifecycles))
        return
    django_setup(f"postgres://{args.owner_user}@{args.pg}/{args.dbname}")
    seeded = seed(1)
    out_dir = Path(tempfile.mkdtemp(prefix="fd-statement-time-"))
    env_file = out_dir / "seeded.json"
    env_file.write_text(json.dumps({k: v for k, v in seeded.items() if k not in ("workspace", "user")}))
    try:
        subprocess.run([sys.executable, __file__, "--child", str(env_file), "--lifecycles", str(args.lifecycles)],
                       cwd=ROOT, env=child_env(args, out_dir), check=True)
    finally:
        teardown(seeded)


if __name__ == "__main__":
    main()
