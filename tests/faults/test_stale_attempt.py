"""Issue 9, point 4: a stale attempt stops at once. Agent A runs a long task; A and its flow-run
process are frozen (SIGSTOP) past the lease, the reaper crashes the run, agent B claims the retry
and runs it. When A wakes (SIGCONT), its flow-run process learns that its attempt is over and ends
itself with its task within two seconds: the ledger shows A's execution never ended normally and
was not seen running beside B's after that, and the run completes through B."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.ledger import Ledger
from tests.faults.stack import Stack, World
from tests.sdk.e2e.harness import TERMINAL, wait_for, wait_for_state, write_flow

pytestmark = pytest.mark.postgres

LEASE = 10

FLOW = '''
import time
from pathlib import Path

from flowdeck import Flow, task

FIRST = Path({marker!r})


@task
def long_task():
    first = not FIRST.exists()
    FIRST.touch()
    with record("long_task", "only"):
        time.sleep(20 if first else 6)  # the retry is shorter, so the test is too
    return "done"


with Flow("long-task") as long_task_flow:
    long_task()
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def test_a_stale_attempt_stops_its_task_within_two_seconds_of_waking(stack: Stack, fault_world: World, tmp_path):
    # given: agent A runs the long task (its flow-run process leads its own process group)
    ledger = Ledger(tmp_path / "ledger.jsonl", alive_every=0.1, gap=0.5)
    source = ledger.flow_preamble() + FLOW.format(marker=str(tmp_path / "first-attempt"))
    flow_id = fault_world.register(write_flow(tmp_path, "long_task", source))["long-task"]
    client = fault_world.client("developer")
    agent_a = fault_world.start_agent(tmp_path, name="stale-a", lease=LEASE)
    run_id = client.create_flow_run(flow_id)["id"]
    first = wait_for(lambda: ledger.all_executions("long_task"), 60, "attempt 1 to start its task")[0]
    flow_run_pid = first.pid
    agent_b = fault_world.start_agent(tmp_path, name="stale-b", lease=LEASE)
    frozen = [agent_a.proc.pid, flow_run_pid]
    try:
        # when: A and its flow-run process are frozen past the lease, and B runs the retry
        for group in frozen:
            _signal_group(group, signal.SIGSTOP)
        second = wait_for(lambda: [ex for ex in ledger.all_executions("long_task") if ex.pid != flow_run_pid],
                          LEASE + 30, "agent B to run the retry")[0]
        woke = time.time()
        for group in frozen:
            _signal_group(group, signal.SIGCONT)
        # then: A's flow-run process is gone within 2 s, its task never finished
        deadline = time.monotonic() + 2.0
        while _alive(flow_run_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(flow_run_pid), agent_a.log()[-3000:]
    finally:
        for group in frozen:
            _signal_group(group, signal.SIGCONT)
    done = wait_for_state(client, run_id, TERMINAL, timeout=60)
    assert (done["state_type"], done["attempt"]) == ("COMPLETED", 2), agent_b.log()[-3000:]
    stale, retry = (next(ex for ex in ledger.all_executions("long_task") if ex.id == e.id) for e in (first, second))
    assert stale.end is None  # killed mid-task: no "end" line
    assert stale.last_seen <= woke + 2.0
    assert retry.outcome == "ok" and retry.end is not None and retry.end > woke + 2.0
    # no execution of the task beside the retry once A had woken (+2 s)
    assert all(end <= woke + 2.0 for start, end in stale.segments if end > second.start)
    assert ledger.executions("long_task") == {"only": 2}
