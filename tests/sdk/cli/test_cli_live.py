"""The ``flowdeck`` console script, run as a subprocess against the real live server: login and its
config file, flows, runs (with --watch following a run that an agent-side RunReporter drives),
logs, cancel, agents, ``--output json`` and the documented exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowdeck.client import Client
from flowdeck.engine.state import Cancelled, Failed, Running, Success
from flowdeck.reporting import RunReporter
from tests.conftest import WorkspaceWorld
from tests.sdk.client.live import client_for, metadata
from tests.sdk.conftest import free_port

FLOWDECK = Path(sys.executable).parent / "flowdeck"


def cli(*args: str, env: dict[str, str], timeout: float = 60, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLOWDECK), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=cwd)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # stdout holds the JSON and nothing else


@pytest.fixture
def dev_env(sdk_env: dict[str, str], live_world: WorkspaceWorld) -> dict[str, str]:
    """The CLI configured by environment with a developer's key."""
    return {**sdk_env, "FLOWDECK_API_KEY": live_world.keys["developer"]}


@pytest.fixture
def bare_env(sdk_env: dict[str, str]) -> dict[str, str]:
    """The CLI with no settings at all (an empty FLOWDECK_HOME, no FLOWDECK_API_* variables)."""
    return {k: v for k, v in sdk_env.items() if k not in ("FLOWDECK_API_URL", "FLOWDECK_API_KEY",
                                                           "FLOWDECK_WORKSPACE")}


@pytest.fixture
def flow_id(live_server_url: str, live_world: WorkspaceWorld) -> str:
    developer = client_for(live_server_url, live_world, "developer")
    version, _ = developer.register_flow(project="data", name="etl", metadata=metadata(parameters=[
        {"name": name, "type": "any", "default": None, "required": False} for name in ("x", "y", "s", "j", "flag")]))
    return str(version["flow"])


def test_login_checks_the_key_and_saves_private_settings(
    bare_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, flow_id: str
) -> None:
    home = Path(bare_env["FLOWDECK_HOME"])
    result = cli("login", "--url", live_server_url, "--key", live_world.keys["developer"], env=bare_env)
    assert result.returncode == 0, result.stderr
    assert "workspace 'acme'" in result.stdout and "developer@acme.example.com" in result.stdout
    config = home / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert 'workspace = "acme"' in config.read_text()
    # Later commands need nothing else.
    assert [f["id"] for f in as_json(cli("flows", "list", "--output", "json", env=bare_env))] == [flow_id]


def test_login_refuses_a_bad_key_or_a_foreign_workspace(
    bare_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld
) -> None:
    result = cli("login", "--url", live_server_url, "--key", "fd_not_a_key", env=bare_env)
    assert result.returncode == 3
    assert "refused the API key" in result.stderr and result.stdout == ""
    result = cli("login", "--url", live_server_url, "--key", live_world.keys["agent"], "--workspace", "globex",
                 env=bare_env)
    assert result.returncode == 3
    assert "does not belong to workspace 'globex'" in result.stderr
    assert not (Path(bare_env["FLOWDECK_HOME"]) / "config.toml").exists()


def test_missing_settings_and_unreachable_servers_have_their_exit_codes(bare_env: dict[str, str]) -> None:
    result = cli("flows", "list", env=bare_env)
    assert result.returncode == 3
    assert "FLOWDECK_API_URL" in result.stderr and "flowdeck login" in result.stderr
    env = {**bare_env, "FLOWDECK_API_URL": f"http://127.0.0.1:{free_port()}", "FLOWDECK_API_KEY": "fd_x",
           "FLOWDECK_WORKSPACE": "acme"}
    result = cli("runs", "list", "-o", "json", env=env)
    assert result.returncode == 5
    assert "Could not reach Flowdeck" in result.stderr and result.stdout == ""


def test_a_role_without_the_right_gets_exit_code_3(sdk_env: dict[str, str], live_world: WorkspaceWorld,
                                                   flow_id: str) -> None:
    env = {**sdk_env, "FLOWDECK_API_KEY": live_world.keys["viewer"]}
    result = cli("run", "etl", env=env)
    assert result.returncode == 3
    assert "Permission denied" in result.stderr


def test_flows_list(dev_env: dict[str, str], flow_id: str) -> None:
    flows = as_json(cli("flows", "list", "-o", "json", env=dev_env))
    assert [(f["name"], f["project_name"], f["id"]) for f in flows] == [("etl", "data", flow_id)]
    text = cli("flows", "list", env=dev_env)
    assert text.returncode == 0 and "etl" in text.stdout and "data" in text.stdout
    assert as_json(cli("flows", "list", "--project", "nope", "-o", "json", env=dev_env)) == []


