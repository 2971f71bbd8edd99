"""Benchmark: cost of an API-key-authenticated REST call (the agents' hot path).

Prints requests per second and database queries per request for listing members with a key, in
process (Django test client, no network), against whatever DATABASE_URL points at. It creates a
throw-away workspace and removes it afterwards.

    DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck python bench/api_key_requests.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("FLOWDECK_FAST_PASSWORD_HASHER", "1")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from accounts import keys  # noqa: E402
from accounts.models import ApiKey, Membership, User, Workspace  # noqa: E402
from core.tenancy import rls_bypass  # noqa: E402

N = int(os.environ.get("BENCH_REQUESTS", "500"))


def main() -> None:
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    workspace = Workspace.objects.create(name="Bench", slug=slug)
    user = User.objects.create_user(f"{slug}@example.com", "x" * 20)
    Membership.objects.create(workspace=workspace, user=user, role="developer")
    generated = keys.generate("user")
    with rls_bypass():
        ApiKey.all_objects.create(
            workspace=workspace, kind="user", user=user, name="bench", lookup_prefix=generated.lookup_prefix,
            secret_hash=generated.secret_hash,
        )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {generated.secret}")
    url = f"/api/v1/workspaces/{slug}/members/"
    try:
        client.get(url)  # warm up
        queries: list[str] = []

        def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            assert client.get(url).status_code == 200
        timings = []
        for _ in range(N):
            start = time.perf_counter()
            client.get(url)
            timings.append(time.perf_counter() - start)
        timings.sort()
        print(f"requests: {N}")
        print(f"queries per request: {len(queries)}")
        if os.environ.get("BENCH_SHOW_QUERIES"):
            print("\n".join(q[:140] for q in queries))
        print(f"throughput: {N / sum(timings):.0f} req/s (one process, in-process client)")
        p99 = timings[int(N * 0.99) - 1]
        print(f"latency p50: {statistics.median(timings) * 1000:.2f} ms, p99: {p99 * 1000:.2f} ms")
    finally:
        with rls_bypass():
            workspace.delete()
            user.delete()


if __name__ == "__main__":
    main()
