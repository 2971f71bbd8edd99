"""The process agent against the real server, launching real flow-run subprocesses: it registers
and heartbeats every cycle, claims runs its labels cover, runs each in a fresh environment to
completion (task states and logs reach the server), respects its concurrency limit, reports
CRASHED when a run's process dies, FAILED when a run cannot start, and kills a cancelled run."""

from __future__ import annotations

import os
import signal

import httpx

from flowdeck.agent.process import ProcessAgent
from tests.sdk.agent.live import wait_for

HELLO = """
@task
def greet(name):
    logging.getLogger("hello").info("hello %s", name)
    return f"hello {name}"

with Flow("hello") as flow:
    greet(Parameter("name", default="world"))
"""

SLEEPY = """
@task
def nap(seconds):
    logging.getLogger("sleepy").info("napping in %s", os.getpid())
    time.sleep(seconds)

with Flow("sleepy") as flow:
    nap(Parameter("seconds", default=60))
"""

NOOP = """
@task
def noop():
    pass

with Flow("noop-flow") as flow:
    noop()
"""


def test_registers_and_heartbeats_every_cycle(live):
    handle = live.start_agent(ProcessAgent, labels=["prod", "eu"], max_polls=3)
    handle.thread.join(30)
    assert handle.result == [0]
    (agent,) = live.developer.list_agents()
    assert agent["id"] == handle.agent.agent_id
    assert agent["name"] == handle.agent.name
    assert agent["type"] == "process"
    assert agent["labels"] == ["eu", "prod"]
    assert agent["status"] == "stopped"  # max_polls ended it cleanly, and it said so
    assert agent["last_poll_at"] is not None
    assert handle.agent.polls == 3


def test_restarted_agent_registers_as_itself(live):
    first = live.start_agent(ProcessAgent, name="same-agent", max_polls=1)
    first.thread.join(30)
    second = live.start_agent(ProcessAgent, name="same-agent", max_polls=1)
    second.thread.join(30)
    assert first.agent.agent_id == second.agent.agent_id
    assert len(live.developer.list_agents()) == 1


def test_runs_a_claimed_flow_in_a_subprocess_to_completion(live):
    flow_id = live.register("hello", HELLO)
    run_id = live.create_run(flow_id, parameters={"name": "agent"})
    live.start_agent(ProcessAgent)

    run = live.wait_state(run_id)
    assert (run["state_type"], run["state_name"]) == ("COMPLETED", "Success")
    assert run["attempt"] == 1
    assert {(t["task_key"], t["state_type"]) for t in run["task_runs"]} == {("greet", "COMPLETED"),
                                                                            ("name", "COMPLETED")}
    assert [s["type"] for s in run["states"]] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
    assert "hello agent" in wait_for(lambda: live.logs(run_id) if "hello agent" in live.logs(run_id) else None,
                                     what="the task's log line")


def test_flow_run_process_gets_a_fresh_environment(live, monkeypatch):
    monkeypatch.setenv("AGENT_ONLY_SECRET", "must-not-leak")
    body = """
    @task
    def show():
        logging.getLogger("env").info("ENV %s", ",".join(sorted(os.environ)))
        logging.getLogger("env").info("TOKEN=%s", os.environ.get("RUN_TOKEN"))

    with Flow("show-env") as flow:
        show()
    """
    flow_id = live.register("show-env", body, run_config={"env": ["RUN_TOKEN", "NOT_ON_AGENT"]})
    run_id = live.create_run(flow_id)
    live.start_agent(ProcessAgent, environ={"RUN_TOKEN": "t0k3n", "PATH": os.environ["PATH"], "HOME": "/tmp",
                                            "LANG": "C.UTF-8", "AGENT_ONLY_SECRET": "must-not-leak"},
                     env_vars={"EXTRA": "1"})

    assert live.wait_state(run_id)["state_type"] == "COMPLETED"
    logs = wait_for(lambda: [m for m in live.logs(run_id) if m.startswith(("ENV ", "TOKEN="))] or None,
                    what="the environment log lines")
    names = set(next(m for m in logs if m.startswith("ENV "))[4:].split(","))
    assert "TOKEN=t0k3n" in logs
    # PYTHONUNBUFFERED: output reaches the agent's log as it happens; FLOWDECK_LOGGING_STDERR: set by the
    # flow-run process itself (one stderr handler for every logger).
    assert names == {"PATH", "HOME", "LANG", "RUN_TOKEN", "EXTRA", "PYTHONUNBUFFERED", "FLOWDECK_API_URL",
                     "FLOWDECK_API_KEY", "FLOWDECK_WORKSPACE", "FLOWDECK_FLOW_RUN_ID", "FLOWDECK_ATTEMPT",
                     "FLOWDECK_FLOW_RUN_FILE", "FLOWDECK_SPOOL_DIR", "FLOWDECK_AGENT_PID", "FLOWDECK_LOGGING_STDERR"}


