"""How many requests one flow run costs: a real `flowdeck agent start` and its flow-run process against
the real server, every request counted by a proxy in front of it. A flow with tasks passing results,
a mapped task and logs runs twice: against the server as it is (combined reports: RUNNING with the
first heartbeat, the final state with the last task states and logs) and against the same server
playing an older one without the combined endpoint (the proxy answers ``report/`` with 404, so the
reporter sends the parts to the separate endpoints, as it did before the combined endpoint)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import WorkspaceWorld
from tests.sdk.e2e.harness import TERMINAL, all_logs, developer, register, start_agent, wait_for_state, write_flow
from tests.sdk.reporting.counting_proxy import CountingProxy

pytestmark = pytest.mark.postgres

FLOW = '''
import logging

from flowdeck import Flow, Parameter, task

log = logging.getLogger("counted")


@task
def extract(n):
    log.info("extracting %d rows", n)
    return list(range(n))


@task
def double(x):
    log.info("doubling %d", x)
    return 2 * x


@task
def load(values):
    log.info("loading %d values", len(values))
    return sum(values)


with Flow("counted") as counted:
    load(double.map(extract(Parameter("n", default=5))))
'''


def _run_once(proxy: CountingProxy, client: object, flow_id: str) -> tuple[str, list[tuple[str, str, int]]]:
    run = client.create_flow_run(flow_id, parameters={"n": 5})  # type: ignore[attr-defined]
    done = wait_for_state(client, run["id"], TERMINAL, timeout=90)  # type: ignore[arg-type]
    assert done["state_type"] == "COMPLETED", done
    assert Counter(t["state_type"] for t in done["task_runs"]) == {"COMPLETED": 9}  # n, extract, 1+5 double, load
    lines = [line["message"] for line in all_logs(client, run["id"])]  # type: ignore[arg-type]
    assert {"extracting 5 rows", "loading 5 values"} <= set(lines) and sum("doubling" in m for m in lines) == 5
    return run["id"], proxy.of_run(run["id"])


def test_a_run_costs_two_to_four_requests_with_combined_reports_instead_of_five_or_more(
    live_server_url: str, live_world: WorkspaceWorld, sdk_env: dict[str, str], tmp_path: Path
) -> None:
    flow_id = register(sdk_env, live_world, write_flow(tmp_path, "counted_flow", FLOW))["counted"]
    proxy = CountingProxy(live_server_url)
    proxy.start()
    agent = start_agent({**sdk_env, "FLOWDECK_API_URL": proxy.url}, tmp_path, name="counted-agent", lease=30)
    client = developer(live_server_url, live_world)  # the test's own reads go around the proxy
    try:
        # after: combined reports
        after_id, after = _run_once(proxy, client, flow_id)
        # before: the same server without the combined endpoint (an older server)
        proxy.without_report = True
        before_id, before = _run_once(proxy, client, flow_id)
    finally:
        agent.stop()
        proxy.stop()
    after_kinds = Counter(path.rstrip("/").rsplit("/", 1)[-1] for _, path, _ in after)
    before_kinds = Counter(path.rstrip("/").rsplit("/", 1)[-1] for _, path, status in before if status != 404)
    print(f"requests per run: before {sum(before_kinds.values())} {dict(before_kinds)}, "
          f"after {sum(after_kinds.values())} {dict(after_kinds)}")

    # Nothing is read between the claim and the flow's code: the claim carried all it needs, and
    # the agent and the flow-run process sent no GET at all.
    # (The agent's push socket, /ws/, cannot be proxied here; it falls back to polling.)
    assert not [r for r in proxy.snapshot() if r[0] != "POST" and r[1].startswith("/api/")], proxy.snapshot()
    # After: only combined reports. The first is RUNNING with the first heartbeat; the last is the
    # final state; the rest carried task states and logs as they came (one per send).
    assert set(after_kinds) == {"report"}, after
    reports = proxy.reports_of(after_id)
    assert set(reports[0]) == {"attempt", "heartbeat", "state"} and reports[0]["state"]["type"] == "RUNNING"
    assert reports[-1]["state"]["type"] == "COMPLETED" and all("state" not in r for r in reports[1:-1])
    assert "heartbeat" not in reports[-1]
    # 9 task runs' states (two each) and 7 lines arrived in these few requests.
    assert sum(len(r.get("task_runs", ())) for r in reports) == 18
    assert sum(len(r.get("logs", ())) for r in reports) >= 7
    assert len(after) <= 4, after
    # Before: a heartbeat and set-state RUNNING, task-run and log batches apart, set-state at the end.
    assert before_kinds["set-state"] == 2 and before_kinds["heartbeat"] >= 1
    assert before_kinds["task-runs"] >= 1 and before_kinds["logs"] >= 1
    assert sum(before_kinds.values()) >= 5
    assert len(after) < sum(before_kinds.values())
    # The older server cost one refused report, once per flow-run process.
    assert [r for r in before if r[2] == 404] == [("POST", f"/api/v1/workspaces/{live_world.workspace.slug}/"
                                                           f"flow-runs/{before_id}/report/", 404)]
