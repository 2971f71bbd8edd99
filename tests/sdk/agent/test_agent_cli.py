"""``flowdeck agent start`` as a real process: it shuts down gracefully on SIGTERM (no more claims,
in-flight runs finish within the grace period, or are killed and handed back when it runs out; a
second signal stops it at once), writes structured log lines when not on a terminal, and explains
what is missing when it cannot start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sdk.agent.live import wait_for
from tests.sdk.agent.test_process_agent import HELLO, SLEEPY

FLOWDECK = str(Path(sys.executable).parent / "flowdeck")


def start_cli(env, tmp_path, *args):
    err = (tmp_path / "agent.err").open("wb")
    out = (tmp_path / "agent.out").open("wb")
    return subprocess.Popen([FLOWDECK, "agent", "start", "--poll-interval", "0.2", *args], env=env, cwd=tmp_path,
                            stdout=out, stderr=err)


def log_lines(tmp_path):
    return (tmp_path / "agent.err").read_text().splitlines()


def logfmt(line):
    """``key=value`` pairs of a logfmt line (values may be JSON strings)."""
    fields, rest = {}, line
    while rest:
        key, _, rest = rest.partition("=")
        if rest.startswith('"'):
            value, end = json.JSONDecoder().raw_decode(rest)
            rest = rest[end:].lstrip()
        else:
            value, _, rest = rest.partition(" ")
        fields[key.strip()] = value
    return fields


def test_sigterm_stops_claiming_and_lets_the_run_in_flight_finish(live, sdk_env, tmp_path):
    flow_id = live.register("sleepy", SLEEPY)
    first = live.create_run(flow_id, parameters={"seconds": 3})
    agent = start_cli(sdk_env, tmp_path, "--name", "cli-agent", "--grace-period", "30")
    live.wait_state(first, "RUNNING")

    agent.send_signal(signal.SIGTERM)
    # A claim already on its way when the signal lands may still bring back a run created meanwhile,
    # and the agent runs it within the grace period: the run is created once the agent says it drains.
    wait_for(lambda: "draining" in [logfmt(line).get("event") for line in log_lines(tmp_path)],
             what="the agent to say it is draining")
    second = live.create_run(flow_id, parameters={"seconds": 0})

    assert agent.wait(30) == 0
    assert live.run(first)["state_type"] == "COMPLETED"
    assert live.run(second)["state_type"] == "SCHEDULED"  # never claimed after the signal
    events = [logfmt(line).get("event") for line in log_lines(tmp_path)]
    assert "run_finished" in events


def test_runs_still_going_when_the_grace_period_ends_are_killed_and_handed_back(live, sdk_env, tmp_path):
    run_id = live.create_run(live.register("sleepy", SLEEPY))
    agent = start_cli(sdk_env, tmp_path, "--grace-period", "1")
    live.wait_state(run_id, "RUNNING")
    pid = int(wait_for(lambda: next((f["pid"] for f in map(logfmt, log_lines(tmp_path)) if "pid" in f), None),
                       what="the run's pid in the agent's log"))

    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0
    assert time.monotonic() - started < 15
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    run = live.run(run_id)
    assert (run["state_type"], run["state_name"], run["attempt"]) == ("SCHEDULED", "AwaitingRetry", 2)
    assert "the agent shut down before it finished" in run["state_message"]


def test_a_second_signal_stops_at_once(live, sdk_env, tmp_path):
    run_id = live.create_run(live.register("sleepy", SLEEPY))
    agent = start_cli(sdk_env, tmp_path, "--grace-period", "600")
    live.wait_state(run_id, "RUNNING")

    agent.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert agent.poll() is None  # still waiting for the run
    agent.send_signal(signal.SIGINT)
    assert agent.wait(15) == 0
    assert live.run(run_id)["state_name"] == "AwaitingRetry"


def test_json_log_lines_when_not_on_a_terminal(live, sdk_env, tmp_path):
    run_id = live.create_run(live.register("hello", HELLO))
    agent = start_cli(sdk_env, tmp_path, "--name", "json-agent", "--log-format", "json", "--max-polls", "15")
    assert agent.wait(30) == 0
    assert live.run(run_id)["state_type"] == "COMPLETED"
    records = [json.loads(line) for line in log_lines(tmp_path)]  # every line is one JSON object
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    registered = next(r for r in records if r.get("event") == "registered")
    assert registered["agent_name"] == "json-agent" and registered["agent_type"] == "process"
    started = next(r for r in records if r.get("event") == "run_started")
    assert started["flow_run_id"] == run_id
    assert (tmp_path / "agent.out").read_text() == ""  # no live panel when stdout is not a terminal


def test_missing_api_key_is_a_clear_error(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "FLOWDECK_HOME": str(tmp_path / "home"),
           "FLOWDECK_API_URL": "http://127.0.0.1:9"}
    result = subprocess.run([FLOWDECK, "agent", "start"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert "FLOWDECK_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_refused_key_stops_the_agent_with_status_1(live_server_url, live_world, tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "FLOWDECK_HOME": str(tmp_path / "home"),
           "FLOWDECK_API_URL": live_server_url, "FLOWDECK_API_KEY": "fd_sa_not-a-real-key",
           "FLOWDECK_WORKSPACE": live_world.workspace.slug}
    result = subprocess.run([FLOWDECK, "agent", "start"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert "Registration was refused" in result.stderr


def test_help_lists_every_option(tmp_path):
    result = subprocess.run([FLOWDECK, "agent", "start", "--help"], capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.returncode == 0
    for option in ("--type", "--label", "--name", "--max-runs", "--poll-interval", "--lease", "--grace-period",
                   "--docker-url", "--image-pull-policy", "--namespace", "--service-account"):
        assert option in result.stdout


def test_flow_run_processes_die_with_a_killed_agent(live, sdk_env, tmp_path):
    """``kill -9`` of the agent leaves no flow run running unseen: its processes stop, their
    heartbeats stop, and the server's reaper crashes and retries the runs (G1)."""
    run_id = live.create_run(live.register("sleepy", SLEEPY))
    agent = start_cli(sdk_env, tmp_path)
    live.wait_state(run_id, "RUNNING")
    pid = int(wait_for(lambda: next((f["pid"] for f in map(logfmt, log_lines(tmp_path)) if "pid" in f), None),
                       what="the run's pid in the agent's log"))

    agent.kill()
    agent.wait(10)

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=5, what="the flow-run process to stop")
    assert live.run(run_id)["state_type"] == "RUNNING"  # the agent said nothing: the lease will run out


def test_live_status_panel_on_a_terminal(live, sdk_env, tmp_path):
    import pty

    run_id = live.create_run(live.register("sleepy", SLEEPY), parameters={"seconds": 2})
    controller, terminal = pty.openpty()
    env = {**sdk_env, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    agent = subprocess.Popen([FLOWDECK, "agent", "start", "--poll-interval", "0.2", "--name", "tty-agent",
                              "--label", "tty", "--max-polls", "20"], env=env, cwd=tmp_path, stdout=terminal,
                             stderr=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the agent closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert agent.wait(30) == 0
    os.close(controller)
    text = output.decode("utf-8", "replace")
    assert "flowdeck agent" in text  # the panel's title
    assert "tty-agent" in text and "labels: tty" in text
    assert "health:" in text and "last heartbeat:" in text
    assert "sleepy" in text and "running" in text  # the run in flight, with its state
    assert "ts=" not in text  # log lines are rendered by rich, not as logfmt
    assert live.run(run_id)["state_type"] == "COMPLETED"
