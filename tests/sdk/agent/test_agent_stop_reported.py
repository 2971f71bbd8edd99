"""A cleanly stopped agent says so: ``flowdeck agent start`` as a real process, on SIGTERM, finishes
(or hands back) its runs as before and then tells the server it stopped, so the API shows it
``stopped`` at once instead of healthy until its liveness window runs out (docs/agent-protocol.md).
An agent that cannot say so still exits cleanly; one stopped by a refused key does not claim a
clean stop."""

from __future__ import annotations

import signal
import time

import httpx

from flowdeck.agent.process import ProcessAgent
from flowdeck.client import Client
from tests.sdk.agent.live import wait_for
from tests.sdk.agent.test_agent_cli import log_lines, logfmt, start_cli
from tests.sdk.agent.test_process_agent import SLEEPY


def _status(live, name):  # type: ignore[no-untyped-def]
    return {a["name"]: a["status"] for a in live.developer.list_agents()}.get(name)


def test_sigterm_shows_the_agent_stopped_within_two_seconds(live, sdk_env, tmp_path):
    # given: a healthy agent
    agent = start_cli(sdk_env, tmp_path, "--name", "stopping-agent")
    wait_for(lambda: _status(live, "stopping-agent") == "healthy", what="the agent to be healthy")
    # when
    signalled = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    # then
    wait_for(lambda: _status(live, "stopping-agent") == "stopped", timeout=2.0, interval=0.05,
             what="the API to show the agent stopped")
    assert time.monotonic() - signalled < 2.0
    assert agent.wait(30) == 0
    assert "stopped" in [logfmt(line).get("event") for line in log_lines(tmp_path)]


def test_a_run_in_flight_still_finishes_before_the_agent_shows_stopped(live, sdk_env, tmp_path):
    # given: an agent running a 3-second run
    flow_id = live.register("sleepy", SLEEPY)
    run_id = live.create_run(flow_id, parameters={"seconds": 3})
    agent = start_cli(sdk_env, tmp_path, "--name", "draining-agent", "--grace-period", "30")
    live.wait_state(run_id, "RUNNING")
    # when
    agent.send_signal(signal.SIGTERM)
    # then: it drains as before (the run completes), and only then says it stopped
    assert agent.wait(30) == 0
    assert live.run(run_id)["state_type"] == "COMPLETED"
    assert _status(live, "draining-agent") == "stopped"
    events = [logfmt(line).get("event") for line in log_lines(tmp_path)]
    assert events.index("run_finished") < events.index("stopped")


class _Server:
    """The agent's REST calls answered in-process; ``stop_status`` is what POST …/stop/ answers."""

    def __init__(self, stop_status: int, heartbeat_status: int = 200) -> None:
        self.stop_status = stop_status
        self.heartbeat_status = heartbeat_status
        self.stops = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/agents/"):
            return httpx.Response(201, json={"id": AGENT_ID, "status": "healthy"})
        if path.endswith("/heartbeat/"):
            if self.heartbeat_status != 200:
                return httpx.Response(self.heartbeat_status, json={"error": {
                    "code": "api_key_revoked", "message": "This API key was revoked.", "details": {}}})
            return httpx.Response(200, json={"status": "healthy", "cancel_flow_run_ids": []})
        if path.endswith("/claim/"):
            return httpx.Response(200, json={"results": []})
        if path.endswith("/stop/"):
            self.stops += 1
            return httpx.Response(self.stop_status, json={"agent_id": AGENT_ID, "status": "stopped"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "Not found.", "details": {}}})


AGENT_ID = "6f1c0000-0000-4000-8000-000000000001"


def _agent(server: _Server, **options) -> ProcessAgent:  # type: ignore[no-untyped-def]
    client = Client("https://flowdeck.example.com", "fd_sa_test", "acme", transport=httpx.MockTransport(server),
                    retries=0)
    return ProcessAgent(client, name="unit", poll_interval=0.05, live=False, warm_processes=0, **options)


def test_a_clean_stop_is_reported_once():
    # given
    server = _Server(stop_status=200)
    agent = _agent(server, max_polls=2)
    # when
    code = agent.start()
    # then
    assert code == 0 and server.stops == 1 and agent.health == "stopped"


def test_a_stop_the_server_cannot_take_still_ends_the_agent_cleanly():
    # given: the server is down when the agent says it stops
    server = _Server(stop_status=503)
    agent = _agent(server, max_polls=1)
    # when
    code = agent.start()
    # then: the agent exits as before; the server sees it offline once its window ends
    assert code == 0 and server.stops == 1


def test_an_agent_stopped_by_a_refused_key_does_not_claim_a_clean_stop():
    # given: the server refuses the agent's key
    server = _Server(stop_status=200, heartbeat_status=401)
    agent = _agent(server)
    # when
    code = agent.start()
    # then
    assert code == 1 and server.stops == 0
