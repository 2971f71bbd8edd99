"""RunReporter logic that needs precise control of the server's answers (an in-process fake over
httpx.MockTransport): the same key on every re-send, 413 splitting, WAIT re-proposals, fatal errors,
the log handler, leftovers picked up by the next reporter, and the per-report cost in the calling
thread. Delivery against the real server is in test_live_reporter.py."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowdeck.client import Client
from flowdeck.context import context
from flowdeck.engine.state import Running, Success
from flowdeck.reporting import RunReporter
from flowdeck.reporting.spool import Spool


class FakeServer:
    """Enough of the agent protocol to record what arrives; ``hook`` may answer a request instead."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []  # (endpoint, idempotency key, body)
        self.tasks: list[dict[str, Any]] = []
        self.lines: dict[int, dict[str, Any]] = {}
        self.flow_states: list[str] = []
        self.hook: Callable[[str, dict[str, Any]], httpx.Response | None] = lambda endpoint, body: None
        self.seen_keys: dict[str, httpx.Response] = {}
        self.lose_answers: dict[str, int] = {}  # endpoint → how many answers to lose after applying
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        body = json.loads(request.content or b"{}")
        key = request.headers.get("Idempotency-Key", "")
        with self.lock:
            self.calls.append((endpoint, key, body))
            answer = self.hook(endpoint, body)
            if answer is not None:
                return answer
            if key in self.seen_keys:  # the server's idempotency: replay, apply nothing
                response = self.seen_keys[key]
            else:
                response = self.seen_keys[key] = self.apply(endpoint, body)
            if self.lose_answers.get(endpoint, 0) > 0:
                self.lose_answers[endpoint] -= 1
                raise httpx.ReadTimeout("the answer never came")
            return response

    def apply(self, endpoint: str, body: dict[str, Any]) -> httpx.Response:
        if endpoint == "task-runs":
            self.tasks.extend(body["reports"])
            return httpx.Response(200, json={"results": [{"status": "ACCEPT"} for _ in body["reports"]]})
        if endpoint == "logs":
            new = [line for line in body["lines"] if line["sequence"] not in self.lines]
            self.lines.update((line["sequence"], line) for line in new)
            return httpx.Response(200, json={"count": len(new)})
        if endpoint == "set-state":
            self.flow_states.append(body["state"]["type"])
            return httpx.Response(200, json={"status": "ACCEPT", "state": {"type": body["state"]["type"]}})
        if endpoint == "heartbeat":
            return httpx.Response(200, json={"cancellation_requested": False})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "Not found."}})


def reporter(server: FakeServer, tmp_path: Path, **kwargs: Any) -> RunReporter:
    client = Client("http://fd.test", "fd_agent", "acme", transport=httpx.MockTransport(server),
                    backoff_base=0.001, backoff_max=0.005)
    options: dict[str, Any] = {"flush_interval": 0.01, "heartbeat_interval": None, "retry_interval_max": 0.05}
    options.update(kwargs)
    return RunReporter(client, "run-1", 2, spool_dir=tmp_path, **options)


def unavailable() -> httpx.Response:
    return httpx.Response(503, json={"error": {"code": "unavailable", "message": "down"}})


def test_a_batch_is_resent_with_the_same_key_until_the_server_has_it(tmp_path: Path) -> None:
    server = FakeServer()
    failures = {"left": 7}

    def down_for_a_while(endpoint: str, body: dict[str, Any]) -> httpx.Response | None:
        if endpoint == "task-runs" and failures["left"] > 0:
            failures["left"] -= 1
            return unavailable()
        return None

    server.hook = down_for_a_while
    rep = reporter(server, tmp_path)
    rep.task_state("a", -1, Running())
    rep.task_state("a", -1, Success())
    assert rep.close(timeout=10)
    keys = [key for endpoint, key, _ in server.calls if endpoint == "task-runs"]
    assert len(keys) == 8 and len(set(keys)) == 1
    assert [r["state"]["type"] for r in server.tasks] == ["RUNNING", "COMPLETED"]
    assert rep.stats["spooled_batches"] >= 1


