"""Warm flow-run processes (issue 12): the process agent keeps a flow-run process started, its imports
done, and hands a claimed run to it. Against the real server, with real processes: realistic flows end
in the same states warm as cold; a warm process serves one run and exits; a run a warm process cannot
honour (another interpreter, a variable Python reads at start-up) is launched cold; cancellation and a
stale attempt kill the warm-launched run's whole process group; killing the agent ends its warm
process and its run; a warm process that dies before work is replaced, and the agent's shutdown ends
it. Also the warm process itself: it holds no socket while it waits, and ends at end of input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from flowdeck.agent.base import ClaimedRun
from flowdeck.agent.process import ProcessAgent, warm_process_env
from flowdeck.agent.warm import WarmProcess, cold_reason
from tests.sdk.agent.live import wait_for
from tests.sdk.agent.test_stale_attempt_stops import ONCE_SLOW, alive, crash
from tests.sdk.e2e.harness import AgentProcess, start_agent

pytestmark = pytest.mark.postgres

# Results passed between tasks, a mapped task, a task that fails once and is retried.
REALISTIC = """
@task
def numbers(n):
    return list(range(1, n + 1))

@task
def square(x):
    return x * x

@task(max_retries=1, retry_delay=0)
def flaky_sum(values, mark):
    if not os.path.exists(mark):  # the first try of each run fails, its retry succeeds
        open(mark, "w").close()
        raise RuntimeError("the first try fails")
    return sum(values)

@task
def report(total):
    logging.getLogger("realistic").info("total %s", total)
    return total

with Flow("realistic") as flow:
    report(flaky_sum(square.map(numbers(Parameter("n", default=4))), Parameter("mark")))
"""

FAILING = """
@task
def boom():
    raise ValueError("no good")

@task
def after(x):
    return x

with Flow("failing") as flow:
    after(boom())
"""

# Logs its process id and a module-level counter (state a reused process would carry over), and
# optionally starts a child process and sleeps (so it can be cancelled or killed).
WHO = """
import subprocess
import flowdeck

@task
def who(seconds):
    flowdeck._warm_test_counter = getattr(flowdeck, "_warm_test_counter", 0) + 1
    child = subprocess.Popen(["sleep", "120"]) if seconds else None
    logging.getLogger("who").info("pid %s child %s count %s hash %s", os.getpid(), child.pid if child else 0,
                                  flowdeck._warm_test_counter, hash("flowdeck"))
    time.sleep(seconds)

with Flow("who") as flow:
    who(Parameter("seconds", default=0))
"""


def who_said(live: Any, run_id: str) -> dict[str, int]:
    """The ``who`` task's log line of a run, as numbers."""
    line = wait_for(lambda: next((m for m in live.logs(run_id) if m.startswith("pid ")), None), timeout=30,
                    what="the who task's log line")
    words = line.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}


def waiting_pids(agent: ProcessAgent) -> list[int]:
    return [w.pid for w in list(agent.warm.ready) if w.process.poll() is None]


def wait_warm(agent: ProcessAgent, *, other_than: int | None = None) -> int:
    """The pid of a waiting warm process (other than ``other_than``) once there is one."""
    pids = wait_for(lambda: [p for p in waiting_pids(agent) if p != other_than], timeout=30,
                    what="a warm process to wait for work")
    return int(pids[0])


def final_shape(run: dict[str, Any]) -> tuple[Any, ...]:
    """A finished run's outcome, without ids and times: its state and every task run's."""
    tasks = sorted((t["task_key"], t["map_index"], t["state_type"], t["state_name"]) for t in run["task_runs"])
    return run["state_type"], run["state_name"], tuple(tasks)


def agent_events(agent: AgentProcess) -> list[dict[str, Any]]:
    events = []
    for line in agent.log().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def test_realistic_flows_end_the_same_warm_as_cold(live, sdk_env, tmp_path):
    realistic = live.register("realistic", REALISTIC)
    failing = live.register("failing", FAILING)
    outcomes: dict[int, list[tuple[Any, ...]]] = {}
    for warm in (2, 0):  # two warm processes: the two runs are claimed together
        # Cold through the environment variable, warm through the option.
        env = {**sdk_env, "FLOWDECK_AGENT_WARM_PROCESSES": "0"} if not warm else sdk_env
        option = ["--warm-processes", str(warm)] if warm else []
        agent = start_agent(env, tmp_path, name=f"warm-{warm}", extra=[*option, "--log-format", "json", "--no-panel"])
        try:
            runs = [live.create_run(realistic, parameters={"n": 4, "mark": str(tmp_path / f"mark-{warm}")}),
                    live.create_run(failing)]
            finished = [live.wait_state(run_id, timeout=60) for run_id in runs]
            assert any(m == "total 30" for m in live.logs(runs[0]))
        finally:
            assert agent.stop() == 0
        outcomes[warm] = [final_shape(run) for run in finished]
        started = {e["flow_run_id"]: e.get("warm") for e in agent_events(agent) if e.get("event") == "run_started"}
        assert [started[r] for r in runs] == [bool(warm)] * 2  # the warm agent's runs both went to warm processes

    assert outcomes[2] == outcomes[0]
    (state, name, tasks), (failed_state, _, failed_tasks) = outcomes[2]
    assert (state, name) == ("COMPLETED", "Success")
    assert ("flaky_sum", -1, "COMPLETED", "Success") in tasks
    assert [t for t in tasks if t[0] == "square" and t[1] >= 0] == [
        ("square", i, "COMPLETED", "Success") for i in range(4)]
    assert failed_state == "FAILED"
    assert ("boom", -1, "FAILED", "Failed") in failed_tasks


