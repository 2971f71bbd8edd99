"""A web outage longer than the lease re-executes nothing (issue 9, point 5).

Runs execute under two real agents with a 10 s lease. The web tier (the uvicorn server) is taken
away for more than twice the lease while the Celery worker and beat keep running the reaper every
second, then brought back. The agents' heartbeats could not land, and every lease ran out on the
database clock meanwhile — but an outage of the web tier is not the agents' death: no run is
reaped (no CRASHED anywhere in any run's history, every run still on attempt 1), nothing executes
twice (the ledger the tasks write), and every run COMPLETES with no task run left open.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.ledger import Ledger
from tests.faults.stack import Stack, World
from tests.sdk.e2e.harness import TERMINAL, wait_for, wait_for_state, write_flow

pytestmark = pytest.mark.postgres

LEASE = 10
OUTAGE = 2 * LEASE + 3
RUNS = 4

FLOW = '''
import os
import time

from flowdeck import Flow, Parameter, task

GO = {go!r}


@task
def hold(key):
    # Executes through the outage: it ends once the test says the web tier is back.
    with record("hold", key):
        deadline = time.monotonic() + 120
        while not os.path.exists(GO) and time.monotonic() < deadline:
            time.sleep(0.05)
        return key


@task
def after(key):
    with record("after", key):
        return key


with Flow("web-outage") as web_outage:
    after(hold(Parameter("key")))
'''


def _reaper_ticks(stack: Stack, since: int) -> int:
    """Reaper runs the Celery worker logged after byte ``since`` of its log."""
    with stack.worker.log_path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return sum(1 for line in text.splitlines() if "reap_lost_runs_task" in line and "succeeded" in line)


def _expired_leases(stack: Stack, run_ids: list[str]) -> int:
    rows = stack.sql("SELECT count(*) FROM orchestration_flowrun WHERE id = ANY(%s::uuid[]) "
                     "AND state_type = 'RUNNING' AND lease_expires_at < now()", run_ids)
    return int(rows[0][0])


def test_a_web_outage_of_twice_the_lease_reaps_no_run_and_runs_nothing_twice(
    stack: Stack, fault_world: World, tmp_path: Path
) -> None:
    # given: runs executing their first task under two agents with a 10 s lease
    ledger = Ledger(tmp_path / "ledger.jsonl")
    go = tmp_path / "go"
    flows = fault_world.register(write_flow(tmp_path, "web_outage", ledger.flow_preamble() + FLOW.format(go=str(go))))
    client = fault_world.client("developer")
    fault_world.start_agent(tmp_path, name="agent-1", lease=LEASE)
    fault_world.start_agent(tmp_path, name="agent-2", lease=LEASE)
    run_ids = [client.create_flow_run(flows["web-outage"], parameters={"key": f"run-{i}"})["id"] for i in range(RUNS)]
    wait_for(lambda: len(ledger.executions("hold")) == RUNS, 60, "every run to be executing its first task")
    worker_log_at = stack.worker.log_path.stat().st_size

    # when: the web tier is down for more than twice the lease, the reaper ticking all along
    stack.server.stop()
    down_at = time.monotonic()
    # The fault is real: every run's lease ran out on the database clock while the server was away.
    wait_for(lambda: _expired_leases(stack, run_ids) == RUNS, OUTAGE, "every run's lease to run out")
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))  # the outage's length is the fault itself
    ticks = _reaper_ticks(stack, worker_log_at)
    back_log_at = stack.worker.log_path.stat().st_size
    stack.server.start()
    outage = time.monotonic() - down_at
    # The tasks go on executing while the reaper sweeps for more than a lease after the return.
    wait_for(lambda: _reaper_ticks(stack, back_log_at) > LEASE + 2, 6 * LEASE, "a lease's worth of reaper ticks")
    go.touch()

    # then: every run completes on its first attempt, none was ever crashed
    runs: dict[str, dict[str, Any]] = {
        run_id: wait_for_state(client, run_id, TERMINAL, timeout=90) for run_id in run_ids
    }
    assert outage >= 2 * LEASE and ticks >= OUTAGE // 2, (outage, ticks)
    for run in runs.values():
        history = [(s["type"], s["name"]) for s in run["states"]]
        assert (run["state_type"], run["attempt"]) == ("COMPLETED", 1), history
        assert not any(state_type == "CRASHED" or name == "AwaitingRetry" for state_type, name in history), history
        assert {t["task_key"].split("-")[0] for t in run["task_runs"]} >= {"hold", "after"}
        assert {t["state_type"] for t in run["task_runs"]} == {"COMPLETED"}
    # and: each task executed exactly once, to its end
    keys = {f"run-{i}": 1 for i in range(RUNS)}
    assert ledger.executions("hold") == keys and ledger.executions("after") == keys
    assert ledger.open_executions() == []
    assert all(ex.outcome == "ok" for ex in ledger.all_executions())
    # and: the web tier's beat recorded the gap it came back from (and moved the leases on by it)
    ((gap,),) = stack.sql("SELECT last_gap_seconds FROM orchestration_webtierbeat")
    assert gap >= 2 * LEASE