def test_a_lost_answer_is_replayed_not_reapplied(tmp_path: Path) -> None:
    server = FakeServer()
    server.lose_answers["task-runs"] = 2
    rep = reporter(server, tmp_path)
    rep.task_state("a", -1, Running())
    assert rep.close(timeout=10)
    assert [r["task_key"] for r in server.tasks] == ["a"]  # applied once, though sent three times
    assert len([c for c in server.calls if c[0] == "task-runs"]) == 3


def test_too_large_batches_are_split(tmp_path: Path) -> None:
    server = FakeServer()
    server.hook = lambda endpoint, body: (
        httpx.Response(413, json={"error": {"code": "request_too_large", "message": "too big"}})
        if endpoint == "task-runs" and len(body["reports"]) > 3 else None)
    rep = reporter(server, tmp_path, start=False)
    for i in range(10):
        rep.task_state(f"t{i}", -1, Running())
    rep.start()
    assert rep.close(timeout=10)
    assert [r["task_key"] for r in server.tasks] == [f"t{i}" for i in range(10)]


def test_wait_is_proposed_again_with_a_new_key_and_holds_the_run(tmp_path: Path) -> None:
    server = FakeServer()
    waits = {"left": 2}

    def concurrency_full(endpoint: str, body: dict[str, Any]) -> httpx.Response | None:
        if endpoint == "set-state" and waits["left"] > 0:
            waits["left"] -= 1
            return httpx.Response(200, json={"status": "WAIT", "state": {"type": "PENDING"}, "reason": "full",
                                             "details": {}, "retry_after_seconds": 0})
        return None

    server.hook = concurrency_full
    rep = reporter(server, tmp_path)
    rep.flow_state(Running())  # returns only once the server accepted RUNNING
    assert server.flow_states == ["RUNNING"]
    keys = [key for endpoint, key, _ in server.calls if endpoint == "set-state"]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert rep.close(timeout=5)


def test_running_is_not_held_while_the_server_is_unreachable(tmp_path: Path) -> None:
    server = FakeServer()
    server.hook = lambda endpoint, body: unavailable()
    rep = reporter(server, tmp_path)
    started = time.monotonic()
    rep.flow_state(Running())
    assert time.monotonic() - started < 5
    assert rep.close(timeout=0.5) is False  # still undelivered: it stays on disk
    assert list((tmp_path / "run-1.2").glob("*.json"))


def test_closing_before_delivery_keeps_every_report_on_disk(tmp_path: Path) -> None:
    server = FakeServer()
    rep = reporter(server, tmp_path, start=False)  # the sender never ran: nothing was sent
    rep.flow_state(Running())
    rep.task_state("a", -1, Running())
    rep.task_state("a", -1, Success())
    assert rep.close(timeout=0) is False
    assert server.calls == []
    batches = Spool(tmp_path / "run-1.2").batches()
    # Combined reports: RUNNING in one, then the task states that followed it.
    assert [(batch.kind, len(batch)) for batch in batches] == [("report", 1), ("report", 2)]
    assert batches[0].payload == {"state": {"type": "RUNNING", "name": "Running"}}


def test_leftovers_on_disk_are_delivered_first_by_the_next_reporter(tmp_path: Path) -> None:
    server = FakeServer()
    server.hook = lambda endpoint, body: unavailable()
    first = reporter(server, tmp_path)
    log = logging.getLogger("flows.leftovers")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(first.log_handler)
    first.flow_state(Running())
    log.info("before the crash")
    first.task_state("a", -1, Running())
    assert first.close(timeout=0.5) is False
    log.removeHandler(first.log_handler)

    server.hook = lambda endpoint, body: None  # the server is back
    second = reporter(server, tmp_path)
    log.addHandler(second.log_handler)
    log.info("after the restart")
    second.task_state("a", -1, Success())
    second.flow_state(Success())
    assert second.close(timeout=10)
    log.removeHandler(second.log_handler)
    assert server.flow_states == ["RUNNING", "COMPLETED"]
    assert [r["state"]["type"] for r in server.tasks] == ["RUNNING", "COMPLETED"]
    assert [(seq, line["message"]) for seq, line in sorted(server.lines.items())] == [
        (2_000_000_001, "before the crash"), (2_000_000_002, "after the restart")]
    assert not (tmp_path / "run-1.2").exists()


