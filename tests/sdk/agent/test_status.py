"""What the agent shows: a live ``rich`` panel on a terminal (agent, health, last heartbeat, runs in
flight with state and age), and structured log lines (logfmt or JSON) anywhere else."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import time

import pytest
from rich.console import Console

from flowdeck.agent.base import ClaimedRun
from flowdeck.agent.process import ProcessAgent, ProcessRunHandle
from flowdeck.agent.status import JsonFormatter, LiveStatus, LogfmtFormatter, LogStatus, configure_logging
from flowdeck.client import Client
from tests.sdk.agent.conftest import RUN_ID, claim_record


@pytest.fixture
def agent(tmp_path):
    client = Client("https://flowdeck.example.com", "fd_sa_secret", "acme")  # never contacted here
    agent = ProcessAgent(client, name="edge-1", labels=["prod", "gpu"], max_concurrent_runs=4)
    yield agent
    client.close()


@pytest.fixture
def running(tmp_path):
    """A real process standing for a run in flight."""
    process = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, start_new_session=True)
    handle = ProcessRunHandle(ClaimedRun.from_claim(claim_record()), process, tmp_path)
    yield handle
    handle.kill()
    handle.cleanup()


def record(message, **fields):
    rec = logging.LogRecord("flowdeck.agent", logging.WARNING, __file__, 1, message, None, None)
    rec.__dict__.update(fields)
    return rec


def test_logfmt_lines_quote_what_needs_it():
    line = LogfmtFormatter().format(record("Flow run x ended: exit code 1", event="run_finished",
                                           flow_run_id=RUN_ID, attempt=2, labels="a,b"))
    assert line.startswith("ts=")
    assert (' level=warning logger=flowdeck.agent msg="Flow run x ended: exit code 1" event=run_finished '
            f"flow_run_id={RUN_ID} attempt=2 labels=a,b") in line


def test_json_lines_carry_the_fields():
    data = json.loads(JsonFormatter().format(record("hello", event="registered", agent_name="edge-1")))
    assert data["msg"] == "hello" and data["event"] == "registered" and data["agent_name"] == "edge-1"
    assert data["level"] == "warning" and data["logger"] == "flowdeck.agent"


def test_log_status_events_are_structured_records(agent, running):
    stream = io.StringIO()
    configure_logging(live=False, log_format="json", stream=stream)
    try:
        status = LogStatus()
        status.run_started(running)
        status.run_finished(running, "CRASHED", "killed by SIGKILL")
    finally:
        logging.getLogger("flowdeck").handlers.clear()
    started, finished = (json.loads(line) for line in stream.getvalue().splitlines())
    assert started["event"] == "run_started" and started["flow_run_id"] == RUN_ID and started["attempt"] == 2
    assert finished["event"] == "run_finished" and finished["outcome"] == "CRASHED"
    assert finished["level"] == "warning" and finished["msg"] == "Flow run nightly-0042 ended: killed by SIGKILL"


def test_live_panel_shows_the_agent_and_its_runs(agent, running):
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    status = LiveStatus(console)
    agent.agent_id = "6f1c"
    agent.health = "healthy"
    agent.last_heartbeat_at = time.time() - 3
    agent.polls = 7
    agent.in_flight[running.run.id] = running
    status.refresh(agent)

    text = Console(width=100, record=True, file=io.StringIO())
    text.print(status.render(agent))
    panel = text.export_text()
    status.close()
    assert "edge-1" in panel and "labels: gpu, prod" in panel
    assert "health: healthy" in panel and "last heartbeat: 3s ago" in panel
    assert "runs: 1/4" in panel and "polls: 7" in panel
    assert "nightly-0042" in panel and RUN_ID[:8] in panel and "running" in panel

    running.cancel_requested_at = time.monotonic()
    text = Console(width=100, record=True, file=io.StringIO())
    text.print(status.render(agent))
    assert "cancelling" in text.export_text()
