"""Combined reports (``flow-runs/{id}/report/``) with precise control of the server's answers (the
in-process fake of test_reporter_unit.py, taught the combined endpoint): RUNNING with the first
heartbeat, the final state with the last task states and logs, one request per send; WAIT, lost
answers, 413 and outages keep every report exactly once; an older server (404) gets the parts
separately; an older reporter's spool is still delivered."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx

from flowdeck.engine.state import Running, Success
from flowdeck.reporting import RunReporter
from flowdeck.reporting.batches import Batch
from flowdeck.reporting.spool import Spool
from tests.sdk.reporting.test_reporter_unit import FakeServer, reporter, unavailable


class CombinedServer(FakeServer):
    """The fake server with the combined endpoint: the parts applied in the server's order."""

    def __init__(self) -> None:
        super().__init__()
        self.beats = 0

    def apply(self, endpoint: str, body: dict[str, Any]) -> httpx.Response:
        if endpoint != "report":
            return super().apply(endpoint, body)
        reply: dict[str, Any] = {}
        if "heartbeat" in body:
            self.beats += 1
            reply["heartbeat"] = {"cancellation_requested": False, "attempt": body["attempt"]}
        if "task_runs" in body:
            self.tasks.extend(body["task_runs"])
            reply["task_runs"] = {"results": [{"status": "ACCEPT"} for _ in body["task_runs"]]}
        if "logs" in body:
            new = [line for line in body["logs"] if line["sequence"] not in self.lines]
            self.lines.update((line["sequence"], line) for line in new)
            reply["logs"] = {"count": len(new)}
        if "state" in body:
            self.flow_states.append(body["state"]["type"])
            reply["state"] = {"status": "ACCEPT", "state": {"type": body["state"]["type"]}}
        return httpx.Response(200, json=reply)


def _logger(rep: RunReporter, name: str) -> logging.Logger:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(rep.log_handler)
    return log


def test_running_goes_with_the_first_heartbeat_and_the_final_state_with_the_last_reports(tmp_path: Path) -> None:
    server = CombinedServer()
    rep = reporter(server, tmp_path, start=False, heartbeat_interval=30, lease_seconds=90)
    log = _logger(rep, "flows.combined")
    try:
        rep.flow_state(Running())
        rep.task_state("a", -1, Running())
        log.info("working")
        rep.task_state("a", -1, Success(result_ref="/r/a"))
        rep.flow_state(Success("done"))
        rep.start()
        assert rep.close(timeout=10)
    finally:
        log.removeHandler(rep.log_handler)
    assert [endpoint for endpoint, _, _ in server.calls] == ["report", "report"]
    first, last = (body for _, _, body in server.calls)
    assert first == {"attempt": 2, "heartbeat": {"lease_seconds": 90}, "state": {"type": "RUNNING", "name": "Running"}}
    assert set(last) == {"attempt", "task_runs", "logs", "state"} and last["state"]["type"] == "COMPLETED"
    assert [r["state"]["type"] for r in last["task_runs"]] == ["RUNNING", "COMPLETED"]
    assert [line["message"] for line in last["logs"]] == ["working"]
    assert server.flow_states == ["RUNNING", "COMPLETED"] and server.beats == 1
    assert rep.stats["reports"] == 2 and rep.stats["heartbeats"] == 1 and rep.stats["flow_states"] == 2


def test_reports_carry_a_heartbeat_when_one_is_due_and_the_heartbeat_thread_stays_quiet(tmp_path: Path) -> None:
    server = CombinedServer()
    rep = reporter(server, tmp_path, heartbeat_interval=0.4)
    rep.flow_state(Running())
    for i in range(12):  # reports flow every ~0.1 s for 1.2 s: three intervals
        rep.task_state(f"t{i}", -1, Running())
        time.sleep(0.1)
    rep.flow_state(Success())
    assert rep.close(timeout=10)
    assert {endpoint for endpoint, _, _ in server.calls} == {"report"}  # no separate heartbeat
    assert server.beats >= 3


def test_a_wait_keeps_the_other_parts_and_proposes_the_state_again_alone(tmp_path: Path) -> None:
    server = CombinedServer()
    waits = {"left": 2}

    def concurrency_full(endpoint: str, body: dict[str, Any]) -> httpx.Response | None:
        if endpoint == "report" and "state" in body and waits["left"] > 0:
            waits["left"] -= 1
            server.apply(endpoint, {k: v for k, v in body.items() if k != "state"})
            return httpx.Response(200, json={"state": {"status": "WAIT", "state": {"type": "PENDING"},
                                                       "reason": "full", "details": {}, "retry_after_seconds": 0}})
        return None

    server.hook = concurrency_full
    rep = reporter(server, tmp_path, start=False, heartbeat_interval=None)
    log = _logger(rep, "flows.waiting")
    try:
        log.info("before running")
        rep.flow_state(Running())
        rep.start()
        deadline = time.monotonic() + 5
        while server.flow_states != ["RUNNING"] and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        log.removeHandler(rep.log_handler)
    assert rep.close(timeout=5)
    bodies = [body for _, _, body in server.calls]
    keys = [key for _, key, _ in server.calls]
    assert len(bodies) == 3 and len(set(keys)) == 3
    assert "logs" in bodies[0] and all(set(b) == {"attempt", "state"} for b in bodies[1:])
    assert len(server.lines) == 1 and server.flow_states == ["RUNNING"]


