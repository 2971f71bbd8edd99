"""Crash retries of a flow whose mapped tasks use upstream results (issue 9, point 1).

A flow ``make_items → work_item.map → finish_item.map → total`` runs under a real ``flowdeck agent
start`` on the fault stack. While attempt 1 executes the last ``finish_item`` child, either its
flow-run process or its agent is killed with SIGKILL. The run is retried — by the same agent (the
agent reports the crash) or by the reaper once the lease expires — on the same agent or on another
one, whose results directory is the first one's (shared storage) or its own (another machine).

Every time: the retry COMPLETES, every task ran at least once (the ledger the tasks write), no task
attempt 1 finished ran again when its checkpoint is reachable (and each ran again when it is not),
and no task run of the run is left open (PENDING/RUNNING) on the server.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.faults.ledger import Ledger
from tests.faults.stack import World
from tests.sdk.e2e.harness import TERMINAL, AgentProcess, wait_for, wait_for_state, write_flow

pytestmark = pytest.mark.postgres

LEASE = 10

FLOW = '''
import os
import time

from flowdeck import Flow, task

GO = {go!r}
HOLD = "finish_item[30]"


def hold_here(name):
    # Attempt 1 waits here until the test kills it; attempt 2 finds GO and goes on.
    deadline = time.monotonic() + 90
    while name == HOLD and not os.path.exists(GO) and time.monotonic() < deadline:
        time.sleep(0.05)


@task
def make_items():
    with record("make_items", "all"):
        return [1, 2, 3]


@task
def work_item(x):
    with record("work_item", x):
        return x * 10


@task
def finish_item(y):
    with record("finish_item", y):
        hold_here(f"finish_item[{{y}}]")
        return y + 1


@task
def total(values):
    with record("total", "all"):
        return sum(values)


with Flow("crash-retry") as crash_retry:
    total(finish_item.map(work_item.map(make_items())))
'''

# (task, ledger key) of every execution the flow has, and those attempt 1 finishes before it is killed.
EVERY = {("make_items", "all"), ("work_item", "1"), ("work_item", "2"), ("work_item", "3"), ("finish_item", "10"),
         ("finish_item", "20"), ("finish_item", "30"), ("total", "all")}
FINISHED_IN_ATTEMPT_1 = EVERY - {("finish_item", "30"), ("total", "all")}
# Server task runs attempt 1 has COMPLETED when the test kills it.
COMPLETED_IN_ATTEMPT_1 = [("make_items", -1), ("work_item", -1), ("work_item", 0), ("work_item", 1),
                          ("work_item", 2), ("finish_item", 0), ("finish_item", 1)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has stopped executing


def _agent(world: World, tmp_path: Path, name: str, results: Path) -> AgentProcess:
    return world.start_agent(tmp_path, name=name, lease=LEASE, extra=("--results-dir", str(results)))


def _task_runs(client: Any, run_id: str) -> dict[tuple[str, int], str]:
    return {(t["task_key"], t["map_index"]): t["state_type"] for t in client.get_flow_run(run_id)["task_runs"]}


@pytest.mark.parametrize("kill", ["flow-run-process", "agent"])
@pytest.mark.parametrize("retry_on", ["same-agent", "other-agent-shared-results", "other-agent-own-results"])
def test_a_crash_retry_completes_and_reruns_only_what_it_cannot_restore(
    fault_world: World, tmp_path: Path, kill: str, retry_on: str
) -> None:
    # given: a run of the flow under agent A, held in its last finish_item child
    ledger = Ledger(tmp_path / "ledger.jsonl")
    go = tmp_path / "go"
    flows = fault_world.register(write_flow(tmp_path, "crash_retry", ledger.flow_preamble() + FLOW.format(go=str(go))))
    client = fault_world.client("developer")
    results_a = tmp_path / "results-a"
    agent_a = _agent(fault_world, tmp_path, "machine-a", results_a)
    run_id = client.create_flow_run(flows["crash-retry"])["id"]

    def held() -> Any:
        executing = [ex for ex in ledger.all_executions("finish_item") if ex.key == "30"]
        runs = _task_runs(client, run_id)
        return executing and all(runs.get(k) == "COMPLETED" for k in COMPLETED_IN_ATTEMPT_1) and executing[0].pid

    flow_run_pid = wait_for(held, 45, "attempt 1 to hold in finish_item[30] with its upstream tasks reported")

    # when: kill -9 of the flow-run process or of the agent (its flow-run process follows it)
    if retry_on != "same-agent":
        # Agent A must not take the retry: it stops (SIGSTOP) before the crash, and B takes over.
        os.kill(agent_a.proc.pid, signal.SIGSTOP if kill == "flow-run-process" else signal.SIGKILL)
    elif kill == "agent":
        os.kill(agent_a.proc.pid, signal.SIGKILL)
    if kill == "flow-run-process":
        os.kill(flow_run_pid, signal.SIGKILL)
    wait_for(lambda: not _alive(flow_run_pid), 10, "attempt 1's flow-run process to be gone")
    go.touch()
    shared = retry_on != "other-agent-own-results"
    if retry_on == "same-agent" and kill == "agent":
        _agent(fault_world, tmp_path, "machine-a", results_a)  # the agent comes back on its machine
    elif retry_on != "same-agent":
        _agent(fault_world, tmp_path, "machine-b", results_a if shared else tmp_path / "results-b")

    # then: the retry completes
    run = wait_for_state(client, run_id, TERMINAL, timeout=60)
    assert (run["state_type"], run["attempt"]) == ("COMPLETED", 2), run["state_message"]
    executions = ledger.all_executions()
    ran = {(ex.task, ex.key) for ex in executions}
    ok = {(ex.task, ex.key) for ex in executions if ex.outcome == "ok"}
    assert ran == EVERY and ok == EVERY  # every task ran, and ran to its end at least once
    counts = {(ex.task, ex.key): 0 for ex in executions}
    for ex in executions:
        counts[(ex.task, ex.key)] += 1
    # A finished task whose checkpoint the retry can read never runs twice; the others run again.
    ran_again = {"finish_item[30]"} | (set() if shared else {f"{t}[{k}]" for t, k in FINISHED_IN_ATTEMPT_1})
    assert {f"{t}[{k}]" for (t, k), n in counts.items() if n > 1} == ran_again
    assert max(counts.values()) == 2
    # Only the killed execution is open in the ledger; no task run is open on the server.
    assert [(ex.task, ex.key) for ex in ledger.open_executions()] == [("finish_item", "30")]
    task_runs = client.get_flow_run(run_id)["task_runs"]
    assert len(task_runs) == 1 + 1 + 3 + 1 + 3 + 1
    assert [(t["task_key"], t["map_index"], t["state_type"]) for t in task_runs
            if t["state_type"] != "COMPLETED"] == []
    if not shared:
        logs = [line["message"] for line in client.list_logs(run_id, limit=500)["results"]]
        assert any(m.startswith("Running task make_items again: the earlier attempt's result cannot be loaded on "
                                "this machine") for m in logs)

