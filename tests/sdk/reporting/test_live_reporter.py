"""RunReporter against the real server: what the server stores is exactly what was reported, once,
in order, with the final flow state last — also when the server is unreachable for a while (a TCP
proxy in front of the live server is stopped and started again) and when the server's answers are
lost after it acted on a request."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowdeck.client import Client
from flowdeck.context import context
from flowdeck.engine.state import Cancelled, Failed, Running, Success
from flowdeck.reporting import RunReporter
from tests.conftest import WorkspaceWorld
from tests.sdk.client.live import ClaimedRun, claimed_run, client_for
from tests.sdk.reporting.proxy import TcpProxy

SEQ = 1_000_000_000


def stored(run_id: str) -> dict[str, Any]:
    """What the server's database holds for the run: task-state history per task run (in arrival
    order), log lines in sequence order, and the flow-run state history."""
    from core.tenancy import rls_bypass
    from orchestration.models import FlowRunState, LogEntry, TaskRunState

    with rls_bypass():
        tasks: dict[tuple[str, int], list[tuple[str, str, Any]]] = {}
        task_times = []
        for row in TaskRunState.objects.unscoped().filter(task_run__flow_run_id=run_id).select_related(
                "task_run").order_by("id"):
            key = (row.task_run.task_key, row.task_run.map_index)
            tasks.setdefault(key, []).append((row.type, row.name, row.result_ref))
            task_times.append(row.timestamp)
        logs = list(LogEntry.objects.unscoped().filter(flow_run_id=run_id).order_by("sequence")
                    .values("sequence", "message", "level", "logger", "created_at", "task_run_id"))
        flow = list(FlowRunState.objects.unscoped().filter(flow_run_id=run_id).order_by("timestamp", "id")
                    .values("type", "name", "timestamp"))
    return {"tasks": tasks, "task_times": task_times, "logs": logs, "flow": flow}


def reporter_for(claimed: ClaimedRun, url: str, key: str, spool: Path, **kwargs: Any) -> RunReporter:
    client = Client(url, key, claimed.developer.workspace, retries=1, backoff_base=0.05)
    options: dict[str, Any] = {"flush_interval": 0.05, "heartbeat_interval": None, "retry_interval_max": 0.5}
    options.update(kwargs)
    return RunReporter(client, claimed.run_id, claimed.attempt, spool_dir=spool, **options)


@pytest.fixture
def task_logger() -> logging.Logger:
    log = logging.getLogger("flows.user_code")
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def test_a_run_is_reported_in_batches_in_order_final_state_last(
    live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path, task_logger: logging.Logger
) -> None:
    keys = [f"t{i}" for i in range(50)]
    claimed = claimed_run(live_server_url, live_world, keys)
    reporter = reporter_for(claimed, live_server_url, live_world.keys["agent"], tmp_path)
    task_logger.addHandler(reporter.log_handler)
    try:
        reporter.flow_state(Running())
        for key in keys:
            reporter.task_state(key, -1, Running())
            with context(task_key=key, map_index=-1):
                task_logger.info("working on %s", key)
            reporter.task_state(key, -1, Success(result=object(), result_ref=f"/results/{key}"))
        reporter.flow_state(Success("all done"))
        assert reporter.close(timeout=30) is True
    finally:
        task_logger.removeHandler(reporter.log_handler)

    data = stored(claimed.run_id)
    assert data["tasks"] == {(k, -1): [("RUNNING", "Running", ""), ("COMPLETED", "Success", f"/results/{k}")]
                             for k in keys}
    assert [(line["sequence"], line["message"]) for line in data["logs"]] == [
        (claimed.attempt * SEQ + n, f"working on {k}") for n, k in enumerate(keys, start=1)]
    # Each line is linked to the task run it was logged from (task_key + map_index from the context).
    assert reporter.log_task_keys is True
    assert all(line["task_run_id"] is not None for line in data["logs"])
    assert [s["type"] for s in data["flow"]] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
    final = data["flow"][-1]["timestamp"]
    assert max(data["task_times"]) <= final
    assert max(line["created_at"] for line in data["logs"]) <= final
    # Batched: far fewer requests than reports (100 task states, 50 log lines).
    assert reporter.stats["task_batches"] + reporter.stats["log_batches"] <= 20
    assert reporter.stats["task_reports"] == 100 and reporter.stats["log_lines"] == 50
    assert not (tmp_path / f"{claimed.run_id}.{claimed.attempt}").exists()


def test_server_unreachable_spools_to_disk_and_delivers_exactly_once_in_order(
    live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path, task_logger: logging.Logger
) -> None:
    keys = [f"t{i}" for i in range(30)]
    claimed = claimed_run(live_server_url, live_world, keys)
    proxy = TcpProxy(live_server_url)
    proxy.start()
    reporter = reporter_for(claimed, proxy.url, live_world.keys["agent"], tmp_path)
    spool_dir = tmp_path / f"{claimed.run_id}.{claimed.attempt}"
    task_logger.addHandler(reporter.log_handler)
    expected_logs: list[str] = []

    def work(batch: list[str]) -> None:
        for key in batch:
            reporter.task_state(key, -1, Running())
            task_logger.info("start %s", key)
            reporter.task_state(key, -1, Success(result_ref=f"/r/{key}"))
            task_logger.warning("end %s", key)
            expected_logs.extend([f"start {key}", f"end {key}"])

    try:
        reporter.flow_state(Running())
        work(keys[:10])
        deadline = time.monotonic() + 10
        while reporter.undelivered and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reporter.undelivered == 0

        proxy.stop()  # the server is unreachable from here on
        work(keys[10:20])
        deadline = time.monotonic() + 10
        while not (spool_dir.is_dir() and any(spool_dir.glob("*.json"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(spool_dir.glob("*.json")), "the reporter keeps undelivered batches on disk"
        work(keys[20:])
        reporter.flow_state(Success())
        time.sleep(1.0)
        assert stored(claimed.run_id)["flow"][-1]["type"] == "RUNNING"  # nothing got through meanwhile

        proxy.start()  # back on the same address
        assert reporter.close(timeout=30) is True
    finally:
        task_logger.removeHandler(reporter.log_handler)
        proxy.stop()

    data = stored(claimed.run_id)
    assert data["tasks"] == {(k, -1): [("RUNNING", "Running", ""), ("COMPLETED", "Success", f"/r/{k}")]
                             for k in keys}
    assert [line["message"] for line in data["logs"]] == expected_logs
    assert [line["sequence"] for line in data["logs"]] == [claimed.attempt * SEQ + n
                                                           for n in range(1, len(expected_logs) + 1)]
    assert [s["type"] for s in data["flow"]] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
    final = data["flow"][-1]["timestamp"]
    assert max(data["task_times"]) <= final
    assert max(line["created_at"] for line in data["logs"]) <= final
    assert reporter.stats["spooled_batches"] >= 1
    assert not spool_dir.exists()


def test_lost_answers_do_not_apply_anything_twice(
    live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path, task_logger: logging.Logger
) -> None:
    keys = [f"t{i}" for i in range(10)]
    claimed = claimed_run(live_server_url, live_world, keys)
    proxy = TcpProxy(live_server_url)
    proxy.start()
    reporter = reporter_for(claimed, proxy.url, live_world.keys["agent"], tmp_path)
    task_logger.addHandler(reporter.log_handler)
    try:
        reporter.flow_state(Running())
        proxy.drop_responses = True  # the server acts on each request; its answers never come back
        for key in keys:
            reporter.task_state(key, -1, Running())
            task_logger.info("ran %s", key)
            reporter.task_state(key, -1, Failed("boom") if key == "t3" else Success())
        deadline = time.monotonic() + 10
        while proxy.dropped < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.dropped >= 3
        proxy.drop_responses = False
        reporter.flow_state(Failed("t3 failed"))
        assert reporter.close(timeout=30) is True
    finally:
        task_logger.removeHandler(reporter.log_handler)
        proxy.stop()

    data = stored(claimed.run_id)
    for key in keys:
        final = ("FAILED", "Failed", "") if key == "t3" else ("COMPLETED", "Success", "")
        assert data["tasks"][(key, -1)] == [("RUNNING", "Running", ""), final], key
    assert [line["message"] for line in data["logs"]] == [f"ran {k}" for k in keys]
    assert [s["type"] for s in data["flow"]] == ["SCHEDULED", "PENDING", "RUNNING", "FAILED"]


def test_cancellation_reaches_the_run_through_the_heartbeat(
    live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    claimed = claimed_run(live_server_url, live_world)
    reporter = reporter_for(claimed, live_server_url, live_world.keys["agent"], tmp_path, heartbeat_interval=0.2)
    reporter.flow_state(Running())
    reporter.task_state("extract", -1, Running())
    time.sleep(0.5)
    assert reporter.cancel_requested() is False
    assert claimed.developer.cancel_flow_run(claimed.run_id)["state_type"] == "CANCELLING"
    deadline = time.monotonic() + 5
    while not reporter.cancel_requested() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reporter.cancel_requested() is True
    assert reporter.aborted is False
    reporter.task_state("extract", -1, Cancelled("stopped"))
    reporter.flow_state(Cancelled("cancelled on request"))
    assert reporter.close(timeout=30) is True
    run = claimed.developer.get_flow_run(claimed.run_id)
    assert run["state_type"] == "CANCELLED"
    assert reporter.aborted is False


def test_a_flow_that_ends_as_cancellation_is_requested_confirms_the_cancellation(
    live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    # given: a running run whose cancellation is requested before the reporter heard of it
    claimed = claimed_run(live_server_url, live_world)
    reporter = reporter_for(claimed, live_server_url, live_world.keys["agent"], tmp_path)
    reporter.flow_state(Running())
    assert claimed.developer.cancel_flow_run(claimed.run_id)["state_type"] == "CANCELLING"
    # when: the flow finishes and reports COMPLETED (refused: the run is being cancelled)
    reporter.flow_state(Success("done"))
    reporter.close(timeout=30)
    # then: the reporter confirms the cancellation instead of leaving the run CANCELLING
    assert claimed.developer.get_flow_run(claimed.run_id)["state_type"] == "CANCELLED"
    assert reporter.cancel_requested() is True


def test_a_stale_attempt_aborts_the_reporter(live_server_url: str, live_world: WorkspaceWorld,
                                              tmp_path: Path) -> None:
    claimed = claimed_run(live_server_url, live_world)
    client = Client(live_server_url, live_world.keys["agent"], claimed.developer.workspace, retries=0)
    reporter = RunReporter(client, claimed.run_id, claimed.attempt + 1, spool_dir=tmp_path, flush_interval=0.05,
                           heartbeat_interval=None)
    started = time.monotonic()
    reporter.flow_state(Running())  # answered ABORT: returns at once instead of waiting
    assert time.monotonic() - started < 5
    assert reporter.aborted is True and reporter.cancel_requested() is True
    assert "attempt" in (reporter.abort_reason or "")
    reporter.task_state("extract", -1, Running())  # ignored: nothing more for this attempt
    assert reporter.close(timeout=5) is False
    assert stored(claimed.run_id)["tasks"] == {}


def test_a_run_taken_away_stops_through_the_heartbeat(live_server_url: str, live_world: WorkspaceWorld,
                                                      tmp_path: Path) -> None:
    claimed = claimed_run(live_server_url, live_world)
    reporter = reporter_for(claimed, live_server_url, live_world.keys["agent"], tmp_path, heartbeat_interval=0.2)
    reporter.flow_state(Running())
    # Someone marks the run FAILED on the server: it is no longer held by this process.
    developer = client_for(live_server_url, live_world, "developer")
    developer._request("POST", f"flow-runs/{claimed.run_id}/mark/", json={"state_type": "FAILED"})
    deadline = time.monotonic() + 5
    while not reporter.aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reporter.aborted and reporter.cancel_requested()
    reporter.close(timeout=5)


def test_running_waits_while_the_flow_concurrency_limit_is_full(
    live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    first = claimed_run(live_server_url, live_world)
    developer = first.developer
    developer._request("PATCH", f"flows/{first.flow_id}/", json={"concurrency_limit": 1})
    first_reporter = reporter_for(first, live_server_url, live_world.keys["agent"], tmp_path)
    first_reporter.flow_state(Running())

    run = developer.create_flow_run(first.flow_id)
    [claimed] = first.agent.claim(first.agent_id, limit=1, lease_seconds=60)
    assert claimed["id"] == run["id"]
    second = ClaimedRun(first.flow_id, run["id"], claimed["attempt"], first.agent_id, developer, first.agent)
    second_reporter = reporter_for(second, live_server_url, live_world.keys["agent"], tmp_path)
    entered = threading.Event()

    def start_second() -> None:
        second_reporter.flow_state(Running())
        entered.set()

    threading.Thread(target=start_second, daemon=True).start()
    assert not entered.wait(2.0), "the second run must not start while the limit is full"
    assert developer.get_flow_run(second.run_id)["state_type"] == "PENDING"

    first_reporter.flow_state(Success())
    assert first_reporter.close(timeout=30)
    assert entered.wait(20), "the second run starts once the slot is free (after the WAIT delay)"
    assert developer.get_flow_run(second.run_id)["state_type"] == "RUNNING"
    second_reporter.flow_state(Success())
    assert second_reporter.close(timeout=30)
    assert second_reporter.stats["flow_states"] >= 3  # WAIT, RUNNING, COMPLETED


def test_a_real_flow_run_reports_every_task_state_and_log_line(
    live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    from flowdeck import Flow, Parameter, task

    @task
    def numbers(n: int) -> list[int]:
        logging.getLogger("flows.real").info("making %d numbers", n)
        return list(range(n))

    @task
    def square(x: int) -> int:
        logging.getLogger("flows.real").info("squaring %d", x)
        return x * x

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    with Flow("squares") as flow:
        n = Parameter("n", default=3)
        total(square.map(numbers(n)))

    developer = client_for(live_server_url, live_world, "developer")
    agent = client_for(live_server_url, live_world, "agent")
    version, _ = developer.register_flow(project="data", name="squares", metadata=flow.serialize())
    run = developer.create_flow_run(version["flow"], parameters={"n": 20})
    record = agent.register_agent("real-agent", "process", [], "0.1.0", 5)
    [claimed] = agent.claim(record["id"], limit=1, lease_seconds=60)
    reporter = RunReporter(agent, run["id"], claimed["attempt"], spool_dir=tmp_path, heartbeat_interval=None)
    log = logging.getLogger("flows.real")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(reporter.log_handler)
    try:
        state = flow.run(parameters=claimed["parameters"], observer=reporter)
        assert reporter.close(timeout=30)
    finally:
        log.removeHandler(reporter.log_handler)
    assert state.is_successful()

    detail = developer.get_flow_run(run["id"])
    assert detail["state_type"] == "COMPLETED"
    by_key = {(t["task_key"], t["map_index"]): t["state_type"] for t in detail["task_runs"]}
    assert by_key[("square", -1)] == "COMPLETED"  # the mapped parent
    assert {i for (key, i) in by_key if key == "square" and i >= 0} == set(range(20))
    assert all(value == "COMPLETED" for value in by_key.values())
    data = stored(run["id"])
    assert sorted(line["message"] for line in data["logs"]) == sorted(
        ["making 20 numbers"] + [f"squaring {i}" for i in range(20)])
    assert all(line["task_run_id"] is not None for line in data["logs"])
    assert max(data["task_times"]) <= data["flow"][-1]["timestamp"]


def test_heartbeats_ask_for_the_agents_lease(live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path) -> None:
    # given: a run started by a reporter told the agent's lease is 15 s
    claimed = claimed_run(live_server_url, live_world, ["t"])
    reporter = reporter_for(claimed, live_server_url, live_world.keys["agent"], tmp_path,
                            heartbeat_interval=60 / 3, lease_seconds=15)
    try:
        reporter.flow_state(Running())
        # then: it heartbeats every 5 s, each beat extending the lease by 15 s from the server's now
        assert reporter.heartbeat_interval == 5
        from core.tenancy import rls_bypass
        from orchestration.engine import db_now
        from orchestration.models import FlowRun

        def lease_left() -> float:
            with rls_bypass():
                run = FlowRun.objects.unscoped().get(pk=claimed.run_id)
                return (run.lease_expires_at - db_now()).total_seconds()

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not 5 < lease_left() <= 15:
            time.sleep(0.2)
        assert 5 < lease_left() <= 15
    finally:
        reporter.flow_state(Success())
        reporter.close(timeout=30)
