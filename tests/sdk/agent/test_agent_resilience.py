"""Network errors never kill the agent: while the server is away it keeps its runs, backs off and
keeps trying; its own reports wait and are delivered once, with the same idempotency key, when the
server is back (D4, G4); a report for an attempt that is over changes nothing (D2)."""

from __future__ import annotations

import os
import signal

import httpx

from flowdeck.agent.base import ClaimedRun
from flowdeck.agent.process import ProcessAgent
from tests.sdk.agent.live import wait_for
from tests.sdk.agent.test_process_agent import HELLO, SLEEPY


def test_agent_started_while_the_server_is_down_registers_when_it_is_back(live, flowdeck_server):
    flowdeck_server.stop()
    try:
        handle = live.start_agent(ProcessAgent)
        wait_for(lambda: handle.agent.consecutive_failures >= 2, what="failed registrations")
        assert handle.thread.is_alive() and handle.agent.agent_id is None
    finally:
        flowdeck_server.start()
    wait_for(lambda: handle.agent.agent_id is not None, timeout=60, what="the registration")
    run_id = live.create_run(live.register("hello", HELLO))
    assert live.wait_state(run_id)["state_type"] == "COMPLETED"


def test_server_outage_does_not_stop_the_agent_and_its_crash_report_arrives_once(live, flowdeck_server):
    run_id = live.create_run(live.register("sleepy", SLEEPY))
    handle = live.start_agent(ProcessAgent)
    live.wait_state(run_id, "RUNNING")
    process = handle.agent.in_flight[run_id]

    flowdeck_server.stop()
    try:
        wait_for(lambda: handle.agent.consecutive_failures >= 2, what="failed heartbeats")
        assert handle.agent.health == "unreachable"
        os.killpg(process.pid, signal.SIGKILL)  # the run dies while nobody can be told
        wait_for(lambda: handle.agent.pending_reports, what="the crash report to wait")
        assert handle.thread.is_alive()
    finally:
        flowdeck_server.start()

    run = wait_for(lambda: (r := live.run(run_id))["attempt"] == 2 and r, timeout=60, what="the crash report")
    wait_for(lambda: handle.agent.pending_reports == [], what="the agent to drop the delivered report")
    crashes = [s for s in run["states"] if s["name"] == "AwaitingRetry"]
    assert len(crashes) == 1
    assert "killed by SIGKILL" in crashes[0]["message"]
    assert handle.agent.consecutive_failures == 0 and handle.thread.is_alive()


def test_a_report_for_an_attempt_that_is_over_changes_nothing(live):
    run_id = live.create_run(live.register("sleepy", SLEEPY))
    handle = live.start_agent(ProcessAgent, grace_period=0.5)
    live.wait_state(run_id, "RUNNING")
    first_attempt = handle.agent.in_flight[run_id].run
    os.killpg(handle.agent.in_flight[run_id].pid, signal.SIGKILL)
    wait_for(lambda: live.run(run_id)["attempt"] == 2, what="the retry")
    handle.stop()
    before = live.run(run_id)

    answer = handle.agent.propose(first_attempt, {"type": "FAILED", "name": "Failed", "message": "late"})

    assert answer is not None and answer["status"] == "ABORT"
    assert answer["details"]["code"] == "stale_attempt"
    after = live.run(run_id)
    assert (after["state_type"], after["state_version"], after["attempt"]) == (
        before["state_type"], before["state_version"], before["attempt"])
    assert isinstance(first_attempt, ClaimedRun) and first_attempt.attempt == 1


class LosesClaimAnswers(httpx.HTTPTransport):
    """The network between the agent and the server: the first ``lost`` claim requests reach the
    server, but their answers never come back."""

    def __init__(self, lost: int) -> None:
        super().__init__()
        self.lost = lost
        self.claim_keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/claim/"):
            self.claim_keys.append(request.headers["Idempotency-Key"])
            if self.lost > 0:
                self.lost -= 1
                response.read()
                response.close()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_a_claim_whose_answer_was_lost_is_replayed_not_lost(live):
    run_id = live.create_run(live.register("hello", HELLO))
    network = LosesClaimAnswers(lost=2)  # the client's try and its one retry both lose the answer
    handle = live.start_agent(ProcessAgent, client=live.agent_client(transport=network, retries=1,
                                                                        backoff_base=0.01))

    run = live.wait_state(run_id)
    assert (run["state_type"], run["attempt"]) == ("COMPLETED", 1)  # claimed once, never crashed
    assert network.claim_keys[0] == network.claim_keys[1] == network.claim_keys[2]
    assert handle.agent.consecutive_failures == 0
