"""Tag concurrency limits limit execution (issue 9, point 3), with the real server and a process
agent running real flow-run processes: a task with a limited tag calls its code only once the server
accepted its RUNNING (it holds a slot); told to WAIT it waits, says so once in the run's logs, and
proposes again. The tasks write a ledger of when they really ran."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from core.tenancy import rls_bypass
from flowdeck.agent.process import ProcessAgent
from orchestration.models import ConcurrencySlot, TaskRun, TaskRunState
from tests.faults.ledger import Ledger
from tests.sdk.agent.live import Live

pytestmark = pytest.mark.postgres

WAITING = "waiting for a concurrency slot on tag limited"

FLOW = """
from flowdeck.executors import LocalDaskExecutor

@task
def items(n):
    return list(range(n))

@task(tags=["limited"])
def work(i):
    with record("work", i, tags=("limited",)):
        time.sleep(0.3)
    return i

with Flow("limited-map", executor=LocalDaskExecutor(scheduler="threads", num_workers=4)) as flow:
    work.map(items(Parameter("n", default=6)))
"""


def set_limit(live: Live, tag: str, limit: int) -> None:
    response = httpx.put(f"{live.url}/api/v1/workspaces/{live.workspace}/concurrency-limits/",
                         json={"tag": tag, "limit": limit}, headers={"Authorization": f"Bearer {live.developer_key}"})
    assert response.status_code == 200, response.text


def test_two_runs_of_a_mapped_tagged_task_never_run_more_than_the_limit_at_once(live, live_world, tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl", alive_every=0)
    flow_id = live.register("limited-map", ledger.flow_preamble() + FLOW)
    set_limit(live, "limited", 2)
    runs = [live.create_run(flow_id, parameters={"n": 6}) for _ in range(2)]
    live.start_agent(ProcessAgent, max_concurrent_runs=2)

    for run_id in runs:
        done = live.wait_state(run_id, timeout=90)
        assert done["state_type"] == "COMPLETED", done["state_message"]

    assert ledger.max_concurrent("limited") <= 2
    assert len(ledger.all_executions("work")) == 12 and not ledger.open_executions()
    workspace_id = live_world.workspace.pk
    with rls_bypass():
        assert ConcurrencySlot.objects.for_workspace(workspace_id).count() == 0
        children = TaskRun.objects.for_workspace(workspace_id).filter(flow_run_id__in=runs, task_key="work",
                                                                       map_index__gte=0)
        assert sorted(children.values_list("state_type", flat=True)) == ["COMPLETED"] * 12
        ran = set(TaskRunState.objects.for_workspace(workspace_id).filter(task_run__in=children, type="RUNNING")
                  .values_list("task_run_id", flat=True))
        assert ran == set(children.values_list("pk", flat=True))  # every child held its slot while it ran
    # 12 tasks on 2 slots, 4 threads per run: some waited, and each said so once, not once per poll.
    waits = Counter(
        line["task_run"]
        for run_id in runs for line in live.developer.list_logs(run_id, limit=1000)["results"]
        if WAITING in line["message"]
    )
    assert waits and set(waits.values()) == {1}