def test_a_warm_process_serves_one_run_then_exits(live):
    flow_id = live.register("who", WHO)
    agent = live.start_agent(ProcessAgent, warm_processes=1).agent
    first_warm = wait_warm(agent)

    first = live.create_run(flow_id)
    assert live.wait_state(first)["state_type"] == "COMPLETED"
    said = who_said(live, first)
    assert said["pid"] == first_warm
    wait_for(lambda: not alive(first_warm), timeout=10, what="the warm process to exit after its run")

    second_warm = wait_warm(agent, other_than=first_warm)
    second = live.create_run(flow_id)
    assert live.wait_state(second)["state_type"] == "COMPLETED"
    again = who_said(live, second)
    assert again["pid"] == second_warm
    # Nothing of the first run (a module attribute it set) is in the second's process.
    assert said["count"] == again["count"] == 1


def test_a_run_needing_another_interpreter_or_start_up_environment_is_launched_cold(live, tmp_path):
    other_python = next(str(p) for p in (Path(sys.executable).with_name(f"python{sys.version_info[0]}"),
                                         Path(sys.executable).with_name("python{}.{}".format(*sys.version_info)))
                        if p.exists() and str(p) != sys.executable)

    class TwoPythons(ProcessAgent):
        def interpreter(self, run: ClaimedRun) -> str:
            return other_python if "other-python" in run.labels else self.python

    plain = live.register("who", WHO)
    seeded = live.register("who-seeded", WHO.replace('Flow("who")', 'Flow("who-seeded")'),
                           run_config={"env": ["PYTHONHASHSEED"]})
    elsewhere = live.register("who-elsewhere", WHO.replace('Flow("who")', 'Flow("who-elsewhere")'),
                              labels=["other-python"])
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", "PYTHONHASHSEED": "123"}
    agent = live.start_agent(TwoPythons, warm_processes=1, environ=environ, labels=["other-python"],
                             max_concurrent_runs=1).agent
    waiting = wait_warm(agent)
    handles: dict[str, Any] = {}

    def launched(run_id: str) -> Any:
        handle = wait_for(lambda: agent.in_flight.get(run_id), timeout=30, what="the agent to launch the run")
        handles[run_id] = handle
        return handle

    seeded_run = live.create_run(seeded)
    seeded_handle = launched(seeded_run)
    assert live.wait_state(seeded_run)["state_type"] == "COMPLETED"
    elsewhere_run = live.create_run(elsewhere)
    elsewhere_handle = launched(elsewhere_run)
    assert live.wait_state(elsewhere_run)["state_type"] == "COMPLETED"

    # Both cold: new processes, while the warm one went on waiting.
    assert not seeded_handle.warm and not elsewhere_handle.warm
    assert waiting_pids(agent) == [waiting]
    assert elsewhere_handle.process.args[0] == other_python
    # The seed took effect as Python started (a warm process could not have applied it).
    expected = subprocess.run([sys.executable, "-c", "print(hash('flowdeck'))"], capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "PYTHONHASHSEED": "123"}, check=True).stdout
    assert who_said(live, seeded_run)["hash"] == int(expected)

    plain_run = live.create_run(plain)
    assert live.wait_state(plain_run)["state_type"] == "COMPLETED"
    assert who_said(live, plain_run)["pid"] == waiting  # an ordinary run still goes to the warm process


def test_cancellation_kills_the_warm_launched_runs_process_group(live):
    run_id = live.create_run(live.register("who", WHO), parameters={"seconds": 120})
    agent = live.start_agent(ProcessAgent, warm_processes=1, kill_grace=1.0).agent
    live.wait_state(run_id, "RUNNING")
    handle = agent.in_flight[run_id]
    assert handle.warm
    said = who_said(live, run_id)
    assert said["pid"] == handle.pid and alive(said["child"])

    live.developer.cancel_flow_run(run_id)

    assert live.wait_state(run_id, timeout=20)["state_type"] == "CANCELLED"
    wait_for(lambda: not alive(handle.pid) and not alive(said["child"]), timeout=10,
             what="the run's process and its child to be gone")


def test_a_stale_attempt_of_a_warm_launched_run_is_killed(live, live_world, tmp_path):
    marker = tmp_path / "slow-once.started"
    run_id = live.create_run(live.register("slow-once", ONCE_SLOW.format(marker=str(marker))))
    agent = live.start_agent(ProcessAgent, warm_processes=1, max_concurrent_runs=1).agent
    handle = wait_for(lambda: agent.in_flight.get(run_id), timeout=30, what="the agent to launch the run")
    assert handle.warm
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


