"""The embedded default's SQLite database for the tests that start Flowdeck in embedded mode.

Migrating a SQLite file from nothing costs a Python process and about ten seconds of CPU, and each of
those tests needs a fresh database of its own. So one file is migrated per test run (the
``migrated_sqlite`` fixture in tests/conftest.py, by ``manage.py migrate``, exactly as before) and
each test starts from a copy of it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATABASE_FILE = "flowdeck.sqlite3"  # settings.py's default name inside FLOWDECK_VAR_DIR


def embedded_env(var_dir: Path) -> dict[str, str]:
    """This process's environment in embedded mode: no PostgreSQL or Redis, ``var_dir`` as var/."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        FLOWDECK_VAR_DIR=str(var_dir), FLOWDECK_FAST_PASSWORD_HASHER="1", DJANGO_SETTINGS_MODULE="config.settings"
    )
    return env


def migrate(var_dir: Path) -> Path:
    """``manage.py migrate`` in embedded mode into ``var_dir``; returns the migrated file."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=embedded_env(var_dir),
                   check=True)
    return var_dir / DATABASE_FILE


def copy_database(template: Path, var_dir: Path) -> None:
    """``template`` as ``var_dir``'s database, copied with SQLite's online backup (a consistent
    copy whatever journal files the template has)."""
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(var_dir / DATABASE_FILE)) as target:
        source.backup(target)
