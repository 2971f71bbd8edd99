"""Prefect 1's package-level names: ``flowdeck.engine.FlowRunner``/``TaskRunner`` run flows and
tasks; ``flowdeck.Client`` is the REST client, with Prefect 1's ``register``,
``create_flow_run(run_name=, scheduled_start_time=)``, ``get_flow_run_info`` and
``get_flow_run_state`` against the real server. Importing ``flowdeck`` stays light (no httpx)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import flowdeck
import flowdeck.engine
from flowdeck import Flow, Parameter, task
from flowdeck.client.info import state_from_server
from flowdeck.engine import (
    FlowRunner,
    TaskRunner,
    flow_runner,
    get_default_flow_runner_class,
    get_default_task_runner_class,
    task_runner,
)
from flowdeck.engine.state import Cached, Crashed, Failed, Pending, Running, Scheduled, Success, TimedOut
from flowdeck.storage import Module
from tests.conftest import WorkspaceWorld
from tests.sdk.client.live import client_for


@task
def double(x: int) -> int:
    return 2 * x


def test_engine_runners_at_package_level_run_a_flow_and_a_task() -> None:
    assert FlowRunner is flow_runner.FlowRunner and TaskRunner is task_runner.TaskRunner
    assert get_default_flow_runner_class() is FlowRunner and get_default_task_runner_class() is TaskRunner
    assert flowdeck.engine.FlowRunner is FlowRunner
    with pytest.raises(AttributeError):
        _ = flowdeck.engine.NoSuchRunner  # type: ignore[attr-defined]

    with Flow("runner") as flow:
        x = Parameter("x", default=4)
        d = double(x)
    state = FlowRunner(flow=flow).run(parameters={"x": 21})
    assert state.is_successful() and state.result[d].result == 42
    assert TaskRunner(task=double).run().is_failed()  # no input given: the call fails, as a task run


def test_importing_flowdeck_does_not_import_the_http_client(tmp_path: Path) -> None:
    check = ("import sys, flowdeck, flowdeck.config, flowdeck.engine; assert 'httpx' not in sys.modules; "
             "from flowdeck.client.client import Client; assert flowdeck.Client is Client; "
             "import flowdeck.client; assert flowdeck.client.Client is Client; print('ok')")
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_server_states_become_state_objects() -> None:
    assert isinstance(state_from_server("COMPLETED", "Cached", "from cache"), Cached)
    assert state_from_server("COMPLETED", "Cached", "from cache").message == "from cache"
    assert isinstance(state_from_server("FAILED", "TimedOut"), TimedOut)
    assert isinstance(state_from_server("CRASHED", "Crashed"), Crashed)
    assert type(state_from_server("COMPLETED", "Something else")) is Success
    assert type(state_from_server("FAILED", None)) is Failed
    assert type(state_from_server("RUNNING", "Running")) is Running
    assert type(state_from_server(None, None)) is Pending
    assert state_from_server("COMPLETED", "Success", result_ref="[1]").result_ref == "[1]"


def test_prefect1_client_calls_against_the_server(live_server_url: str, live_world: WorkspaceWorld) -> None:
    client = client_for(live_server_url, live_world, "developer")
    assert isinstance(client, flowdeck.Client)
    with Flow("p1-etl", storage=Module("flows.p1_etl")) as flow:
        double(Parameter("x", default=1))

    flow_id = client.register(flow, project_name="legacy")
    assert client.get_flow(flow_id)["name"] == "p1-etl"
    assert client.register(flow, project_name="legacy") == flow_id  # unchanged: the same flow

    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    run = client.create_flow_run(flow_id=flow_id, parameters={"x": 5}, run_name="nightly backfill",
                                 scheduled_start_time=later)
    info = client.get_flow_run_info(run["id"])
    assert info.id == run["id"] and info.flow_id == flow_id and info.name == "nightly backfill"
    assert info.parameters == {"x": 5} and info.scheduled_start_time == later
    assert info.version == run["flow_version"] and info.task_runs == []
    assert isinstance(info.state, Scheduled)
    assert isinstance(client.get_flow_run_state(run["id"]), Scheduled)

    with pytest.raises(TypeError, match="name= or run_name="):
        client.create_flow_run(flow_id, name="a", run_name="b")