@pytest.mark.parametrize("status", [401, 403, 404, 409])
def test_fatal_answers_abort_the_reporter(tmp_path: Path, status: int) -> None:
    server = FakeServer()
    server.hook = lambda endpoint, body: httpx.Response(
        status, json={"error": {"code": "stale_attempt", "message": "over"}}) if endpoint == "task-runs" else None
    rep = reporter(server, tmp_path)
    rep.task_state("a", -1, Running())
    deadline = time.monotonic() + 5
    while not rep.aborted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rep.aborted and rep.cancel_requested()
    rep.task_state("b", -1, Running())  # nothing more is sent for this attempt
    assert rep.close(timeout=2) is False
    assert len([c for c in server.calls if c[0] == "task-runs"]) == 1


def test_an_invalid_batch_is_dropped_and_the_rest_still_flows(tmp_path: Path) -> None:
    server = FakeServer()
    server.hook = lambda endpoint, body: httpx.Response(
        400, json={"error": {"code": "invalid_report", "message": "bad key"}}) \
        if endpoint == "task-runs" and body["reports"][0]["task_key"] == "bad" else None
    rep = reporter(server, tmp_path)
    rep.task_state("bad", -1, Running())
    time.sleep(0.2)
    rep.task_state("good", -1, Running())
    assert rep.close(timeout=5)
    assert [r["task_key"] for r in server.tasks] == ["good"]
    assert rep.stats["dropped_batches"] == 1


def test_log_lines_name_their_task_and_fall_back_when_the_server_refuses_it(tmp_path: Path) -> None:
    server = FakeServer()
    refusals: list[Any] = []

    def no_task_keys(endpoint: str, body: dict[str, Any]) -> httpx.Response | None:
        if endpoint == "logs" and any("task_key" in line for line in body["lines"]):
            refusals.append(body)
            details = {"lines": [{"task_key": ["Unknown field."], "map_index": ["Unknown field."]}]}
            return httpx.Response(400, json={"error": {"code": "invalid", "message": "lines: Unknown field.",
                                                       "details": details}})
        return None

    server.hook = no_task_keys
    rep = reporter(server, tmp_path)
    log = logging.getLogger("flows.task_keys")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(rep.log_handler)
    try:
        with context(task_key="extract", map_index=3):
            log.info("in a task")
        log.warning("outside")
        assert rep.close(timeout=5)
    finally:
        log.removeHandler(rep.log_handler)
    assert refusals and refusals[0]["lines"][0]["task_key"] == "extract"
    assert refusals[0]["lines"][0]["map_index"] == 3
    assert [(line["message"], line["level"], line["logger"]) for _, line in sorted(server.lines.items())] == [
        ("in a task", 20, "flows.task_keys"), ("outside", 30, "flows.task_keys")]
    assert rep.log_task_keys is False


def test_the_log_handler_ignores_the_http_stack_and_the_reporters_own_threads(tmp_path: Path) -> None:
    server = FakeServer()
    rep = reporter(server, tmp_path)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)  # httpx logs every request at INFO: none of that may come back
    root.addHandler(rep.log_handler)
    try:
        logging.getLogger("user").info("mine")
        rep.task_state("a", -1, Running())
        time.sleep(0.3)
        assert rep.close(timeout=5)
    finally:
        root.removeHandler(rep.log_handler)
        root.setLevel(previous)
    assert [line["message"] for line in server.lines.values()] == ["mine"]


@pytest.mark.alone  # measures CPU per call: another worker's tests would skew it
def test_reporting_costs_the_calling_thread_microseconds(tmp_path: Path) -> None:
    rep = reporter(FakeServer(), tmp_path, start=False)
    state = Success(result=41, result_ref="/r/x")
    count = 50_000
    started = time.perf_counter()
    for i in range(count):
        rep.task_state("task", i, state)
    per_call = (time.perf_counter() - started) / count
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per task_state"
    log = logging.getLogger("flows.cost")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(rep.log_handler)
    try:
        started = time.perf_counter()
        for i in range(10_000):
            log.info("row %d", i)
        per_line = (time.perf_counter() - started) / 10_000
    finally:
        log.removeHandler(rep.log_handler)
    assert per_line < 100e-6, f"{per_line * 1e6:.1f} µs per log line"
    rep.close(timeout=0)