def test_run_passes_parameters_and_labels(dev_env: dict[str, str], flow_id: str) -> None:
    run = as_json(cli("run", "etl", "--param", "x=1", "--param", "s=hello world", "--param", 'j={"a": [1, 2]}',
                      "--param", "flag=true", "--params-json", '{"x": 0, "y": 2}', "--label", "prod",
                      "--name", "by-cli", "-o", "json", env=dev_env))
    assert run["flow"] == flow_id
    assert run["parameters"] == {"x": 1, "s": "hello world", "j": {"a": [1, 2]}, "flag": True, "y": 2}
    assert run["labels"] == ["prod"] and run["name"] == "by-cli" and run["state_type"] == "SCHEDULED"
    text = cli("run", flow_id, env=dev_env)
    assert text.returncode == 0 and "SCHEDULED" in text.stdout


def test_run_usage_and_lookup_errors(dev_env: dict[str, str], flow_id: str) -> None:
    result = cli("run", "etl", "--param", "novalue", env=dev_env)
    assert result.returncode == 2 and "NAME=VALUE" in result.stderr
    result = cli("run", "etl", "--params-json", "[1]", env=dev_env)
    assert result.returncode == 2 and "JSON object" in result.stderr
    result = cli("run", "nope", "-o", "json", env=dev_env)
    assert result.returncode == 4 and "No flow named 'nope'" in result.stderr and result.stdout == ""


def drive_run(url: str, world: WorkspaceWorld, flow: str, tmp: Path, outcome: str) -> None:
    """Act as the agent: claim the run the CLI created and report it to ``outcome``."""
    agent = Client(url, world.keys["agent"], world.workspace.slug)
    record = agent.register_agent("cli-test-agent", "process", [], "0.1.0", 5)
    deadline = time.monotonic() + 30
    claimed: list[dict[str, Any]] = []
    while not claimed and time.monotonic() < deadline:
        claimed = agent.claim(record["id"], limit=1, lease_seconds=60)
        time.sleep(0.2)
    assert claimed, "the CLI's run was never created"
    reporter = RunReporter(agent, claimed[0]["id"], claimed[0]["attempt"], spool_dir=tmp, heartbeat_interval=None)
    import logging

    log = logging.getLogger("flows.cli_test")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(reporter.log_handler)
    try:
        reporter.flow_state(Running())
        time.sleep(1.5)  # let the watcher see RUNNING
        reporter.task_state("extract", -1, Running())
        log.info("extracting rows")
        if outcome == "COMPLETED":
            reporter.task_state("extract", -1, Success())
            reporter.flow_state(Success("ok"))
        elif outcome == "FAILED":
            reporter.task_state("extract", -1, Failed("bad row"))
            log.error("extract failed")
            reporter.flow_state(Failed("extract failed"))
        else:
            reporter.task_state("extract", -1, Cancelled())
            reporter.flow_state(Cancelled("stopped"))
        assert reporter.close(timeout=30)
    finally:
        log.removeHandler(reporter.log_handler)


