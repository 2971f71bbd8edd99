"""Crash retries that restore upstream results, against the real server with real flow-run processes.

A flow ``make_items → work_item.map → finish_item.map → total`` runs under a process agent; its
flow-run process is killed (SIGKILL) while one mapped child is still running. The agent reports the
crash, the server retries the run, and attempt 2 restores every task attempt 1 completed whose
checkpointed result loads on the machine running it (the agent's ``FLOWDECK_RESULTS_DIR``), runs the
others again, and completes. The tasks append to a ledger file, which counts their executions."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowdeck.agent.process import ProcessAgent
from tests.sdk.agent.live import wait_for

pytestmark = pytest.mark.postgres

FLOW = """
LEDGER = {ledger!r}
GO = {go!r}
HOLD = {hold!r}


def record(name):
    fd = os.open(LEDGER, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, (name + "\\n").encode())
    finally:
        os.close(fd)


def hold_here(name):
    # Attempt 1 stops here (the test kills its process); attempt 2 finds GO and goes on.
    deadline = time.monotonic() + 60
    while name == HOLD and not os.path.exists(GO) and time.monotonic() < deadline:
        time.sleep(0.05)


@task
def make_items():
    record("make_items")
    return [1, 2, 3]


@task
def work_item(x):
    record(f"work_item[{{x}}]")
    hold_here(f"work_item[{{x}}]")
    return x * 10


@task
def finish_item(x):
    record(f"finish_item[{{x}}]")
    hold_here(f"finish_item[{{x}}]")
    return x + 1


@task
def total(values):
    record("total")
    logging.getLogger("restore").info("total is %s", sum(values))
    return sum(values)


with Flow("restore-results") as flow:
    total(finish_item.map(work_item.map(make_items())))
"""

ALL_TASKS = ["make_items", "work_item[1]", "work_item[2]", "work_item[3]", "finish_item[10]", "finish_item[20]",
             "finish_item[30]", "total"]


class Scenario:
    """One run of the flow, held at ``hold`` in attempt 1."""

    def __init__(self, live: Any, tmp_path: Path, hold: str) -> None:
        self.live = live
        self.ledger = tmp_path / "ledger.txt"
        self.go = tmp_path / "go"
        source = FLOW.format(ledger=str(self.ledger), go=str(self.go), hold=hold)
        self.run_id = live.create_run(live.register("restore-results", source))
        self.hold = hold

    def executions(self) -> Counter[str]:
        text = self.ledger.read_text() if self.ledger.exists() else ""
        return Counter(line for line in text.splitlines() if line)

    def task_runs(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {(t["task_key"], t["map_index"]): t for t in self.live.run(self.run_id)["task_runs"]}

    def wait_until_held(self, completed: list[tuple[str, int]]) -> None:
        """Attempt 1 is at ``hold`` and the server has every state of ``completed``."""
        def ready() -> bool:
            runs = self.task_runs()
            return self.executions()[self.hold] == 1 and all(
                runs.get(k, {}).get("state_type") == "COMPLETED" for k in completed)

        wait_for(ready, timeout=30, what=f"attempt 1 to reach {self.hold}")

    def crash(self, agent: Any) -> None:
        os.kill(agent.in_flight[self.run_id].pid, signal.SIGKILL)
        self.go.touch()

    def completed_run(self) -> dict[str, Any]:
        run = self.live.wait_state(self.run_id, timeout=60)
        assert (run["state_type"], run["attempt"]) == ("COMPLETED", 2), run["state_message"]
        return run


def run_ref(run: dict[str, Any], key: str) -> str:
    return str(next(t["result_ref"] for t in run["task_runs"] if (t["task_key"], t["map_index"]) == (key, -1)))


def assert_every_task_run_closed(run: dict[str, Any]) -> None:
    open_runs = [(t["task_key"], t["map_index"], t["state_type"]) for t in run["task_runs"]
                 if t["state_type"] in ("PENDING", "RUNNING")]
    assert open_runs == []


@pytest.mark.parametrize(("hold", "completed", "ran_again"), [
    # Killed while mapping work_item: its first two children are restored, the third runs again.
    ("work_item[3]", [("make_items", -1), ("work_item", 0), ("work_item", 1)], {"work_item[3]"}),
    # Killed while mapping finish_item: work_item (a finished mapped parent) is restored with its
    # children, finish_item maps over it again and runs only its unfinished child.
    ("finish_item[30]", [("work_item", -1), ("finish_item", 0), ("finish_item", 1)], {"finish_item[30]"}),
])
def test_a_crash_retry_restores_the_results_that_load_and_runs_only_the_rest(
    live: Any, tmp_path: Path, hold: str, completed: list[tuple[str, int]], ran_again: set[str]
) -> None:
    results = tmp_path / "results"
    scenario = Scenario(live, tmp_path, hold)
    handle = live.start_agent(ProcessAgent, env_vars={"FLOWDECK_RESULTS_DIR": str(results)})
    scenario.wait_until_held(completed)

    scenario.crash(handle.agent)

    run = scenario.completed_run()
    assert scenario.executions() == {name: 2 if name in ran_again else 1 for name in ALL_TASKS}
    assert "total is 63" in wait_for(lambda: [m for m in live.logs(scenario.run_id) if m == "total is 63"],
                                     what="total's log line")
    assert_every_task_run_closed(run)
    assert all(t["state_type"] == "COMPLETED" for t in run["task_runs"])
    # The run completed: its checkpoints are removed (a failed one keeps them for a restart).
    assert wait_for(lambda: not (results / scenario.run_id).exists(), what="the run's checkpoints to go")


@pytest.mark.parametrize("shared", [False, True], ids=["own-results-dir", "shared-results-dir"])
def test_a_retry_on_another_agent_restores_only_from_a_shared_results_dir(
    live: Any, tmp_path: Path, shared: bool
) -> None:
    scenario = Scenario(live, tmp_path, "work_item[3]")
    first = live.start_agent(ProcessAgent, name="machine-a", env_vars={"FLOWDECK_RESULTS_DIR": str(tmp_path / "a")})
    scenario.wait_until_held([("make_items", -1), ("work_item", 0), ("work_item", 1)])
    first_ref = scenario.task_runs()[("make_items", -1)]["result_ref"]
    first.agent.request_stop()  # claims nothing more; waits for its run, which dies now
    scenario.crash(first.agent)
    first.stop()

    other_dir = tmp_path / ("a" if shared else "b")
    live.start_agent(ProcessAgent, name="machine-b", env_vars={"FLOWDECK_RESULTS_DIR": str(other_dir)})

    run = scenario.completed_run()
    assert set(scenario.executions()) == set(ALL_TASKS)  # every task ran at least once
    if shared:
        assert scenario.executions() == {name: 2 if name == "work_item[3]" else 1 for name in ALL_TASKS}
    else:
        # Nothing of machine A's results loads on machine B: what attempt 1 finished runs again.
        again = {"make_items", "work_item[1]", "work_item[2]", "work_item[3]"}
        assert scenario.executions() == {name: 2 if name in again else 1 for name in ALL_TASKS}
        # The run page shows attempt 2's execution of make_items, with its own result reference.
        assert run_ref(run, "make_items") not in ("", first_ref)
        logs = live.logs(scenario.run_id)
        assert any(m.startswith("Running task make_items again: the earlier attempt's result cannot be loaded on "
                                "this machine") for m in logs), logs
    assert_every_task_run_closed(run)
    if shared:
        assert run_ref(run, "make_items") == first_ref
