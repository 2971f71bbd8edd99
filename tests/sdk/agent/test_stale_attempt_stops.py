"""A stale attempt stops at once (issue 9, point 4; D2): the flow-run process that learns its attempt
is over ends itself and every process of its group, instead of finishing the task it runs; and an
agent kills the process of a run the server says it no longer holds. Against the real server; the
run moves on to another attempt the way the lease reaper moves it (the engine's ReaperPolicy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.tenancy import workspace_scope
from flowdeck.agent.process import ProcessAgent
from flowdeck.engine.state import Running
from flowdeck.reporting import RunReporter
from orchestration.engine import ProposedState, ReaperPolicy, flow_run_set_state
from tests.sdk.agent.live import wait_for
from tests.sdk.agent.test_execute import claim
from tests.sdk.agent.test_process_agent import HELLO

pytestmark = pytest.mark.postgres

ONCE_SLOW = """
from pathlib import Path

MARKER = Path({marker!r})

@task
def slow_once():
    if not MARKER.exists():  # the first attempt runs long; its retry finds the marker and is quick
        MARKER.write_text(str(os.getpid()))
        time.sleep(60)
    return "done"

with Flow("slow-once") as flow:
    slow_once()
"""


def crash(world, run_id: str) -> None:
    """What the lease reaper does to a run whose heartbeats stopped: CRASHED → retried (attempt + 1)."""
    with workspace_scope([world.workspace.pk]):
        result = flow_run_set_state(actor=None, flow_run_id=run_id, workspace_id=world.workspace.pk,
                                    state=ProposedState(type="CRASHED", message="lease expired"),
                                    policy=ReaperPolicy())
    assert result.state_name == "AwaitingRetry", result


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def test_a_reporter_that_learns_its_started_attempt_is_over_stops_the_work(live, live_world, tmp_path):
    run = claim(live, live.register("hello", HELLO))
    stale: list[str] = []
    with live.agent_client() as client:
        reporter = RunReporter(client, run.id, run.attempt, spool_dir=tmp_path, heartbeat_interval=0.2,
                               on_stale=stale.append)
        reporter.flow_state(Running("started"))
        crash(live_world, run.id)

        wait_for(lambda: stale, timeout=10, what="the reporter to learn that its attempt is over")
        reporter.close(timeout=5)
    assert f"the run is on attempt {run.attempt + 1}" in stale[0]
    assert reporter.aborted and reporter.cancel_requested()


def test_an_attempt_over_before_it_started_stops_gracefully(live, live_world, tmp_path):
    run = claim(live, live.register("hello", HELLO))
    crash(live_world, run.id)
    stale: list[str] = []
    with live.agent_client() as client:
        reporter = RunReporter(client, run.id, run.attempt, spool_dir=tmp_path, heartbeat_interval=None,
                               on_stale=stale.append)
        reporter.flow_state(Running("started"))
        reporter.close(timeout=5)
    assert reporter.aborted and stale == []  # nothing ran: no need to kill anything


def test_ending_the_process_group_kills_the_process_and_its_children(tmp_path):
    script = tmp_path / "stale.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys, time
        from flowdeck.reporting.reporter import end_process_group

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        end_process_group("the run is on attempt 2")
        time.sleep(60)
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        child = int(process.stdout.readline())
        assert process.wait(timeout=10) == -signal.SIGKILL
        wait_for(lambda: not alive(child), timeout=5, what="the child process to be killed with its group")
        assert "this run attempt is over (the run is on attempt 2)" in process.stderr.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_an_agent_kills_the_process_of_a_run_it_no_longer_holds(live, live_world, tmp_path):
    marker = tmp_path / "slow-once.started"
    run_id = live.create_run(live.register("slow-once", ONCE_SLOW.format(marker=str(marker))))
    # One run at a time: the retry cannot be claimed (and replace the old process) before the
    # heartbeat's answer has the agent kill the old attempt's process.
    agent = live.start_agent(ProcessAgent, max_concurrent_runs=1).agent
    handle = wait_for(lambda: agent.in_flight.get(run_id), timeout=30, what="the agent to launch the run")
    wait_for(marker.exists, timeout=30, what="the task to start")
    os.killpg(handle.pid, signal.SIGSTOP)  # frozen, it cannot learn anything itself: only the agent can stop it
    try:
        crash(live_world, run_id)

        wait_for(lambda: not alive(handle.pid), timeout=10, what="the agent to kill the stale attempt's process")
        final = live.wait_state(run_id, "COMPLETED", "FAILED", "CRASHED", timeout=60)
    finally:
        if alive(handle.pid):
            os.killpg(handle.pid, signal.SIGKILL)
    assert (final["state_type"], final["attempt"]) == ("COMPLETED", 2)