def test_claims_only_runs_its_labels_cover(live):
    gpu = live.create_run(live.register("hello", HELLO, labels=["gpu"]))
    unlabelled = live.create_run(live.register("hello", HELLO, labels=[]))
    other = live.create_run(live.register("hello", HELLO, labels=["cpu"]))
    handle = live.start_agent(ProcessAgent, labels=["gpu"])

    assert live.wait_state(gpu)["state_type"] == "COMPLETED"
    assert live.wait_state(unlabelled)["state_type"] == "COMPLETED"
    polls = handle.agent.polls
    wait_for(lambda: handle.agent.polls >= polls + 3, what="three more claim cycles")
    assert live.run(other)["state_type"] == "SCHEDULED"
    assert live.run(other)["agent"] is None


def test_never_runs_more_than_max_runs_at_once(live):
    flow_id = live.register("sleepy", SLEEPY)
    runs = [live.create_run(flow_id, parameters={"seconds": 1}) for _ in range(3)]
    handle = live.start_agent(ProcessAgent, max_concurrent_runs=1)
    seen: list[int] = []
    wait_for(lambda: seen.append(len(handle.agent.in_flight)) or all(
        live.run(r)["state_type"] == "COMPLETED" for r in runs), timeout=60, interval=0.05, what="three runs")
    assert max(seen) == 1
    spans = sorted((live.run(r)["start_time"], live.run(r)["end_time"]) for r in runs)
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))


def test_run_whose_process_is_killed_is_reported_crashed_and_retried(live):
    flow_id = live.register("sleepy", SLEEPY)
    run_id = live.create_run(flow_id)
    handle = live.start_agent(ProcessAgent)
    live.wait_state(run_id, "RUNNING")
    process = handle.agent.in_flight[run_id]
    os.killpg(process.pid, signal.SIGKILL)

    run = wait_for(lambda: (r := live.run(run_id))["attempt"] == 2 and r, what="the crash to be reported")
    crash = next(s for s in run["states"] if s["name"] == "AwaitingRetry")
    assert crash["type"] == "SCHEDULED"
    assert crash["message"].startswith("Crashed on attempt 1: The flow-run process ended without reporting a final "
                                       "state: killed by SIGKILL.")
    assert crash["details"]["crashed"].startswith("The flow-run process ended")
    # The server retries it (a new attempt); this agent claims it again.
    assert live.wait_state(run_id, "RUNNING")["attempt"] == 2


def test_crash_message_carries_the_processes_last_output(live):
    body = """
    print("about to die", flush=True)
    os._exit(3)

    with Flow("dies") as flow:
        noop()
    """
    path = live.flow_file("dies", body)
    flow_id = live.register("dies-metadata", NOOP.replace("noop-flow", "dies"),
                            storage={"type": "file", "path": str(path), "flow_name": "dies"})
    run_id = live.create_run(flow_id)
    live.start_agent(ProcessAgent)

    run = wait_for(lambda: (r := live.run(run_id))["attempt"] >= 2 and r, what="the crash")
    crash = next(s for s in run["states"] if s["name"] == "AwaitingRetry")
    assert "exit code 3" in crash["message"]
    assert "Last output:\nabout to die" in crash["message"]


def test_run_that_cannot_start_is_reported_failed_with_the_reason(live):
    missing = live.create_run(live.register(
        "hello", HELLO, storage={"type": "file", "path": "/nowhere/flow.py", "flow_name": "hello"}))
    wrong_agent = live.create_run(live.register(
        "sleepy", SLEEPY, run_config={"agent_type": "kubernetes", "image": "acme/etl:3"}))
    broken = live.register("broken", NOOP)
    (live.directory / "broken.py").write_text("def broken(:\n")
    broken_run = live.create_run(broken)
    live.start_agent(ProcessAgent)

    run = live.wait_state(missing)
    assert (run["state_type"], run["state_name"]) == ("FAILED", "Failed")
    assert "The flow file /nowhere/flow.py does not exist on the agent's machine" in run["state_message"]
    run = live.wait_state(wrong_agent)
    assert run["state_type"] == "FAILED"
    assert "asks for a kubernetes agent" in run["state_message"]
    run = live.wait_state(broken_run)
    assert run["state_type"] == "FAILED"
    assert "Could not load the flow from its storage" in run["state_message"]
    assert "SyntaxError" in run["state_message"]


