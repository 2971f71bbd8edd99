"""``python -m flowdeck.agent.execute``, the flow-run process, run as a container runs it: with
exactly the environment the Docker agent puts in the container (claim record inline), against the
real server. Also: an attempt that is already over stops before loading any code, and a process
started without a claim record explains itself."""

from __future__ import annotations

import os
import subprocess
import sys

from flowdeck import __version__
from flowdeck.agent.base import ClaimedRun
from flowdeck.agent.docker import build_container_spec
from tests.sdk.agent.live import wait_for
from tests.sdk.agent.test_process_agent import HELLO


def claim(live, flow_id):
    """Claim the flow's run as an agent does, returning the claim record."""
    run_id = live.create_run(flow_id, parameters={"name": "container"})
    with live.agent_client() as client:
        agent = client.register_agent("execute-test", "docker", [], __version__, 10)
        (record,) = client.claim(agent["id"], limit=1, lease_seconds=60)
    assert record["id"] == run_id
    return ClaimedRun.from_claim(record)


def container_env(live, run):
    spec = build_container_spec(run, api_url=live.url, api_key=live.agent_key, workspace=live.workspace,
                                agent_name="execute-test", lease_seconds=60, environ={}, default_image="any",
                                network="host")
    return {**spec.environment, "PATH": os.environ["PATH"]}, spec.command


def execute(env, command=("python", "-m", "flowdeck.agent.execute")):
    args = [sys.executable, *command[1:]]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_container_entry_point_runs_the_claimed_flow_run(live, tmp_path):
    run = claim(live, live.register("hello", HELLO))
    env, command = container_env(live, run)
    assert "FLOWDECK_FLOW_RUN_FILE" not in env and "FLOWDECK_FLOW_RUN_JSON" in env

    result = execute({**env, "FLOWDECK_HOME": str(tmp_path)}, command)

    assert result.returncode == 0, result.stderr
    final = live.run(run.id)
    assert (final["state_type"], final["state_name"]) == ("COMPLETED", "Success")
    assert "hello container" in wait_for(lambda: [m for m in live.logs(run.id) if m == "hello container"],
                                         what="the task's log line")
    assert "hello container" in result.stderr  # also on the process's own output, for the agent's log


def test_an_attempt_that_is_over_stops_before_loading_the_flow(live, tmp_path):
    run = claim(live, live.register("hello", HELLO))
    stale = ClaimedRun.from_claim({**run.raw, "attempt": run.attempt + 1})
    env, command = container_env(live, stale)
    marker = tmp_path / "loaded"
    (live.directory / "hello.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + HELLO)

    result = execute({**env, "FLOWDECK_HOME": str(tmp_path)}, command)

    assert result.returncode == 0, result.stderr
    assert not marker.exists()  # the flow's code never ran
    after = live.run(run.id)
    assert (after["state_type"], after["attempt"]) == ("PENDING", run.attempt)
    # The heartbeat and the RUNNING proposal race to be refused first; both refuse in the same words.
    assert "Flowdeck refused to start this attempt:" in result.stderr
    assert "This report is for attempt 2, but the run is on attempt 1; stop this attempt." in result.stderr


def test_without_a_claim_record_it_explains_itself(tmp_path):
    result = subprocess.run([sys.executable, "-m", "flowdeck.agent.execute"], capture_output=True, text=True,
                            timeout=60, check=False, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "Neither FLOWDECK_FLOW_RUN_FILE nor FLOWDECK_FLOW_RUN_JSON is set" in result.stderr
    assert "started by a Flowdeck agent" in result.stderr


WHEN = """
import flowdeck

@task
def when(name):
    started = flowdeck.context.scheduled_start_time
    logging.getLogger("when").info("scheduled %s %s", type(started).__module__, started.isoformat())
    logging.getLogger("when").info("task run %s", flowdeck.context.task_run_id)

with Flow("when") as flow:
    when(Parameter("name", default="world"))
"""


def test_the_context_has_the_runs_scheduled_start_and_task_run_ids_as_prefect_1_gives_them(live, tmp_path):
    run = claim(live, live.register("when", WHEN))
    env, command = container_env(live, run)

    result = execute({**env, "FLOWDECK_HOME": str(tmp_path)}, command)

    assert result.returncode == 0, result.stderr
    scheduled = live.run(run.id)["scheduled_start"]
    import pendulum

    expected = pendulum.parse(scheduled).in_timezone("UTC").isoformat()
    assert f"scheduled pendulum.datetime {expected}" in wait_for(
        lambda: [m for m in live.logs(run.id) if m.startswith("scheduled ")], what="the scheduled time")
    assert f"task run {run.id}/when[-1]" in wait_for(
        lambda: [m for m in live.logs(run.id) if m.startswith("task run ")], what="the task run id")
