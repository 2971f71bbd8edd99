"""A PostgreSQL outage (issue 9, point 10; G2 in docs/reliability.md).

Runs execute under a real agent on the fault stack. The stack's PostgreSQL is stopped while their
tasks are executing. Meanwhile the API answers quickly and truthfully: REST with a key, GraphQL and
``/readyz`` answer 503 with ``Retry-After`` within 3 s each, twelve requests sent at once too, and
``/healthz`` (liveness) answers 200. The tasks finish during the outage, so everything the flow-run
processes report — task states, log lines, the final state — has to wait in the agent's spool.
PostgreSQL comes back: the server is ready again, every run COMPLETES on its first attempt, and
nothing is lost (every task run COMPLETED, every log line there, each task executed exactly once).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.ledger import Ledger
from tests.faults.stack import Stack, World
from tests.sdk.e2e.harness import TERMINAL, all_logs, wait_for, wait_for_state, write_flow

pytestmark = pytest.mark.postgres

# Longer than the outage: this test is about the API during an outage, not about leases.
LEASE = 60
RUNS = 2
LINES = 20
#: G2: a request that cannot reach the database answers within this many seconds.
ANSWER_SECONDS = 3.0
#: Requests sent at once during the outage: waiting the pool's whole timeout (2 s) each, three at a
#: time, the last would answer after 8 s.
BURST = 12

FLOW = '''
import logging
import os
import time

from flowdeck import Flow, Parameter, task

GO = {go!r}
LINES = {lines}
log = logging.getLogger("db_outage")


@task
def hold(key):
    # Executes until the test says so (while the database is down), then reports its lines.
    with record("hold", key):
        deadline = time.monotonic() + 120
        while not os.path.exists(GO) and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(LINES):
            log.info("%s line %d", key, i)
        return key


@task
def after(key):
    with record("after", key):
        log.info("%s after", key)
        return key


with Flow("db-outage") as db_outage:
    after(hold(Parameter("key")))
'''


def _timed(method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=30, **kwargs)
    return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response, took: float) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert took < ANSWER_SECONDS, f"{response.request.url} took {took:.1f}s"
    assert int(response.headers["Retry-After"]) > 0
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "database_unavailable"
    return error


def test_a_database_outage_answers_503_quickly_and_loses_nothing(
    stack: Stack, fault_world: World, tmp_path: Path
) -> None:
    # given: runs executing their first task under an agent
    ledger = Ledger(tmp_path / "ledger.jsonl")
    go = tmp_path / "go"
    source = ledger.flow_preamble() + FLOW.format(go=str(go), lines=LINES)
    flows = fault_world.register(write_flow(tmp_path, "db_outage", source))
    client = fault_world.client("developer")
    agent = fault_world.start_agent(tmp_path, name="agent-1", lease=LEASE)
    run_ids = [client.create_flow_run(flows["db-outage"], parameters={"key": f"run-{i}"})["id"] for i in range(RUNS)]
    wait_for(lambda: len(ledger.executions("hold")) == RUNS, 60, "every run to be executing its first task")
    base = stack.server.url
    key = {"Authorization": f"Bearer {fault_world.keys['developer']}"}

    # when: PostgreSQL stops
    stack.pg.stop()
    try:
        # then: the API says so at once, in the one error shape, and asks to retry
        error = _assert_unavailable(*_timed("GET", f"{base}/api/v1/workspaces/{fault_world.slug}/flow-runs/",
                                            headers=key))
        assert "retry" in error["message"].lower()
        # and so do many at once: each waits briefly for a connection now that the database is
        # known down, so none queues behind the others' waits for long (3 run at once per process)
        with ThreadPoolExecutor(BURST) as pool:
            burst = list(pool.map(lambda _: _timed("GET", f"{base}/api/v1/workspaces/{fault_world.slug}/flows/",
                                                   headers=key), range(BURST)))
        for answer in burst:
            _assert_unavailable(*answer)
        _assert_unavailable(*_timed("GET", f"{base}/api/v1/workspaces/{fault_world.slug}/flow-runs/{run_ids[0]}/",
                                    headers=key))
        _assert_unavailable(*_timed("POST", f"{base}/api/v1/workspaces/{fault_world.slug}/flow-runs/",
                                    headers=key, json={"flow": flows["db-outage"]}))
        _assert_unavailable(*_timed("GET", f"{base}/graphql", params={"query": "{ __typename }"}))
        ready, took = _timed("GET", f"{base}/readyz")
        body = ready.json()
        _assert_unavailable(ready, took)
        assert body["checks"]["database"]["ok"] is False and "database" in body["error"]["details"]["down"]
        live, took = _timed("GET", f"{base}/healthz")
        assert live.status_code == 200 and took < 1

        # and: the flows finish meanwhile; their reports wait in the agent's spool
        go.touch()
        wait_for(lambda: ledger.executions("after") == {f"run-{i}": 1 for i in range(RUNS)}, 60,
                 "every run to finish executing while the database is down")
        assert agent.proc.poll() is None, agent.log()
    finally:
        stack.pg.start()

    # when PostgreSQL is back: the server is ready again within seconds
    wait_for(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, 30, "/readyz to answer 200")
    # then: every run completes on its first attempt, with everything the processes reported
    runs = {run_id: wait_for_state(client, run_id, TERMINAL, timeout=120) for run_id in run_ids}
    for run_id, run in runs.items():
        history = [(s["type"], s["name"]) for s in run["states"]]
        assert (run["state_type"], run["attempt"]) == ("COMPLETED", 1), history
        assert not any(state_type == "CRASHED" or name == "AwaitingRetry" for state_type, name in history), history
        # (the parameter "key" is a task run of its own)
        assert sorted((t["task_key"], t["state_type"]) for t in run["task_runs"]) == [
            ("after", "COMPLETED"), ("hold", "COMPLETED"), ("key", "COMPLETED")]
        key_of = run["parameters"]["key"]
        messages = [line["message"] for line in all_logs(client, run_id)]
        expected = [f"{key_of} line {i}" for i in range(LINES)] + [f"{key_of} after"]
        assert [m for m in messages if m.startswith(f"{key_of} ")] == expected
    # and: each task executed exactly once, to its end
    keys = {f"run-{i}": 1 for i in range(RUNS)}
    assert ledger.executions("hold") == keys and ledger.executions("after") == keys
    assert ledger.open_executions() == []
    assert all(execution.outcome == "ok" for execution in ledger.all_executions())
