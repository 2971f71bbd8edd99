"""How a replica serves, as config/settings.py works it out from the operator's environment:
FLOWDECK_WEB_WORKERS (server processes, config/serve.py) and FLOWDECK_WEB_ACTIVE (how many of a
process's request threads run a request at once, config/wsgi_bridge.py). Read the way a server
process reads them: settings loaded in a process of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

READ = ("import json, os; from django.conf import settings; print(json.dumps([settings.FLOWDECK_WEB_THREADS, "
        "settings.FLOWDECK_WEB_ACTIVE, settings.FLOWDECK_WEB_WORKERS, len(os.sched_getaffinity(0))]))")


def serving_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWDECK_")}
    env.update(overrides)
    return subprocess.run([sys.executable, "-c", READ], env=env, capture_output=True, text=True, timeout=60)


def read(**overrides: str) -> list[int]:
    done = serving_settings(**overrides)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, [8, 3]),
    ({"FLOWDECK_WEB_ACTIVE": ""}, [8, 3]),  # compose passes an unset variable through as empty
    ({"FLOWDECK_WEB_ACTIVE": "5"}, [8, 5]),
    ({"FLOWDECK_WEB_ACTIVE": "20"}, [8, 8]),  # never more than the threads
    ({"FLOWDECK_WEB_THREADS": "2"}, [2, 2]),
])
def test_the_gate_defaults_to_three_and_never_exceeds_the_threads(overrides, expected):  # type: ignore[no-untyped-def]
    assert read(**overrides)[:2] == expected


@pytest.mark.parametrize("value", ["0", "three"])
def test_a_gate_that_is_not_a_whole_number_of_one_or_more_stops_the_process_with_a_message(value):  # type: ignore[no-untyped-def]
    done = serving_settings(FLOWDECK_WEB_ACTIVE=value)
    assert done.returncode != 0
    assert f"FLOWDECK_WEB_ACTIVE must be a whole number of 1 or more, not {value!r}." in done.stderr


@pytest.mark.parametrize(("database_url", "on_this_host"), [
    ("postgres://flowdeck@127.0.0.1:5432/flowdeck", True),
    ("postgres://flowdeck@localhost/flowdeck", True),
    ("postgres://flowdeck@[::1]:5432/flowdeck", True),
    ("postgres://flowdeck@%2Fvar%2Frun%2Fpostgresql/flowdeck", True),  # a Unix socket
    ("postgres://flowdeck@db.internal:5432/flowdeck", False),
    ("postgres://flowdeck@10.0.0.5/flowdeck", False),
    ("postgres://flowdeck@127.0.0.1.example.com/flowdeck", False),  # a name, not a loopback address
])
def test_processes_default_to_one_per_cpu_less_one_for_a_database_on_this_host(  # type: ignore[no-untyped-def]
        database_url, on_this_host):
    """Settings never connect: a host that does not exist is fine here."""
    _, _, workers, cpus = read(DATABASE_URL=database_url, REDIS_URL="redis://127.0.0.1:6379/0",
                               FLOWDECK_INPROCESS_PERIODIC="false")
    assert workers == (max(1, cpus - 1) if on_this_host else cpus)


def test_processes_set_by_the_operator_win_and_embedded_mode_runs_one():  # type: ignore[no-untyped-def]
    assert read(DATABASE_URL="postgres://flowdeck@127.0.0.1/flowdeck", REDIS_URL="redis://127.0.0.1:6379/0",
                FLOWDECK_INPROCESS_PERIODIC="false", FLOWDECK_WEB_WORKERS="5")[2] == 5
    assert read(DATABASE_URL="sqlite:////tmp/flowdeck-settings-test.sqlite3")[2] == 1
