"""The run-filter tests on the embedded default's database: ``test_run_filters.py`` (the REST run
list and the GraphQL ``flowRuns`` query with every filter) run by pytest in a subprocess against a
fresh SQLite database. SQLite has no JSON containment, so this is where a labels filter written for
PostgreSQL only would break.

The tables are built from the models (``--no-migrations``) to keep this quick: that the migrations
run on SQLite is what ``tests/embedded`` checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["tests/orchestration/test_run_filters.py"]


def test_run_filters_pass_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'filters.sqlite3'}",
        FLOWDECK_VAR_DIR=str(tmp_path),
        FLOWDECK_FAST_PASSWORD_HASHER="1",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-migrations", *MODULES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and "skipped" not in result.stdout, tail
