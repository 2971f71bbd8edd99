"""FLOWDECK_WEB_ACTIVE, how many of a server process's request threads run a request at once
(config/settings.py, config/wsgi_bridge.py), read the way a server process reads it: settings
loaded in a process of their own with the operator's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

READ = ("import django; django.setup(); from django.conf import settings; "
        "print(json.dumps([settings.FLOWDECK_WEB_THREADS, settings.FLOWDECK_WEB_ACTIVE]))")


def serving_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWDECK_WEB_")}
    env.update(overrides)
    return subprocess.run([sys.executable, "-c", "import json; " + READ], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, [8, 3]),
    ({"FLOWDECK_WEB_ACTIVE": ""}, [8, 3]),  # compose passes an unset variable through as empty
    ({"FLOWDECK_WEB_ACTIVE": "5"}, [8, 5]),
    ({"FLOWDECK_WEB_ACTIVE": "20"}, [8, 8]),  # never more than the threads
    ({"FLOWDECK_WEB_THREADS": "2"}, [2, 2]),
])
def test_the_gate_defaults_to_three_and_never_exceeds_the_threads(overrides, expected):  # type: ignore[no-untyped-def]
    done = serving_settings(**overrides)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


@pytest.mark.parametrize("value", ["0", "three"])
def test_a_gate_that_is_not_a_whole_number_of_one_or_more_stops_the_process_with_a_message(value):  # type: ignore[no-untyped-def]
    done = serving_settings(FLOWDECK_WEB_ACTIVE=value)
    assert done.returncode != 0
    assert f"FLOWDECK_WEB_ACTIVE must be a whole number of 1 or more, not {value!r}." in done.stderr
