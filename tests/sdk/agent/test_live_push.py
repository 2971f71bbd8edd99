"""The agent's live connection (``flowdeck.agent.live``): work and cancellations pushed over a
websocket instead of waiting for the next poll.

The first part drives the connection and the agent's claim loop against a small local websocket
server speaking the agent-socket protocol (hello, work_available now / at a time, cancel, close
codes), with the REST API answered in-process (httpx.MockTransport): reconnection and back-off,
timers for scheduled runs, the status. The second part (``test_real_…``) runs against the real
Flowdeck server and a real ``flowdeck agent start`` process.
"""

from __future__ import annotations

import datetime as dt
import heapq
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from flowdeck.agent.base import (
    CLAIM_LOOKAHEAD_SECONDS,
    TIMER_LEAD_SECONDS,
    Agent,
    ClaimedRun,
    RunExit,
    RunHandle,
)
from flowdeck.agent.live import (
    Backoff,
    CancelRun,
    LiveConnection,
    LiveState,
    WorkAvailable,
    parse_message,
    parse_time,
    websocket_url,
)
from flowdeck.agent.status import AgentStatus, LiveStatus, LogStatus
from flowdeck.client import Client
from tests.sdk.agent.conftest import claim_record
from tests.sdk.agent.live import wait_for
from tests.sdk.conftest import free_port

KEY = "fd_sa_pushkey"
WORKSPACE = "acme"
AGENT_ID = "6f1c0000-0000-4000-8000-0000000000aa"


# --- a local agent-socket server ---------------------------------------------------------------------


class FakeAgentSocketServer:
    """Speaks the agent-socket protocol on 127.0.0.1:<port>; can be stopped and started again on
    the same port. Refuses a handshake without the right key (HTTP 403, as Channels does)."""

    def __init__(self, port: int | None = None, *, close_code: int | None = None) -> None:
        self.port = port or free_port()
        self.close_code = close_code  # accept, then close at once with this code
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.handshakes: list[float] = []  # monotonic times of connection attempts
        self.conns: list[ServerConnection] = []
        self.received: list[dict[str, Any]] = []
        # When set, a handshake that arrives waits until it is set (see ``arrived``).
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAgentSocketServer:
        def process_request(conn: ServerConnection, request: Any) -> Any:
            self.handshakes.append(time.monotonic())
            self.paths.append(request.path)
            self.auth.append(request.headers.get("Authorization"))
            self.arrived.set()
            if self.hold is not None:
                self.hold.wait(10)
            if request.headers.get("Authorization") != f"Bearer {KEY}":
                return conn.respond(403, "Forbidden\n")
            return None

        self._server = serve(self._handler, "127.0.0.1", self.port, process_request=process_request)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _handler(self, conn: ServerConnection) -> None:
        if self.close_code is not None:
            conn.close(self.close_code, "refused")
            return
        with self._lock:
            self.conns.append(conn)
        conn.send(json.dumps({"type": "hello", "agent_id": AGENT_ID}))
        try:
            for raw in conn:
                message = json.loads(raw)
                self.received.append(message)
                if message.get("action") == "ping":
                    conn.send(json.dumps({"type": "pong"}))
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                if conn in self.conns:
                    self.conns.remove(conn)

    def push(self, message: dict[str, Any]) -> None:
        with self._lock:
            conns = list(self.conns)
        assert conns, "no agent connected"
        for conn in conns:
            conn.send(json.dumps(message))

    def connected(self) -> int:
        with self._lock:
            return len(self.conns)

    def stop(self) -> None:
        with self._lock:
            conns = list(self.conns)
        for conn in conns:
            conn.close(1001, "going away")
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None


@pytest.fixture
def socket_server() -> Iterator[FakeAgentSocketServer]:
    server = FakeAgentSocketServer().start()
    yield server
    server.stop()


# --- pure functions -----------------------------------------------------------------------------------


def test_websocket_url_maps_the_api_url():
    assert websocket_url("http://127.0.0.1:8000", "acme", AGENT_ID) == (
        f"ws://127.0.0.1:8000/ws/v1/workspaces/acme/agents/{AGENT_ID}/")
    # A path prefix the server is mounted under is kept; odd characters are escaped, never injected.
    assert websocket_url("https://fd.example.com/flowdeck/", "a b", "x/y") == (
        "wss://fd.example.com/flowdeck/ws/v1/workspaces/a%20b/agents/x%2Fy/")
    with pytest.raises(ValueError, match="http:// or https://"):
        websocket_url("ftp://example.com", "acme", AGENT_ID)