@pytest.mark.parametrize(("outcome", "code"), [("COMPLETED", 0), ("FAILED", 1), ("CANCELLED", 6)])
def test_run_watch_follows_states_and_logs_and_exits_with_the_outcome(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, flow_id: str, tmp_path: Path,
    outcome: str, code: int
) -> None:
    proc = subprocess.Popen([str(FLOWDECK), "run", "etl", "--watch", "--poll-interval", "0.2"], env=dev_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agent = threading.Thread(target=drive_run, args=(live_server_url, live_world, flow_id, tmp_path, outcome))
    agent.start()
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        agent.join(60)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert "flow run → PENDING" in stdout or "flow run → SCHEDULED" in stdout
    assert "flow run → RUNNING" in stdout
    assert f"flow run → {outcome}" in stdout
    assert "task extract → RUNNING" in stdout or "task extract →" in stdout
    assert "extracting rows" in stdout
    assert f"finished: {outcome}" in stdout
    if outcome == "FAILED":
        assert "ERROR" in stdout and "extract failed" in stdout


def test_run_watch_with_json_prints_only_the_final_run(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, flow_id: str, tmp_path: Path
) -> None:
    proc = subprocess.Popen([str(FLOWDECK), "run", "etl", "--watch", "--poll-interval", "0.2", "-o", "json"],
                            env=dev_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agent = threading.Thread(target=drive_run, args=(live_server_url, live_world, flow_id, tmp_path, "COMPLETED"))
    agent.start()
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        agent.join(60)
    assert proc.returncode == 0, stderr
    final = json.loads(stdout)
    assert final["state_type"] == "COMPLETED"
    assert [(t["task_key"], t["state_type"]) for t in final["task_runs"]] == [("extract", "COMPLETED")]


def test_runs_list_show_logs_and_cancel(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, flow_id: str, tmp_path: Path
) -> None:
    developer = client_for(live_server_url, live_world, "developer")
    older = developer.create_flow_run(flow_id, name="older")
    newer = developer.create_flow_run(flow_id, name="newer")

    runs = as_json(cli("runs", "list", "-o", "json", env=dev_env))
    assert [r["id"] for r in runs] == [newer["id"], older["id"]]
    assert [r["id"] for r in as_json(cli("runs", "list", "--limit", "1", "-o", "json", env=dev_env))] == [newer["id"]]
    assert len(as_json(cli("runs", "list", "--flow", "etl", "--state", "scheduled", "-o", "json", env=dev_env))) == 2
    text = cli("runs", "list", env=dev_env)
    assert text.returncode == 0 and "newer" in text.stdout and "etl" in text.stdout

    cancelled = as_json(cli("runs", "cancel", older["id"], "-o", "json", env=dev_env))
    assert cancelled["state_type"] == "CANCELLED"
    assert [r["id"] for r in as_json(cli("runs", "list", "--state", "CANCELLED", "-o", "json", env=dev_env))] \
        == [older["id"]]
    result = cli("runs", "cancel", older["id"], env=dev_env)
    assert result.returncode == 1 and "Error:" in result.stderr  # already finished: refused, not crashed

    # Logs of a run an agent reported (through the reporter, as under an agent).
    agent = Client(live_server_url, live_world.keys["agent"], live_world.workspace.slug)
    record = agent.register_agent("logs-agent", "process", [], "0.1.0", 5)
    [claimed] = agent.claim(record["id"], limit=1, lease_seconds=60)
    assert claimed["id"] == newer["id"]
    reporter = RunReporter(agent, newer["id"], claimed["attempt"], spool_dir=tmp_path, heartbeat_interval=None)
    import logging

    log = logging.getLogger("flows.logs_test")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(reporter.log_handler)
    reporter.flow_state(Running())
    for n in range(5):
        log.info("line %d", n)
    log.warning("careful")
    reporter.close(timeout=30)
    log.removeHandler(reporter.log_handler)

    lines = as_json(cli("runs", "logs", newer["id"], "-o", "json", env=dev_env))
    assert [line["message"] for line in lines] == [f"line {n}" for n in range(5)] + ["careful"]
    warnings = as_json(cli("runs", "logs", newer["id"], "--level", "WARNING", "-o", "json", env=dev_env))
    assert [line["message"] for line in warnings] == ["careful"]
    text = cli("runs", "logs", newer["id"], env=dev_env)
    assert "INFO     flows.logs_test: line 0" in text.stdout and "WARNING  flows.logs_test: careful" in text.stdout

    # --follow prints lines as they come and returns when the run has ended.
    follower = subprocess.Popen([str(FLOWDECK), "runs", "logs", newer["id"], "--follow", "--poll-interval", "0.2",
                                 "-o", "json"], env=dev_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    reporter2 = RunReporter(agent, newer["id"], claimed["attempt"], spool_dir=tmp_path, heartbeat_interval=None)
    log.addHandler(reporter2.log_handler)
    reporter2._log_count = 6  # the same process would continue its sequence
    log.info("late line")
    reporter2.flow_state(Success())
    reporter2.close(timeout=30)
    log.removeHandler(reporter2.log_handler)
    stdout, stderr = follower.communicate(timeout=30)
    assert follower.returncode == 0, stderr
    followed = [json.loads(line)["message"] for line in stdout.splitlines()]
    assert followed == [f"line {n}" for n in range(5)] + ["careful", "late line"]

    shown = as_json(cli("runs", "show", newer["id"], "-o", "json", env=dev_env))
    assert shown["state_type"] == "COMPLETED"
    assert cli("runs", "show", newer["id"], env=dev_env).stdout.startswith("Flow run newer")

    missing = cli("runs", "logs", "00000000-0000-0000-0000-000000000000", env=dev_env)
    assert missing.returncode == 4 and "Not found" in missing.stderr


def test_agents_list(dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld) -> None:
    assert as_json(cli("agents", "list", "-o", "json", env=dev_env)) == []
    assert "No agents registered" in cli("agents", "list", env=dev_env).stdout
    agent = Client(live_server_url, live_world.keys["agent"], live_world.workspace.slug)
    agent.register_agent("gpu-box", "docker", ["gpu"], "0.1.0", 5)
    [listed] = as_json(cli("agents", "list", "-o", "json", env=dev_env))
    assert (listed["name"], listed["type"], listed["labels"]) == ("gpu-box", "docker", ["gpu"])
    text = cli("agents", "list", env=dev_env).stdout
    assert "gpu-box" in text and "docker" in text


def test_every_command_has_help(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    root = cli("--help", env=env)
    assert root.returncode == 0 and "Exit codes" in root.stdout
    for command in (["login"], ["register"], ["run"], ["flows", "list"], ["runs", "list"], ["runs", "show"],
                    ["runs", "logs"], ["runs", "cancel"], ["agents", "list"], ["agent"], ["version"]):
        result = cli(*command, "--help", env=env)
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage" in result.stdout


FLOWS_FILE = '''
from flowdeck import Flow, Parameter, task

import helper_module  # a neighbour of this file: importable as with `python flows.py`


@task
def extract(day):
    return helper_module.rows(day)


@task(retries=2, retry_delay=None)
def load(rows):
    return len(rows)


with Flow("etl") as etl:
    day = Parameter("day", default="monday")
    load(extract(day))

with Flow("report") as report:
    load(extract("sunday"))
'''


def test_register_imports_a_file_and_registers_each_flow_once(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "flows.py").write_text(FLOWS_FILE)
    (code / "helper_module.py").write_text("def rows(day):\n    return [day]\n")

    first = as_json(cli("register", str(code / "flows.py"), "--project", "data", "-o", "json", env=dev_env))
    assert [(r["flow"], r["project"], r["version"], r["created"]) for r in first] == [
        ("etl", "data", 1, True), ("report", "data", 1, True)]
    again = cli("register", str(code / "flows.py"), "--project", "data", env=dev_env)
    assert again.returncode == 0, again.stderr
    assert "Flow 'etl' in project 'data': unchanged, still version 1" in again.stdout
    assert "Flow 'report' in project 'data': unchanged, still version 1" in again.stdout

    (code / "flows.py").write_text(FLOWS_FILE.replace('default="monday"', 'default="tuesday"'))
    changed = as_json(cli("register", str(code / "flows.py"), "-p", "data", "--name", "etl", "-o", "json",
                          env=dev_env))
    assert [(r["flow"], r["version"], r["created"]) for r in changed] == [("etl", 2, True)]

    developer = client_for(live_server_url, live_world, "developer")
    flow = developer.get_flow("etl")
    versions = developer._get(f"flows/{flow['id']}/versions/")["results"]
    latest = versions[0]
    assert latest["parameters"] == [{"name": "day", "type": "str", "default": "tuesday", "required": False}]
    assert latest["storage"]["type"] == "file" and latest["storage"]["path"] == str(code / "flows.py")
    assert {t["key"] for t in latest["tasks"]} >= {"extract", "load"}


def test_register_imports_a_module_by_name(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    package = tmp_path / "acme_flows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nightly.py").write_text(
        FLOWS_FILE.replace("import helper_module", "from acme_flows import helper_module")
    )
    (package / "helper_module.py").write_text("def rows(day):\n    return [day]\n")
    result = as_json(cli("register", "acme_flows.nightly", "--project", "ops", "--name", "report", "-o", "json",
                         env=dev_env, cwd=tmp_path))
    assert [(r["flow"], r["project"], r["created"]) for r in result] == [("report", "ops", True)]
    developer = client_for(live_server_url, live_world, "developer")
    flow = developer.get_flow("report", project="ops")
    [version] = developer._get(f"flows/{flow['id']}/versions/")["results"]
    assert version["storage"]["type"] == "module" and version["storage"]["module"] == "acme_flows.nightly"


def test_register_reports_what_went_wrong(dev_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS_FILE.replace("import helper_module", "import helper_module_missing"))
    broken = cli("register", str(tmp_path / "flows.py"), env=dev_env)
    assert broken.returncode == 1 and "Could not import" in broken.stderr and "helper_module_missing" in broken.stderr
    (tmp_path / "empty.py").write_text("X = 1\n")
    empty = cli("register", str(tmp_path / "empty.py"), env=dev_env)
    assert empty.returncode == 4 and "No Flow objects found" in empty.stderr
    (tmp_path / "helper_module.py").write_text("def rows(day):\n    return [day]\n")
    (tmp_path / "flows.py").write_text(FLOWS_FILE)
    wrong_name = cli("register", str(tmp_path / "flows.py"), "--name", "nope", env=dev_env)
    assert wrong_name.returncode == 4 and "No flow named 'nope'" in wrong_name.stderr and "'etl'" in wrong_name.stderr
    missing = cli("register", str(tmp_path / "nope.py"), env=dev_env)
    assert missing.returncode == 2 and "No such file" in missing.stderr
