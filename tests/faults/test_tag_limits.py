"""Issue 9, point 3 under load: a tag concurrency limit limits execution. Limit 3 on tag ``limited``,
two real agents (ten flow runs in flight each), many small runs whose one task carries the tag and
writes the ledger: the ledger never shows more than three of those tasks executing at once, every
task ran exactly once while it held its slot (a RUNNING state on the server), every run completed,
and no slot is left held at the end."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.faults.ledger import Ledger
from tests.faults.stack import Stack, World
from tests.sdk.e2e.harness import write_flow

pytestmark = pytest.mark.postgres

LIMIT = 3
# How many runs: as many as two agents on two shared cores finish in about a minute (each run is
# a flow-run process of its own; most of a run's cost is starting it). The full 500 runs
# take about five minutes here: FLOWDECK_FAULTS_TAG_RUNS=500 runs them.
RUNS = int(os.environ.get("FLOWDECK_FAULTS_TAG_RUNS", "100"))

FLOW = '''
import random
import time

import flowdeck
from flowdeck import Flow, task


@task(tags=["limited"])
def limited():
    with record("limited", flowdeck.context.get("flow_run_id"), tags=("limited",)):
        time.sleep(random.uniform(0.02, 0.05))


with Flow("tag-limited") as tag_limited:
    limited()
'''


def _runs_by_state(stack: Stack, world: World) -> dict[str, int]:
    rows = stack.sql(
        "SELECT r.state_type, count(*) FROM orchestration_flowrun r JOIN accounts_workspace w ON w.id = r.workspace_id "
        "WHERE w.slug = %s GROUP BY r.state_type", world.slug)
    return {state: count for state, count in rows}


def test_a_tag_limit_of_three_holds_across_two_agents(stack: Stack, fault_world: World, tmp_path):
    # given: a flow whose one task carries the limited tag, a limit of 3, and RUNS runs waiting
    ledger = Ledger(tmp_path / "ledger.jsonl", alive_every=0)
    flow_id = fault_world.register(write_flow(tmp_path, "tag_limited", ledger.flow_preamble() + FLOW))["tag-limited"]
    headers = {"Authorization": f"Bearer {fault_world.keys['developer']}"}
    base = f"{stack.server.url}/api/v1/workspaces/{fault_world.slug}"
    response = httpx.put(f"{base}/concurrency-limits/", json={"tag": "limited", "limit": LIMIT}, headers=headers)
    assert response.status_code == 200, response.text
    response = httpx.post(f"{base}/flow-runs/bulk/", json={"flow": flow_id, "runs": [{}] * RUNS}, headers=headers,
                          timeout=60)
    assert response.status_code == 201, response.text
    # when: two agents run them, ten at a time each
    started = time.monotonic()
    agents = [fault_world.start_agent(tmp_path, name=f"tags-{i}", extra=["--max-runs", "10"]) for i in range(2)]
    deadline = started + 150 * max(1, RUNS // 100)
    while _runs_by_state(stack, fault_world).get("COMPLETED", 0) < RUNS and time.monotonic() < deadline:
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    # then: every run completed, its task executed once, never more than LIMIT at a time
    assert _runs_by_state(stack, fault_world) == {"COMPLETED": RUNS}, (elapsed, agents[0].log()[-3000:])
    assert ledger.max_concurrent("limited") <= LIMIT
    executions = ledger.executions("limited")
    assert len(executions) == RUNS and set(executions.values()) == {1}
    assert ledger.open_executions() == []
    # and each task run held its slot while it ran (RUNNING on the server), and gave it back
    unslotted = stack.sql(
        "SELECT count(*) FROM orchestration_taskrun t JOIN accounts_workspace w ON w.id = t.workspace_id "
        "WHERE w.slug = %s AND (t.state_type <> 'COMPLETED' OR NOT EXISTS (SELECT 1 FROM orchestration_taskrunstate s "
        "WHERE s.task_run_id = t.id AND s.type = 'RUNNING'))", fault_world.slug)
    assert unslotted == [(0,)]
    held = stack.sql(
        "SELECT count(*) FROM orchestration_concurrencyslot c JOIN accounts_workspace w ON w.id = c.workspace_id "
        "WHERE w.slug = %s", fault_world.slug)
    assert held == [(0,)]
    print(f"\n{RUNS} runs with a tag limit of {LIMIT} on two agents: {elapsed:.1f}s")