def test_killing_the_agent_ends_its_warm_process_and_its_run(live, sdk_env, tmp_path):
    run_id = live.create_run(live.register("who", WHO), parameters={"seconds": 120})
    agent = start_agent(sdk_env, tmp_path, name="killed", extra=["--warm-processes", "1"])
    try:
        live.wait_state(run_id, "RUNNING", timeout=60)
        said = who_said(live, run_id)
        spare = wait_for(lambda: [p.pid for p in psutil.Process(agent.proc.pid).children()
                                  if p.pid != said["pid"]], timeout=30, what="the replacement warm process")
        processes = [said["pid"], said["child"], *spare]
        assert all(alive(pid) for pid in processes)
    finally:
        agent.kill()  # SIGKILL: nothing of the agent's own shutdown runs

    wait_for(lambda: not any(alive(pid) for pid in processes), timeout=10,
             what="the run's processes and the warm process to end with the agent")


def test_a_warm_process_that_dies_before_work_is_replaced_and_shutdown_ends_it(live):
    flow_id = live.register("who", WHO)
    thread = live.start_agent(ProcessAgent, warm_processes=1)
    agent = thread.agent
    dead = wait_warm(agent)
    os.killpg(dead, signal.SIGKILL)

    replacement = wait_warm(agent, other_than=dead)
    run_id = live.create_run(flow_id)
    assert live.wait_state(run_id)["state_type"] == "COMPLETED"
    assert who_said(live, run_id)["pid"] == replacement

    last = wait_warm(agent, other_than=replacement)
    assert thread.stop() == 0
    assert not alive(last)
    assert agent.warm.ready == []


# --- the warm process itself, and the agent's choice ------------------------------------------------


def start_warm(tmp_path: Path) -> WarmProcess:
    env = warm_process_env(environ={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, agent_pid=os.getpid())
    process = subprocess.Popen([sys.executable, "-m", "flowdeck.agent.execute", "--warm"], env=env, cwd=tmp_path,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return WarmProcess(process, sys.executable, tmp_path, env)


def idle(ps: psutil.Process, seconds: float = 0.5) -> bool:
    """The process used (almost) no CPU for ``seconds``: its imports are done, it waits on stdin."""
    before = sum(ps.cpu_times()[:2])
    time.sleep(seconds)
    return sum(ps.cpu_times()[:2]) - before < 0.02


def test_a_warm_process_holds_no_socket_and_ends_at_end_of_input(tmp_path):
    warm = start_warm(tmp_path)
    try:
        ps = psutil.Process(warm.pid)
        wait_for(lambda: idle(ps), timeout=60, interval=0, what="the warm process to finish its imports")
        assert ps.net_connections(kind="all") == []
        assert {"FLOWDECK_API_KEY", "FLOWDECK_FLOW_RUN_ID"}.isdisjoint(ps.environ())  # no run, no key yet
        assert os.getpgid(warm.pid) == warm.pid  # its own process group, as a run's process has

        assert warm.process.stdin is not None
        warm.process.stdin.close()
        assert warm.process.wait(timeout=10) == 0
        assert warm.output() == ""
    finally:
        warm.stop()


def test_an_unreadable_hand_over_ends_the_warm_process_with_status_2(tmp_path):
    warm = start_warm(tmp_path)
    try:
        assert warm.process.stdin is not None
        warm.process.stdin.write(b"not json\n")
        warm.process.stdin.close()
        assert warm.process.wait(timeout=60) == 2
        assert "hand-over to this warm flow-run process is unreadable" in warm.output()
    finally:
        warm.stop()


def test_which_runs_a_warm_process_can_take(tmp_path):
    env = {"PATH": "/bin", "HOME": "/home/a", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    warm = WarmProcess(subprocess.Popen(["true"]), "/usr/bin/python3", tmp_path, dict(env))
    warm.process.wait()

    def reason(**changes: Any) -> str | None:
        run_env = {**env, **changes.pop("env", {})}
        return cold_reason(python=changes.get("python", "/usr/bin/python3"), cwd=changes.get("cwd", tmp_path),
                           env=run_env, warm=warm)

    # What a run's config or identity adds is applied at hand-over.
    assert reason(env={"RUN_TOKEN": "x", "FLOWDECK_FLOW_RUN_ID": "r", "PATH": "/usr/bin"}) is None
    # What Python reads as it starts cannot be.
    assert "PYTHONPATH" in (reason(env={"PYTHONPATH": "/srv/flows"}) or "")
    assert "PYTHONHASHSEED" in (reason(env={"PYTHONHASHSEED": "1"}) or "")
    assert "LC_ALL" in (reason(env={"LC_ALL": "C"}) or "")
    assert "HOME" in (reason(env={"HOME": "/home/b"}) or "")
    assert "runs under /opt/python" in (reason(python="/opt/python") or "")
    assert "working directory" in (reason(cwd=tmp_path / "elsewhere") or "")