def test_messages_become_notices_and_the_rest_is_ignored():
    assert parse_message('{"type": "work_available", "labels": ["prod"], "at": null}') == WorkAvailable(("prod",), None)
    at = parse_message('{"type": "work_available", "labels": [], "at": "2030-01-01T00:00:01.500000Z"}')
    assert isinstance(at, WorkAvailable) and at.at == pytest.approx(1893456001.5)
    assert parse_message('{"type": "cancel", "flow_run_id": "r1"}') == CancelRun("r1")
    # hello, pong, an unknown type from a newer server, malformed or incomplete messages: nothing to do.
    for raw in ('{"type": "hello", "agent_id": "a"}', '{"type": "pong"}', '{"type": "shiny_new"}', "not json",
                "[1, 2]", '{"type": "cancel"}'):
        assert parse_message(raw) is None
    # An unreadable time is treated as "now" (claiming early is harmless; the server only hands out due runs).
    assert parse_message('{"type": "work_available", "at": "soon"}') == WorkAvailable((), None)
    assert parse_time("2030-01-01T00:00:00+01:00") == parse_time("2029-12-31T23:00:00Z")
    assert parse_time("2030-01-01T00:00:00") == parse_time("2030-01-01T00:00:00Z")  # naive = UTC


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap():
    top = Backoff(base=0.5, cap=8, rng=lambda: 0.0)  # no jitter drawn: the full delay
    assert [top.next() for _ in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    low = Backoff(base=0.5, cap=8, jitter=0.5, rng=lambda: 1.0)  # the most jitter: half the delay
    assert [low.next() for _ in range(5)] == [0.25, 0.5, 1, 2, 4]
    low.reset()
    assert low.next() == 0.25
    real = Backoff(base=1, cap=30)
    delays = [real.next() for _ in range(10)]
    assert all(0.5 * min(30, 2**i) <= d <= min(30, 2**i) for i, d in enumerate(delays))
    assert len(set(delays)) > 1  # jittered: agents cut off together do not come back together


# --- the connection against the local server ---------------------------------------------------------------


def notices_until(conn: LiveConnection, predicate: Callable[[list[Any]], bool], timeout: float = 10) -> list[Any]:
    seen: list[Any] = []

    def check() -> bool:
        seen.extend(conn.drain())
        return predicate(seen)

    wait_for(check, timeout=timeout, interval=0.01)
    return seen


def test_connection_authenticates_and_turns_pushes_into_notices(socket_server):
    url = websocket_url(socket_server.url, WORKSPACE, AGENT_ID)
    woken = threading.Event()
    conn = LiveConnection(url, KEY, wake=woken.set).start()
    try:
        notices_until(conn, lambda seen: LiveState(True) in seen)
        assert woken.is_set()
        assert socket_server.paths == [f"/ws/v1/workspaces/{WORKSPACE}/agents/{AGENT_ID}/"]
        assert socket_server.auth == [f"Bearer {KEY}"]  # the key travels in the header, never in the URL
        assert KEY not in socket_server.paths[0]
        socket_server.push({"type": "work_available", "labels": ["prod"], "at": None})
        socket_server.push({"type": "cancel", "flow_run_id": "run-1"})
        seen = notices_until(conn, lambda seen: CancelRun("run-1") in seen)
        assert seen == [WorkAvailable(("prod",), None), CancelRun("run-1")]
        assert conn.state.text == "connected"
    finally:
        conn.close()
    assert not conn._thread or not conn._thread.is_alive()


def test_a_refused_key_leaves_the_agent_polling_and_says_why(socket_server):
    conn = LiveConnection(websocket_url(socket_server.url, WORKSPACE, AGENT_ID), "fd_sa_wrong",
                          backoff=Backoff(base=0.05, cap=0.2)).start()
    try:
        seen = notices_until(conn, lambda seen: bool(seen))
        assert seen[0] == LiveState(False, "the server refused the connection (HTTP 403)")
        assert conn.state.text == "polling (the server refused the connection (HTTP 403))"
        wait_for(lambda: len(socket_server.handshakes) >= 3, what="retries")  # it keeps trying, backed off
    finally:
        conn.close()


def test_a_close_code_after_accepting_is_explained():
    server = FakeAgentSocketServer(close_code=4401).start()
    conn = LiveConnection(websocket_url(server.url, WORKSPACE, AGENT_ID), KEY,
                          backoff=Backoff(base=0.05, cap=0.1)).start()
    try:
        seen = notices_until(conn, lambda seen: bool(seen))
        # Never counted as connected: the server did not say hello.
        assert seen[0] == LiveState(False, "the server refused the agent's key: refused")
    finally:
        conn.close()
        server.stop()


def test_no_endpoint_and_no_server_are_explained():
    port = free_port()
    conn = LiveConnection(websocket_url(f"http://127.0.0.1:{port}", WORKSPACE, AGENT_ID), KEY,
                          backoff=Backoff(base=0.05, cap=0.1)).start()
    try:
        seen = notices_until(conn, lambda seen: bool(seen))
        assert seen[0] == LiveState(False, "cannot reach the server (connection refused)")
    finally:
        conn.close()

    # An HTTP server without the websocket route (an older Flowdeck): 404 on the handshake.
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotFound(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    conn = LiveConnection(websocket_url(f"http://127.0.0.1:{httpd.server_address[1]}", WORKSPACE, AGENT_ID), KEY,
                          backoff=Backoff(base=0.05, cap=0.1)).start()
    try:
        seen = notices_until(conn, lambda seen: bool(seen))
        assert seen[0] == LiveState(False, "the server has no live endpoint (HTTP 404)")
    finally:
        conn.close()
        httpd.shutdown()


def test_it_reconnects_with_backoff_when_the_server_goes_and_comes_back(socket_server):
    conn = LiveConnection(websocket_url(socket_server.url, WORKSPACE, AGENT_ID), KEY,
                          backoff=Backoff(base=0.1, cap=0.4, jitter=0), stable_after=60).start()
    try:
        notices_until(conn, lambda seen: LiveState(True) in seen)
        port = socket_server.port
        socket_server.stop()
        seen = notices_until(conn, lambda seen: any(isinstance(n, LiveState) and not n.connected for n in seen))
        assert seen[-1] == LiveState(False, "the server is going away")
        # Down for ~1.5 s: attempts at 0.1, 0.2, 0.4, 0.4… s intervals (exponential, capped), not a busy loop.
        time.sleep(1.5)
        back = FakeAgentSocketServer(port).start()
        try:
            notices_until(conn, lambda seen: LiveState(True) in seen, timeout=5)
            assert conn.connections == 2
            assert 2 <= conn.backoff.attempts <= 8
        finally:
            back.stop()
    finally:
        conn.close()


def test_close_stops_the_thread_promptly_even_while_backing_off():
    conn = LiveConnection(websocket_url(f"http://127.0.0.1:{free_port()}", WORKSPACE, AGENT_ID), KEY,
                          backoff=Backoff(base=30, cap=30)).start()
    notices_until(conn, lambda seen: bool(seen))
    began = time.monotonic()
    conn.close()
    assert time.monotonic() - began < 1
    assert conn._thread is not None and not conn._thread.is_alive()


def test_close_during_the_handshake_closes_the_new_socket_without_a_deprecation_warning(socket_server):
    # websockets (17.1 on) warns when a connection it returned is used without ``with``; a later
    # release will make ``connect()`` reconnect by itself. Here the socket opens only after
    # close() was called, the path where the connection is closed before it is read from.
    socket_server.hold = threading.Event()
    conn = LiveConnection(websocket_url(socket_server.url, WORKSPACE, AGENT_ID), KEY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conn.start()
        assert socket_server.arrived.wait(10)
        closer = threading.Thread(target=conn.close)
        closer.start()
        wait_for(conn._stop.is_set, timeout=5, what="close() to begin")
        socket_server.hold.set()  # the handshake completes after close() began
        closer.join(10)
    assert conn._thread is not None and not conn._thread.is_alive()
    assert conn.connections == 0 and conn.state == LiveState(False, "closed")
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == []
    wait_for(lambda: not socket_server.conns, timeout=5, what="the server to see the socket closed")


# --- the claim loop, woken by the socket -------------------------------------------------------------------


class FakeApi:
    """The REST side of the agent protocol, answered in-process. Runs become claimable at their
    ``due`` (wall clock); every claim is recorded with its time."""

    def __init__(self) -> None:
        self.due: list[tuple[float, str]] = []
        self.claims: list[tuple[float, int]] = []  # (time, how many runs it got)
        self.heartbeats: list[float] = []
        self.states: list[tuple[str, str]] = []
        self.cancel_ids: list[str] = []
        self.lock = threading.Lock()

    def add_run(self, due: float | None = None) -> str:
        run_id = str(uuid.uuid4())
        with self.lock:
            heapq.heappush(self.due, (time.time() if due is None else due, run_id))
        return run_id

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content or b"{}")
        if path.endswith("/agents/"):
            return httpx.Response(201, json={"id": AGENT_ID, "status": "healthy"})
        if path.endswith("/heartbeat/"):
            self.heartbeats.append(time.time())
            return httpx.Response(200, json={"status": "healthy", "cancel_flow_run_ids": list(self.cancel_ids)})
        if path.endswith("/claim/"):
            got = []
            now = time.time()
            horizon = now + body.get("lookahead_seconds", 0)  # the server's claim lookahead
            with self.lock:
                while self.due and self.due[0][0] <= horizon and len(got) < body["limit"]:
                    got.append(heapq.heappop(self.due))
            self.claims.append((now, len(got)))
            return httpx.Response(200, json={"results": [
                claim_record(id=r, name=f"run-{r[:4]}", scheduled_start=dt_iso(due),
                             lease_expires_at=dt_iso(now + body["lease_seconds"]))
                for due, r in got]})
        if path.endswith("/set-state/"):
            self.states.append((path.split("/")[-3], body["state"]["type"]))
            return httpx.Response(200, json={"status": "ACCEPT", "state": body["state"]})
        return httpx.Response(404, json={"detail": "not found"})


class FakeHandle(RunHandle):
    def __init__(self, run: ClaimedRun) -> None:
        super().__init__(run)
        self.launched_at = time.time()
        self.terminated_at: float | None = None
        self.finish = False

    def poll(self) -> RunExit | None:
        if self.terminated_at is not None or self.finish:
            return RunExit(0, "exit code 0")
        return None

    def terminate(self) -> None:
        self.terminated_at = time.time()

    def kill(self) -> None:
        self.terminated_at = self.terminated_at or time.time()


class FakeAgent(Agent):
    agent_type = "fake"

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.launched: dict[str, FakeHandle] = {}

    def check_run_config(self, run: ClaimedRun) -> None:
        pass

    def launch(self, run: ClaimedRun) -> RunHandle:
        handle = FakeHandle(run)
        self.launched[run.id] = handle
        return handle


class RecordingStatus(AgentStatus):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def event(self, name: str, message: str, level: int = 0, **fields: Any) -> None:
        self.events.append((name, fields))


@pytest.fixture
def run_agent(socket_server) -> Iterator[Callable[..., tuple[FakeAgent, FakeApi, RecordingStatus]]]:
    started: list[tuple[FakeAgent, threading.Thread, Client]] = []

    def start(**kwargs: Any) -> tuple[FakeAgent, FakeApi, RecordingStatus]:
        api = FakeApi()
        # The REST calls go to the in-process API; the websocket goes to the local server's port.
        client = Client(socket_server.url, KEY, WORKSPACE, transport=httpx.MockTransport(api), retries=0)
        status = RecordingStatus()
        agent = FakeAgent(client, name="edge", labels=["prod"], status=status,
                          **{"poll_interval": 30.0, "kill_grace": 5.0, "grace_period": 1.0, **kwargs})
        thread = threading.Thread(target=agent.start, daemon=True)
        thread.start()
        started.append((agent, thread, client))
        wait_for(lambda: api.claims, what="the first cycle")
        return agent, api, status

    yield start
    for agent, thread, client in started:
        agent.request_stop()
        agent.request_stop()
        thread.join(10)
        assert not thread.is_alive()
        assert agent.live is None  # the socket was closed on the way out
        client.close()


def test_pushed_work_is_claimed_at_once_not_at_the_next_poll(socket_server, run_agent):
    agent, api, status = run_agent()
    wait_for(lambda: agent.live_state == "connected", what="the live connection")
    assert ("live_connected", {"live": "connected"}) in status.events
    for _ in range(5):
        run_id = api.add_run()
        created = time.time()
        socket_server.push({"type": "work_available", "labels": ["prod"], "at": None})
        handle = wait_for(lambda: agent.launched.get(run_id), timeout=2, interval=0.005,
                          what="the pushed run to start")  # the poll interval is 30 s
        assert handle.launched_at - created < 0.2
        handle.finish = True
    assert agent.polls == 1  # no poll needed


def test_a_scheduled_run_is_claimed_at_its_time(socket_server, run_agent):
    agent, api, _ = run_agent()
    wait_for(lambda: agent.live_state == "connected", what="the live connection")
    due = time.time() + 0.8
    run_id = api.add_run(due)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(due)) + f".{int(due % 1 * 1e6):06d}Z"
    socket_server.push({"type": "work_available", "labels": ["prod"], "at": iso})
    handle = wait_for(lambda: agent.launched.get(run_id), timeout=3, interval=0.005, what="the scheduled run")
    # claimed and launched ahead of time (the lookahead), told to start the flow at its time
    assert handle.launched_at <= due
    assert handle.run.start_not_before is not None and abs(handle.run.start_not_before - due) < 0.05
    assert len(api.claims) == 2  # the first cycle, then exactly one claim for the scheduled time


def test_a_timed_claim_that_comes_early_looks_again_shortly(socket_server, run_agent):
    """The server's clock (or the run's commit) lags: the claim at ``at`` finds nothing; the agent
    retries after 50, 100, 250… ms instead of waiting for the poll."""
    agent, api, _ = run_agent()
    wait_for(lambda: agent.live_state == "connected", what="the live connection")
    at = time.time() + 1.3
    woken = at - TIMER_LEAD_SECONDS
    # claimable (within the claim's lookahead) only 120 ms after the agent wakes up for it
    run_id = api.add_run(woken + 0.12 + CLAIM_LOOKAHEAD_SECONDS)
    socket_server.push({"type": "work_available", "labels": [], "at": dt_iso(at)})
    handle = wait_for(lambda: agent.launched.get(run_id), timeout=3, interval=0.005, what="the late run")
    assert handle.launched_at - (woken + 0.12) < 0.2
    assert [n for _, n in api.claims[1:]][-1] == 1 and len(api.claims) >= 3


def dt_iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def test_work_for_other_labels_is_ignored(socket_server, run_agent):
    agent, api, _ = run_agent()
    wait_for(lambda: agent.live_state == "connected", what="the live connection")
    socket_server.push({"type": "work_available", "labels": ["gpu"], "at": None})
    socket_server.push({"type": "cancel", "flow_run_id": "sync"})  # a marker: the first was handled before it
    time.sleep(0.3)
    assert len(api.claims) == 1


def test_work_announced_while_every_slot_is_busy_is_claimed_when_one_frees(socket_server, run_agent):
    agent, api, _ = run_agent(max_concurrent_runs=1)
    wait_for(lambda: agent.live_state == "connected", what="the live connection")
    first = api.add_run()
    socket_server.push({"type": "work_available", "labels": [], "at": None})
    running = wait_for(lambda: agent.launched.get(first), timeout=2, what="the first run")
    second = api.add_run()
    socket_server.push({"type": "work_available", "labels": [], "at": None})
    time.sleep(0.3)
    assert second not in agent.launched  # no free slot
    running.finish = True
    wait_for(lambda: agent.launched.get(second), timeout=2, what="the second run when the slot freed")


def test_a_pushed_cancel_stops_the_run_at_once(socket_server, run_agent):
    agent, api, status = run_agent(kill_grace=60)
    wait_for(lambda: agent.live_state == "connected", what="the live connection")
    run_id = api.add_run()
    socket_server.push({"type": "work_available", "labels": [], "at": None})
    handle = wait_for(lambda: agent.launched.get(run_id), timeout=2, what="the run")
    asked = time.time()
    socket_server.push({"type": "cancel", "flow_run_id": run_id})
    wait_for(lambda: handle.terminated_at, timeout=2, interval=0.005, what="the run to be stopped")
    assert handle.terminated_at is not None and handle.terminated_at - asked < 0.2
    wait_for(lambda: (run_id, "CANCELLED") in api.states, what="the CANCELLED report")
    # A cancel for a run this agent does not hold is harmless.
    socket_server.push({"type": "cancel", "flow_run_id": "not-mine"})
    time.sleep(0.1)
    assert agent.live_state == "connected"


def test_socket_down_means_polling_and_back_means_a_catch_up_cycle(socket_server, run_agent):
    agent, api, status = run_agent(poll_interval=0.5)
    wait_for(lambda: agent.live_state == "connected", what="the live connection")
    assert agent.live is not None
    agent.live.backoff = Backoff(base=0.1, cap=0.2)
    port = socket_server.port
    socket_server.stop()
    wait_for(lambda: agent.live_state.startswith("polling ("), timeout=5, what="the agent to say it polls")
    # The close said why; the reconnection attempts that follow (0.1-0.2 s apart) may already have
    # replaced the current reason with "cannot reach the server", so the reason is read from the events.
    going_away = ("live_disconnected", {"live": "polling", "reason": "the server is going away"})
    wait_for(lambda: going_away in status.events, timeout=5, what="the disconnection and its reason")
    # Still working: a run created meanwhile is found by polling.
    run_id = api.add_run()
    wait_for(lambda: agent.launched.get(run_id), timeout=3, what="the run found by polling")
    back = FakeAgentSocketServer(port).start()
    try:
        polls = agent.polls
        wait_for(lambda: agent.live_state == "connected", timeout=5, what="the reconnection")
        wait_for(lambda: agent.polls > polls, timeout=1, what="a catch-up cycle after reconnecting")
        run_id = api.add_run()
        back.push({"type": "work_available", "labels": [], "at": None})
        wait_for(lambda: agent.launched.get(run_id), timeout=1, what="a pushed run after reconnecting")
    finally:
        back.stop()


def test_no_live_means_no_socket_and_the_status_says_polling(socket_server, run_agent):
    agent, api, _ = run_agent(live=False, poll_interval=0.3)
    time.sleep(0.5)
    assert socket_server.handshakes == [] and agent.live is None
    assert agent.live_state == "polling (live updates off)"
    run_id = api.add_run()
    wait_for(lambda: agent.launched.get(run_id), timeout=3, what="the run found by polling")


def test_the_panel_and_the_log_lines_show_the_live_state(caplog):
    client = Client("https://flowdeck.example.com", KEY, WORKSPACE)
    agent = FakeAgent(client, name="edge-1", live=False)
    with caplog.at_level(logging.DEBUG, logger="flowdeck.agent"):
        LogStatus().registered(agent)
        agent.live_state = "connected"
        LogStatus().heartbeat(agent)
    assert [r.__dict__["live"] for r in caplog.records] == ["polling (live updates off)", "connected"]
    status = LiveStatus(Console(file=io.StringIO()))
    for state in ("connected", "polling (the server is going away)"):
        agent.live_state = state
        text = Console(width=120, record=True, file=io.StringIO())
        text.print(status.render(agent))
        assert f"live: {state}" in text.export_text()
    status.close()
    client.close()


# --- against the real server and a real `flowdeck agent start` ------------------------------------------

FLOWDECK = str(Path(sys.executable).parent / "flowdeck")

MARK = """
@task
def mark(path, seconds):
    with open(path, "w") as f:  # the flow's code has started
        f.write(repr(time.time()))
    time.sleep(seconds)

with Flow("mark") as flow:
    mark(Parameter("path"), Parameter("seconds", default=0))
"""


class CliAgent:
    """``flowdeck agent start`` as a process, its JSON log lines read from a file."""

    def __init__(self, env: dict[str, str], tmp_path: Path, *args: str) -> None:
        self.err_path = tmp_path / "agent.err"
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen([FLOWDECK, "agent", "start", "--no-panel", "--log-format", "json", *args],
                                     env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=self._err)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.err_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_event(self, name: str, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            assert self.proc.poll() is None, f"the agent exited:\n{self.err_path.read_text()[-3000:]}"
            return next((e for e in self.events() if e.get("event") == name
                         and all(e.get(k) == v for k, v in fields.items())), None)

        return wait_for(found, timeout=timeout, interval=0.02, what=f"the agent's {name} event")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


@pytest.fixture
def cli_agent(sdk_env, tmp_path) -> Iterator[Callable[..., CliAgent]]:
    agents: list[CliAgent] = []

    def start(*args: str) -> CliAgent:
        agent = CliAgent(sdk_env, tmp_path, *args)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


def _ts(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["ts"]).timestamp()


def test_real_a_pushed_run_starts_long_before_the_poll_interval(live, cli_agent, tmp_path):
    flow_id = live.register("mark", MARK)
    agent = cli_agent("--poll-interval", "30")
    agent.wait_event("live_connected")
    time.sleep(0.3)  # past the first cycle: only a push can bring the next run before 30 s
    for i in range(3):
        marker = tmp_path / f"run-{i}.mark"
        created = time.time()
        run_id = live.create_run(flow_id, parameters={"path": str(marker)})
        started = float(wait_for(lambda: marker.exists() and marker.read_text(), timeout=5, interval=0.01,
                                 what="the flow's code to start"))
        assert started - created < 2, f"run {i} started {started - created:.2f}s after it was created"
        assert live.wait_state(run_id)["state_type"] == "COMPLETED"
    assert not [e for e in agent.events() if e.get("event") == "live_disconnected"]


STEPS = """
from flowdeck import unmapped

@task
def step(i, path):
    if i == 0:
        with open(path, "w") as f:
            f.write(repr(time.time()))
    time.sleep(0.2)

with Flow("steps") as flow:
    step.map(list(range(300)), unmapped(Parameter("path")))
"""


def test_real_cancellation_reaches_the_running_flow_within_a_second(live, cli_agent, tmp_path):
    """The cancel is pushed (the poll interval is 30 s): the agent signals the flow-run process at
    once, the flow stops between tasks and ends Cancelled by itself (no kill: --kill-grace 30)."""
    flow_id = live.register("steps", STEPS)
    agent = cli_agent("--poll-interval", "30", "--kill-grace", "30")
    agent.wait_event("live_connected")
    marker = tmp_path / "steps.mark"
    run_id = live.create_run(flow_id, parameters={"path": str(marker)})
    wait_for(lambda: marker.exists() and marker.read_text(), timeout=5, what="the flow's code to start")
    live.wait_state(run_id, "RUNNING")
    launched = next(e for e in agent.events() if e.get("pid") and e.get("flow_run_id") == run_id)
    pid = int(launched["pid"])

    asked = time.time()
    live.developer.cancel_flow_run(run_id)
    cancelling = agent.wait_event("cancelling", timeout=5, flow_run_id=run_id)
    assert _ts(cancelling) - asked < 1, "the cancellation took longer than a second to reach the agent"

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=10, interval=0.01, what="the flow-run process to stop")
    # Within a second to reach it, plus the task in progress (0.2 s) and the final reports.
    assert time.time() - asked < 3, f"the run's process stopped {time.time() - asked:.2f}s after the cancel call"
    run = live.wait_state(run_id, timeout=10)
    assert run["state_type"] == "CANCELLED", run
    assert not [e for e in agent.events() if e.get("event") == "killing"]
    finished = agent.wait_event("run_finished", flow_run_id=run_id)
    assert finished["outcome"] == "CANCELLED"


def test_real_server_outage_means_polling_then_reconnected(live, flowdeck_server, cli_agent, tmp_path):
    flow_id = live.register("mark", MARK)
    agent = cli_agent("--poll-interval", "1")
    agent.wait_event("live_connected")
    flowdeck_server.stop()
    try:
        down = agent.wait_event("live_disconnected", timeout=10)
        assert down["live"] == "polling" and down["reason"]
        time.sleep(2)  # the agent keeps running (and polling, failing) while the server is gone
        assert agent.proc.poll() is None
    finally:
        flowdeck_server.start()
    wait_for(lambda: len([e for e in agent.events() if e.get("event") == "live_connected"]) >= 2, timeout=60,
             what="the agent to reconnect")
    marker = tmp_path / "after.mark"
    created = time.time()
    live.create_run(flow_id, parameters={"path": str(marker)})
    started = float(wait_for(lambda: marker.exists() and marker.read_text(), timeout=10, interval=0.01,
                             what="a run after the outage"))
    assert started - created < 5
    heartbeats = [e for e in agent.events() if e.get("event") == "heartbeat"]
    assert heartbeats == [] or heartbeats[-1]["live"] == "connected"
