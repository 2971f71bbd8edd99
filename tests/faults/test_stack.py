"""The fault harness itself: a realistic flow completes under a real agent on the stack with every
task executed once (as the ledger shows), and PostgreSQL and Redis survive a stop/start round trip
that the server rides out."""

from __future__ import annotations

import httpx
import pytest

from tests.faults.ledger import Ledger
from tests.faults.stack import Stack, World
from tests.sdk.e2e.harness import TERMINAL, wait_for, wait_for_state, write_flow

pytestmark = pytest.mark.postgres

FLOW = '''
from flowdeck import Flow, task


@task
def make_items(n):
    with record("make_items", "all"):
        return list(range(n))


@task
def work_item(item):
    with record("work_item", item, tags=("work",)):
        return item * 10


@task
def total(values):
    with record("total", "all"):
        return sum(values)


with Flow("ledgered") as ledgered:
    total(work_item.map(make_items(5)))
'''


def test_a_flow_with_a_mapped_task_completes_and_each_task_executes_once(stack: Stack, fault_world: World, tmp_path):
    # given: a flow whose tasks write the ledger, registered with the CLI, and one agent
    ledger = Ledger(tmp_path / "ledger.jsonl")
    flows = fault_world.register(write_flow(tmp_path, "ledgered", ledger.flow_preamble() + FLOW))
    agent = fault_world.start_agent(tmp_path, name="smoke")
    client = fault_world.client("developer")
    # when: a run is created
    run = client.create_flow_run(flows["ledgered"])
    done = wait_for_state(client, run["id"], TERMINAL, timeout=60)
    # then: it completed, and each task executed exactly once, start to end
    assert done["state_type"] == "COMPLETED", agent.log()
    assert ledger.executions("make_items") == {"all": 1}
    assert ledger.executions("work_item") == {str(i): 1 for i in range(5)}
    assert ledger.executions("total") == {"all": 1}
    assert ledger.open_executions() == []
    assert all(ex.outcome == "ok" for ex in ledger.all_executions())
    assert 1 <= ledger.max_concurrent("work") <= 5
    assert not ledger.overlaps("all", "total")


def test_postgres_stops_and_starts_again_and_the_server_recovers(stack: Stack, fault_world: World):
    client = fault_world.client("developer")
    # when: PostgreSQL stops, the stack's database is unreachable
    stack.pg.stop()
    assert not stack.pg.is_running()
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        stack.sql("SELECT 1")
    # and when it starts again on the same port
    stack.pg.start()
    # then: the data is there and the server answers from it again
    assert stack.sql("SELECT count(*) FROM accounts_workspace WHERE slug = %s", fault_world.slug) == [(1,)]
    wait_for(lambda: _lists_flows(client), 30, "the server to read from PostgreSQL again")


def test_postgres_survives_a_kill_9(stack: Stack, fault_world: World):
    stack.pg.kill9()
    assert not stack.pg.is_running()
    stack.pg.start()
    assert stack.sql("SELECT count(*) FROM accounts_workspace WHERE slug = %s", fault_world.slug) == [(1,)]


def test_redis_stops_and_starts_again_empty(stack: Stack, fault_world: World):
    import redis

    # given: a key in the stack's Redis
    r = redis.Redis.from_url(stack.redis.url)
    r.set("fault-suite-probe", "1")
    # when: Redis stops, then starts again on the same port
    stack.redis.stop()
    assert not stack.redis.ping()
    stack.redis.start()
    # then: it answers, empty (no persistence), and the server still serves REST
    assert stack.redis.ping()
    assert r.get("fault-suite-probe") is None
    assert httpx.get(stack.server.url + "/healthz", timeout=5).status_code == 200
    wait_for(lambda: _lists_flows(fault_world.client("developer")), 30, "REST to answer after the Redis restart")


def _lists_flows(client) -> bool:
    try:
        client.list_flows()
    except Exception:  # noqa: BLE001 - still recovering
        return False
    return True
