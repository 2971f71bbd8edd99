"""Retry, backoff and error mapping of the client, with an in-process HTTP fake (httpx.MockTransport)
standing in for the network. What the real server answers is covered in test_live_client.py."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

import flowdeck
from flowdeck.client import (
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerUnavailableError,
)
from flowdeck.client.retry import backoff_delay, parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers requests from a script of responses (or exceptions) and records what it got."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)


def make_client(recorder: Recorder, **kwargs: object) -> Client:
    options: dict[str, object] = {"retries": 3, "backoff_base": 0.001, "backoff_max": 0.01}
    options.update(kwargs)
    return Client("http://fd.test", "fd_secret", "acme", transport=httpx.MockTransport(recorder), **options)  # type: ignore[arg-type]


def error(status: int, code: str, message: str, details: object = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "details": details or {}}},
                          headers=headers)


OK = httpx.Response(200, json={"count": 3})


def test_requests_carry_the_key_the_user_agent_and_the_workspace_path() -> None:
    recorder = Recorder(OK)
    assert make_client(recorder).send_logs("run-1", [{"sequence": 1}]) == 3
    request = recorder.requests[0]
    assert request.url == "http://fd.test/api/v1/workspaces/acme/flow-runs/run-1/logs/"
    assert request.headers["Authorization"] == "Bearer fd_secret"
    assert request.headers["User-Agent"] == f"flowdeck/{flowdeck.__version__}"
    assert json.loads(request.content) == {"lines": [{"sequence": 1}]}
    assert len(request.headers["Idempotency-Key"]) == 36  # a fresh uuid4 when none is given


def test_network_errors_are_retried_with_the_same_idempotency_key() -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), OK)
    count = make_client(recorder).send_logs("run-1", [{"sequence": 1}], idempotency_key="batch-7")
    assert count == 3
    assert len(recorder.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in recorder.requests} == {"batch-7"}
    assert len({r.content for r in recorder.requests}) == 1


def test_5xx_is_retried_then_reported_as_unavailable() -> None:
    recorder = Recorder(error(502, "bad_gateway", "upstream down"))
    with pytest.raises(ServerUnavailableError) as caught:
        make_client(recorder, retries=2).send_logs("run-1", [], idempotency_key="k")
    assert len(recorder.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in recorder.requests} == {"k"}
    assert caught.value.status == 502
    assert "HTTP 502" in str(caught.value) and "3 attempt" in str(caught.value)


def test_network_failure_after_every_retry_is_unavailable_with_the_address() -> None:
    recorder = Recorder(httpx.ConnectError("connection refused"))
    with pytest.raises(ServerUnavailableError, match=r"Could not reach Flowdeck at http://fd.test .*3 attempt"):
        make_client(recorder, retries=2).get_flow_run("r")
    assert len(recorder.requests) == 3


def test_429_waits_for_retry_after() -> None:
    recorder = Recorder(error(429, "rate_limited", "slow down", **{"Retry-After": "1"}), OK)
    started = time.monotonic()
    assert make_client(recorder).send_logs("run-1", []) == 3
    assert time.monotonic() - started >= 0.95
    assert len(recorder.requests) == 2


def test_429_after_every_retry_is_rate_limited_with_the_delay() -> None:
    recorder = Recorder(error(429, "rate_limited", "slow down", **{"Retry-After": "0"}))
    with pytest.raises(RateLimitedError) as caught:
        make_client(recorder, retries=1).send_logs("run-1", [])
    assert caught.value.retry_after == 0
    assert caught.value.code == "rate_limited"
    assert len(recorder.requests) == 2


def test_a_retry_after_too_long_to_wait_is_handed_to_the_caller() -> None:
    recorder = Recorder(error(503, "maintenance", "back soon", **{"Retry-After": "3600"}))
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError):
        make_client(recorder).send_logs("run-1", [])
    assert time.monotonic() - started < 1
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("status", "code", "exc_type", "text"),
    [
        (401, "api_key_expired", AuthenticationError, "flowdeck login"),
        (402, "quota_exceeded", PaymentRequiredError, "The server's own words."),
        (403, "permission_denied", PermissionDeniedError, "may not"),
        (404, "not_found", NotFoundError, "Not found"),
        (409, "stale_attempt", ConflictError, "Conflict (stale_attempt)"),
        (400, "invalid_metadata", InvalidRequestError, "Invalid request (invalid_metadata)"),
        (413, "request_too_large", InvalidRequestError, "Invalid request"),
        (422, "idempotency_key_reused", InvalidRequestError, "idempotency_key_reused"),
    ],
)
def test_client_errors_are_not_retried_and_keep_the_server_error(
    status: int, code: str, exc_type: type[Exception], text: str
) -> None:
    recorder = Recorder(error(status, code, "The server's own words.", {"tasks[0].key": ["Required."]}))
    with pytest.raises(exc_type) as caught:
        make_client(recorder).report_task_runs("run-1", attempt=1, reports=[{"task_key": "a"}])
    assert len(recorder.requests) == 1
    exc = caught.value
    assert exc.status == status  # type: ignore[attr-defined]
    assert exc.code == code  # type: ignore[attr-defined]
    assert exc.message and "The server's own words." in str(exc)  # type: ignore[attr-defined]
    if status == 402:  # a quota's message says which limit and how to raise it: shown as it is
        assert str(exc) == "The server's own words."
    assert exc.details == {"tasks[0].key": ["Required."]}  # type: ignore[attr-defined]
    assert text in str(exc)


def test_invalid_request_text_names_the_fields() -> None:
    recorder = Recorder(error(400, "invalid_metadata", "The flow metadata is invalid.",
                              {"tasks[0].key": ["Required."], "storage": ["Required: tell the agent."]}))
    with pytest.raises(InvalidRequestError) as caught:
        make_client(recorder).register_flow(project="p", name="f", metadata={})
    assert "tasks[0].key: Required." in str(caught.value)
    assert "storage: Required" in str(caught.value)


def test_a_non_json_error_body_still_gives_a_clear_error() -> None:
    recorder = Recorder(httpx.Response(404, text="<html>nope</html>"))
    with pytest.raises(NotFoundError, match="Not found: GET /api/v1/workspaces/acme/flow-runs/x/"):
        make_client(recorder).get_flow_run("x")


def test_set_state_returns_reject_and_abort_answers_without_raising() -> None:
    abort = {"status": "ABORT", "state": {"type": "PENDING", "name": "Pending", "version": 1}, "reason": "stale",
             "details": {"code": "stale_attempt"}, "error": {"code": "state_aborted", "message": "stale"}}
    recorder = Recorder(httpx.Response(409, json=abort))
    answer = make_client(recorder).set_flow_run_state("r", {"type": "RUNNING"}, attempt=2)
    assert answer["status"] == "ABORT"
    assert json.loads(recorder.requests[0].content) == {"state": {"type": "RUNNING"}, "attempt": 2}


def test_set_state_raises_for_a_stale_version() -> None:
    recorder = Recorder(error(409, "stale_state_version", "The run changed.", {"state": {"version": 4}}))
    with pytest.raises(ConflictError) as caught:
        make_client(recorder).set_flow_run_state("r", {"type": "RUNNING"}, attempt=1, expected_version=3)
    assert caught.value.code == "stale_state_version"


def test_the_workspace_is_discovered_from_the_key_once() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/workspaces/":
            return httpx.Response(200, json=[{"id": "w", "name": "Acme", "slug": "acme", "created_at": "x"}])
        return httpx.Response(200, json={"id": "r1"})

    recorder = Recorder(answer)
    client = Client("http://fd.test", "fd_secret", transport=httpx.MockTransport(recorder))
    assert client.get_flow_run("r1") == {"id": "r1"}
    assert client.get_flow_run("r1") == {"id": "r1"}
    assert [r.url.path for r in recorder.requests] == [
        "/api/v1/workspaces/", "/api/v1/workspaces/acme/flow-runs/r1/", "/api/v1/workspaces/acme/flow-runs/r1/"]


def test_listings_follow_the_cursor_and_stop_at_the_limit() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return httpx.Response(200, json={"next": "http://elsewhere/api?cursor=c2&limit=2",
                                             "results": [{"id": 1}, {"id": 2}]})
        assert cursor == "c2"
        return httpx.Response(200, json={"next": None, "results": [{"id": 3}]})

    recorder = Recorder(answer)
    client = make_client(recorder)
    assert [r["id"] for r in client.list_agents()] == [1, 2, 3]
    assert [r["id"] for r in client.list_flow_runs(state_type=["FAILED", "CRASHED"], limit=2)] == [1, 2]
    assert recorder.requests[-1].url.params["state_type"] == "FAILED,CRASHED"
    assert recorder.requests[-1].url.params["limit"] == "2"


def test_with_options_shares_the_connection_but_not_the_retry_budget() -> None:
    recorder = Recorder(httpx.ConnectError("refused"))
    client = make_client(recorder, retries=4)
    quick = client.with_options(retries=0)
    with pytest.raises(ServerUnavailableError):
        quick.get_flow_run("r")
    assert len(recorder.requests) == 1
    assert quick.workspace == "acme"


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base=0.5, cap=30, rng=rng) for n in range(10)]
    for n, delay in enumerate(delays):
        ceiling = min(30, 0.5 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[7:]}) > 1  # capped waits still differ (jitter)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