def test_cancelled_run_is_killed_and_ends_cancelled(live):
    flow_id = live.register("sleepy", SLEEPY)
    run_id = live.create_run(flow_id)
    handle = live.start_agent(ProcessAgent, kill_grace=1.0)
    live.wait_state(run_id, "RUNNING")
    process = handle.agent.in_flight[run_id].process

    live.developer.cancel_flow_run(run_id)

    run = live.wait_state(run_id, timeout=20)
    assert run["state_type"] == "CANCELLED"
    # The process may report Cancelled itself and exit just before the agent's next look at its
    # runs: the agent lets the run go at that look, not necessarily before the state is visible.
    wait_for(lambda: run_id not in handle.agent.in_flight, what="the agent to let the run go")
    assert process.poll() is not None  # the flow-run process is gone
    assert handle.stop() == 0


CHAIN = """
@task
def step(i):
    time.sleep(0.3)
    return i + 1

with Flow("chain") as flow:
    value = Parameter("start", default=0)
    for _ in range(40):
        value = step(value)
"""


def test_cancelled_run_stops_between_tasks_by_itself(live):
    run_id = live.create_run(live.register("chain", CHAIN))
    handle = live.start_agent(ProcessAgent, kill_grace=30.0)
    wait_for(lambda: any(t["state_type"] == "COMPLETED" and t["task_key"].startswith("step")
                         for t in live.run(run_id)["task_runs"]), what="a first step to complete")
    run_handle = handle.agent.in_flight[run_id]

    live.developer.cancel_flow_run(run_id)

    run = live.wait_state(run_id, timeout=20)
    assert run["state_type"] == "CANCELLED"
    wait_for(lambda: run_id not in handle.agent.in_flight, what="the agent to let the run go")
    assert not run_handle.killed and run_handle.process.returncode == 0  # it ended itself, nothing was killed
    steps = [t for t in run["task_runs"] if t["task_key"].startswith("step")]
    assert 0 < sum(t["state_type"] == "COMPLETED" for t in steps) < 40


def test_sigterm_the_server_did_not_ask_for_ends_the_run_crashed(live):
    """A platform stopping the process (a node drained, a pod evicted) is not a cancellation: the
    run is reported Crashed, so the server retries it."""
    run_id = live.create_run(live.register("chain", CHAIN))
    handle = live.start_agent(ProcessAgent)
    wait_for(lambda: any(t["state_type"] == "COMPLETED" for t in live.run(run_id)["task_runs"]),
             what="a first step to complete")

    os.kill(handle.agent.in_flight[run_id].pid, signal.SIGTERM)

    run = wait_for(lambda: (r := live.run(run_id))["attempt"] == 2 and r, timeout=20, what="the crash")
    crash = next(s for s in run["states"] if s["name"] == "AwaitingRetry")
    assert "The flow-run process was stopped (SIGTERM) before the flow finished." in crash["message"]


RESTART = """
from flowdeck.engine.results import LocalResult

MARK = {mark!r}

@task(result=LocalResult(dir={results!r}))
def first():
    with open(MARK + ".count", "a") as f:
        f.write("x")
    return 41

@task
def second(x):
    if os.path.exists(MARK + ".fail"):
        raise RuntimeError("told to fail")
    logging.getLogger("restart").info("second got %s", x)
    return x + 1

with Flow("restart") as flow:
    second(first())
"""


def test_restarted_run_skips_completed_tasks_and_reads_their_checkpointed_results(live, tmp_path):
    mark = str(tmp_path / "mark")
    (tmp_path / "mark.fail").touch()
    run_id = live.create_run(live.register("restart", RESTART.format(mark=mark, results=str(tmp_path / "results"))))
    live.start_agent(ProcessAgent)
    run = live.wait_state(run_id)
    assert run["state_type"] == "FAILED"
    first = next(t for t in run["task_runs"] if t["task_key"] == "first")
    assert first["state_type"] == "COMPLETED" and first["result_ref"]

    (tmp_path / "mark.fail").unlink()
    restarted = httpx.post(f"{live.url}/api/v1/workspaces/{live.workspace}/flow-runs/{run_id}/restart/", json={},
                           headers={"Authorization": f"Bearer {live.developer_key}"})
    assert restarted.status_code == 200, restarted.text

    run = wait_for(lambda: (r := live.run(run_id))["attempt"] == 2 and r["state_type"] == "COMPLETED" and r,
                   what="the restarted run to complete")
    assert (tmp_path / "mark.count").read_text() == "x"  # first ran once, in the first attempt only
    assert "second got 41" in wait_for(lambda: [m for m in live.logs(run_id) if m == "second got 41"],
                                       what="second's log line")
