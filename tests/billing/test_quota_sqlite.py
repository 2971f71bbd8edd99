"""The quotas on the embedded default's database (SQLite): the billing tests run by pytest in a
subprocess against a fresh SQLite file, and 50 parallel creations with 10 runs left through a real
embedded server (billing turned on) create exactly 10 there too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.embedded.database import copy_database
from tests.embedded.database import embedded_env as _embedded_env
from tests.embedded.test_embedded_mode import SEED, _free_port

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["tests/billing/test_run_quota.py", "tests/billing/test_usage.py"]


def test_billing_tests_pass_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'billing.sqlite3'}", FLOWDECK_VAR_DIR=str(tmp_path),
               FLOWDECK_FAST_PASSWORD_HASHER="1", DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-migrations", *MODULES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and "skipped" not in result.stdout, tail


LIMIT = """
from billing.models import Plan
from billing.plans import ensure_default_plans
ensure_default_plans()
Plan.objects.filter(code="free").update(runs_per_period=10)
"""


def test_fifty_parallel_creations_with_ten_left_create_ten_on_the_embedded_server(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    # given: an embedded server with billing on (on a freshly migrated database), Free allowing 10 runs
    env = {**_embedded_env(tmp_path), "FLOWDECK_BILLING": "1"}
    copy_database(migrated_sqlite, tmp_path)
    seeded = subprocess.run([sys.executable, "manage.py", "shell", "-c", SEED + LIMIT], cwd=ROOT, env=env,
                            check=True, capture_output=True, text=True)
    world = json.loads(seeded.stdout.strip().splitlines()[-1])
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(port),
                               "--log-level", "warning", "--no-periodic"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

        def create(_: int) -> int:
            return httpx.post(f"{base}/api/v1/workspaces/load/flow-runs/", json={"flow": world["flow"]},
                              headers={"Authorization": f"Bearer {world['key']}"}, timeout=60).status_code

        # when
        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = sorted(pool.map(create, range(50)))
        usage = httpx.get(f"{base}/api/v1/workspaces/load/usage/", headers={"Authorization": f"Bearer {world['key']}"})
        runs = httpx.get(f"{base}/api/v1/workspaces/load/flow-runs/?limit=100",
                         headers={"Authorization": f"Bearer {world['key']}"})
    finally:
        server.terminate()
        server.wait(timeout=10)
    # then
    assert statuses == [201] * 10 + [402] * 40
    assert (usage.json()["runs_used"], usage.json()["runs_limit"]) == (10, 10)
    assert len(runs.json()["results"]) == 10
