"""The evaluator on the embedded default's database: the kind, correlation, incident and action
tests run by pytest in a subprocess against a fresh SQLite database (no JSON containment, no row
locks, the process clock), as the embedded loop runs the evaluator there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MODULES = [f"tests/orchestration/alerts/{name}.py" for name in
           ("test_evaluator_kinds", "test_correlation", "test_incidents_people", "test_actions")]


def test_the_evaluator_passes_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'evaluator.sqlite3'}",
        FLOWDECK_VAR_DIR=str(tmp_path),
        FLOWDECK_FAST_PASSWORD_HASHER="1",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-migrations", *MODULES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and "skipped" not in result.stdout and "failed" not in result.stdout, tail