def test_a_lost_answer_is_replayed_with_the_same_key(tmp_path: Path) -> None:
    server = CombinedServer()
    server.lose_answers["report"] = 2
    rep = reporter(server, tmp_path, heartbeat_interval=None)
    rep.task_state("a", -1, Running())
    assert rep.close(timeout=10)
    assert [r["task_key"] for r in server.tasks] == ["a"]
    keys = [key for endpoint, key, _ in server.calls if endpoint == "report"]
    assert len(keys) == 3 and len(set(keys)) == 1


def test_a_too_large_report_is_split_in_order_with_the_state_last(tmp_path: Path) -> None:
    server = CombinedServer()
    server.hook = lambda endpoint, body: (
        httpx.Response(413, json={"error": {"code": "request_too_large", "message": "too big"}})
        if endpoint == "report" and len(body.get("task_runs", ())) + len(body.get("logs", ())) > 3 else None)
    rep = reporter(server, tmp_path, start=False, heartbeat_interval=None)
    for i in range(10):
        rep.task_state(f"t{i}", -1, Running())
    rep.flow_state(Success())
    rep.start()
    assert rep.close(timeout=10)
    assert [r["task_key"] for r in server.tasks] == [f"t{i}" for i in range(10)]
    assert server.flow_states == ["COMPLETED"]
    applied = [body for _, _, body in server.calls if len(body.get("task_runs", ())) <= 3]
    assert "state" in applied[-1] and all("state" not in body for body in applied[:-1])


def test_an_outage_spools_combined_reports_and_delivers_them_later_once_in_order(tmp_path: Path) -> None:
    server = CombinedServer()
    server.hook = lambda endpoint, body: unavailable()
    first = reporter(server, tmp_path, heartbeat_interval=None)
    first.flow_state(Running())  # not held while the server is away
    first.task_state("a", -1, Running())
    assert first.close(timeout=0.5) is False
    spooled = Spool(tmp_path / "run-1.2").batches()
    assert spooled and {batch.kind for batch in spooled} == {"report"}

    server.hook = lambda endpoint, body: None
    second = reporter(server, tmp_path, heartbeat_interval=None)
    second.task_state("a", -1, Success())
    second.flow_state(Success())
    assert second.close(timeout=10)
    assert server.flow_states == ["RUNNING", "COMPLETED"]
    assert [r["state"]["type"] for r in server.tasks] == ["RUNNING", "COMPLETED"]
    assert not (tmp_path / "run-1.2").exists()


def test_an_older_server_gets_the_parts_separately_after_one_refused_report(tmp_path: Path) -> None:
    server = FakeServer()  # no combined endpoint: 404
    rep = reporter(server, tmp_path, start=False, heartbeat_interval=30)
    log = _logger(rep, "flows.older")
    try:
        rep.flow_state(Running())
        rep.task_state("a", -1, Running())
        log.info("line")
        rep.flow_state(Success())
        rep.start()
        assert rep.close(timeout=10)
    finally:
        log.removeHandler(rep.log_handler)
    endpoints = [endpoint for endpoint, _, _ in server.calls]
    assert endpoints == ["report", "heartbeat", "set-state", "task-runs", "logs", "set-state"]
    assert rep.combined is False
    assert server.flow_states == ["RUNNING", "COMPLETED"] and len(server.tasks) == 1 and len(server.lines) == 1


def test_an_older_reporters_spool_is_delivered_to_the_separate_endpoints_with_its_keys(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "run-1.2")
    spool.append(Batch("flow_state", {"type": "RUNNING"}, "old-1"))
    spool.append(Batch("task_runs", [{"task_key": "a", "map_index": -1, "state": {"type": "RUNNING"}}], "old-2"))
    spool.append(Batch("logs", [{"sequence": 2_000_000_001, "level": 20, "timestamp": "2026-01-01T00:00:00+00:00",
                                 "logger": "x", "message": "old line"}], "old-3"))
    server = CombinedServer()
    rep = reporter(server, tmp_path, heartbeat_interval=None)
    log = _logger(rep, "flows.resumed")
    try:
        log.info("new line")
        rep.flow_state(Success())
        assert rep.close(timeout=10)
    finally:
        log.removeHandler(rep.log_handler)
    assert [(endpoint, key) for endpoint, key, _ in server.calls][:3] == [
        ("set-state", "old-1"), ("task-runs", "old-2"), ("logs", "old-3")]
    assert [endpoint for endpoint, _, _ in server.calls][3:] == ["report"]
    # The new lines continue the sequence after the spooled ones.
    assert sorted(server.lines) == [2_000_000_001, 2_000_000_002]
    assert server.flow_states == ["RUNNING", "COMPLETED"]


def test_a_report_refused_for_one_part_is_sent_part_by_part_and_only_that_part_is_dropped(tmp_path: Path) -> None:
    server = CombinedServer()
    server.hook = lambda endpoint, body: httpx.Response(
        400, json={"error": {"code": "invalid", "message": "logs: 0: message: bad", "details": {"logs": {}}}}) \
        if endpoint == "report" and any(line["message"] == "bad" for line in body.get("logs", ())) else None
    rep = reporter(server, tmp_path, start=False, heartbeat_interval=None)
    log = _logger(rep, "flows.refused")
    try:
        rep.task_state("a", -1, Running())
        log.info("bad")
        rep.flow_state(Success())
        rep.start()
        assert rep.close(timeout=10)
    finally:
        log.removeHandler(rep.log_handler)
    assert [sorted(body) for _, _, body in server.calls] == [
        ["attempt", "logs", "state", "task_runs"], ["attempt", "task_runs"], ["attempt", "logs"], ["attempt", "state"]]
    assert len(server.tasks) == 1 and not server.lines and server.flow_states == ["COMPLETED"]
    assert rep.stats["dropped_batches"] == 1
