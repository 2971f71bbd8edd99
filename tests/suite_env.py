"""Loaded by every pytest run (``-p tests.suite_env`` in pyproject.toml's addopts), before
pytest-django reads the settings: the suite runs on PostgreSQL, outside embedded mode, where the
server processes, Celery workers and beats the tests start refuse a missing, default or short
``SECRET_KEY`` (core/checks.py). So the run gets a random key of its own, unless one is set; the
test process and every subprocess it starts (they inherit the environment) share it, as a
deployment's processes do. Nothing in the settings knows about tests: production is not weakened."""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("SECRET_KEY", "flowdeck-test-suite-" + secrets.token_urlsafe(48))
