"""SLA alerts from the SDK's side, against the real live server: ``flowdeck register`` creates,
updates and removes the SLA policies a flow file declares, and ``flowdeck alerts list`` lists the
incidents a key may see (its workspace only, restricted projects left out), with ``--status``,
``--flow``, ``--json`` and pagination past one page."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.tenancy import rls_bypass
from flowdeck.cli import _ago
from flowdeck.client import InvalidRequestError
from orchestration.alerts.models import Incident, IncidentRun, NotificationChannel, SlaPolicy
from orchestration.models import Flow, FlowRun, FlowVersion
from tests.conftest import WorkspaceWorld, build_world
from tests.sdk.client.live import client_for, metadata

pytestmark = pytest.mark.postgres

FLOWDECK = Path(sys.executable).parent / "flowdeck"


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLOWDECK), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def dev_env(sdk_env: dict[str, str], live_world: WorkspaceWorld) -> dict[str, str]:
    return {**sdk_env, "FLOWDECK_API_KEY": live_world.keys["developer"]}


def flow_file(directory: Path, policies: str, *, name: str = "etl") -> Path:
    path = directory / "flows.py"
    path.write_text(textwrap.dedent(f'''
        from flowdeck import Flow, task
        from flowdeck.sla import AgentCoverage, Failures, FinishWithin, Freshness, PrestartFailure, StartWithin


        @task
        def extract():
            return 1


        with Flow({name!r}, labels=["gpu"], sla=[{policies}]) as flow:
            extract()
    '''))
    return path


def registered_policies(url: str, world: WorkspaceWorld, flow_id: str) -> dict[str, dict[str, Any]]:
    policies = client_for(url, world, "viewer").list_sla_policies()
    return {p["name"]: p for p in policies if p.get("flow_id") == flow_id}


def register(path: Path, env: dict[str, str]) -> dict[str, Any]:
    [item] = as_json(cli("register", str(path), "--project", "data", "-o", "json", env=env))
    return item  # type: ignore[no-any-return]


# --- registration -------------------------------------------------------------------------------


def test_register_creates_updates_and_removes_the_declared_policies(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    with rls_bypass():
        NotificationChannel.all_objects.create(workspace=live_world.workspace, name="ops", kind="webhook",
                                               config={"url": "https://hooks.example.com/ops"})
    first = ('StartWithin(minutes=10, action="cancel_run", channels=["ops"]), '
             'FinishWithin(hours=1, predictive=True), Failures(consecutive=3), AgentCoverage(minutes=5)')
    item = register(flow_file(tmp_path, first), dev_env)
    flow_id = item["flow_id"]
    policies = registered_policies(live_server_url, live_world, flow_id)
    assert sorted(policies) == ["etl: agent coverage", "etl: failures", "etl: finish within", "etl: start within"]
    start = policies["etl: start within"]
    assert (start["kind"], start["threshold_seconds"], start["action"], start["from_registration"]) == (
        "start", 600, "cancel_run", True)
    assert len(start["channel_ids"]) == 1
    duration = policies["etl: finish within"]
    assert (duration["kind"], duration["threshold_seconds"], duration["predictive"]) == ("duration", 3600, True)
    assert policies["etl: failures"]["consecutive_failures"] == 3
    assert policies["etl: agent coverage"]["agent_labels"] == ["gpu"]  # the flow's labels
    assert all(p["from_registration"] for p in policies.values())

    # One removed (agent coverage), one changed (3 → 5 failures), the others as they were.
    second = ('StartWithin(minutes=10, action="cancel_run", channels=["ops"]), '
              'FinishWithin(hours=1, predictive=True), Failures(consecutive=5, severity="warning")')
    again = register(flow_file(tmp_path, second), dev_env)
    # Policies are the flow's live settings, not part of its version: the same version, new policies.
    assert (again["flow_id"], again["version"], again["created"]) == (flow_id, 1, False)
    updated = registered_policies(live_server_url, live_world, flow_id)
    assert sorted(updated) == ["etl: failures", "etl: finish within", "etl: start within"]
    assert updated["etl: failures"]["id"] == policies["etl: failures"]["id"]  # updated in place, not re-created
    assert (updated["etl: failures"]["consecutive_failures"], updated["etl: failures"]["severity"]) == (5, "warning")
    assert updated["etl: start within"] == policies["etl: start within"]  # untouched: not even updated_at

    # Unchanged code keeps its policies as they are; declaring none removes them all.
    unchanged = cli("register", str(flow_file(tmp_path, second)), "--project", "data", env=dev_env)
    assert unchanged.returncode == 0, unchanged.stderr
    assert ("Flow 'etl' in project 'data': unchanged, still version 1 (flow id "
            f"{flow_id}); SLA policies: failures, finish within, start within") in unchanged.stdout
    assert registered_policies(live_server_url, live_world, flow_id) == {
        name: {**policy, "active_incident_count": 0} for name, policy in updated.items()}
    register(flow_file(tmp_path, ""), dev_env)
    assert registered_policies(live_server_url, live_world, flow_id) == {}


def test_going_back_to_earlier_code_brings_its_policies_back(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    # Version 1 declares a policy; version 2 changes a task and declares none; version 1's code
    # registered again (a reverted commit, redeployed) reuses version 1, and its policy is back.
    flow_id = register(flow_file(tmp_path, "Freshness(hours=24)"), dev_env)["flow_id"]
    changed = flow_file(tmp_path, "")
    changed.write_text(changed.read_text().replace("@task\n", "@task(retries=1)\n"))
    assert register(changed, dev_env)["version"] == 2
    assert registered_policies(live_server_url, live_world, flow_id) == {}
    back = register(flow_file(tmp_path, "Freshness(hours=24)"), dev_env)
    assert (back["version"], back["created"]) == (1, False)
    assert sorted(registered_policies(live_server_url, live_world, flow_id)) == ["etl: freshness"]


def test_register_names_unknown_channels_and_writes_nothing(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    result = cli("register", str(flow_file(tmp_path, 'Failures(channels=["nope", "pager"])')), "-p", "data",
                 env=dev_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nope" in result.stderr and "pager" in result.stderr
    # Nothing half-written: no version, no policy.
    with rls_bypass():
        assert not FlowVersion.all_objects.filter(workspace=live_world.workspace, flow__name="etl").exists()
        assert not SlaPolicy.all_objects.filter(workspace=live_world.workspace).exists()


def test_a_viewer_cannot_register_policies(
    sdk_env: dict[str, str], live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    env = {**sdk_env, "FLOWDECK_API_KEY": live_world.keys["viewer"]}
    result = cli("register", str(flow_file(tmp_path, "Failures()")), env=env)
    assert result.returncode == 3 and "Permission denied" in result.stderr
    with rls_bypass():
        assert not SlaPolicy.all_objects.filter(workspace=live_world.workspace).exists()


def test_register_refuses_a_bad_declaration_before_calling_the_server(
    dev_env: dict[str, str], live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    result = cli("register", str(flow_file(tmp_path, "StartWithin(seconds=20)")), env=dev_env)
    assert result.returncode == 1
    assert "Could not import" in result.stderr and "at least 1 minute" in result.stderr
    result = cli("register", str(flow_file(tmp_path, 'Failures(action="reboot")')), env=dev_env)
    assert result.returncode == 1 and "'reboot') is not an action" in result.stderr
    with rls_bypass():
        assert not FlowVersion.all_objects.filter(workspace=live_world.workspace).exists()


# --- alerts list --------------------------------------------------------------------------------


def incident(world: WorkspaceWorld, *, flow: Flow | None, title: str, status: str = "open",
             opened_minutes_ago: float = 5, runs: list[FlowRun] | None = None, **fields: Any) -> Incident:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "workspace": world.workspace, "policy_name": "etl: start within", "kind": "start",
        "subject_key": f"test:{title}", "flow": flow, "title": title, "status": status,
        "opened_at": now - timedelta(minutes=opened_minutes_ago),
    }
    if status == "acknowledged":
        values.update(acknowledged_at=now, acknowledged_by="developer@acme.example.com")
    if status == "resolved":
        values["resolved_at"] = now
    values.update(fields)
    with rls_bypass():
        created = Incident.all_objects.create(**values)
        for run in runs or []:
            IncidentRun.all_objects.create(workspace=world.workspace, incident=created, flow_run=run)
    return created


def registered_flow(url: str, world: WorkspaceWorld, name: str, project: str = "data") -> tuple[Flow, list[FlowRun]]:
    developer = client_for(url, world, "developer")
    version, _ = developer.register_flow(project=project, name=name, metadata=metadata())
    runs = [developer.create_flow_run(version["flow"]) for _ in range(3)]
    with rls_bypass():
        flow = Flow.all_objects.get(pk=version["flow"])
        return flow, list(FlowRun.all_objects.filter(pk__in=[r["id"] for r in runs]))


def test_alerts_list_shows_the_workspaces_incidents_by_status_and_flow(
    dev_env: dict[str, str], sdk_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld
) -> None:
    etl, runs = registered_flow(live_server_url, live_world, "etl")
    report, _ = registered_flow(live_server_url, live_world, "report")
    late = incident(live_world, flow=etl, title="3 runs of etl started late", runs=runs, severity="critical",
                    cause="No live agent covers the labels gpu", opened_minutes_ago=90)
    acked = incident(live_world, flow=report, title="report failed", kind="failure", severity="warning",
                     status="acknowledged", policy_name="report: failures", opened_minutes_ago=3)
    old = incident(live_world, flow=etl, title="etl is stale", kind="freshness", status="resolved",
                   opened_minutes_ago=3 * 24 * 60)
    other = build_world("globex")
    other_flow, _ = registered_flow(live_server_url, other, "etl")
    incident(other, flow=other_flow, title="globex's own alert")

    viewer_env = {**sdk_env, "FLOWDECK_API_KEY": live_world.keys["viewer"]}  # Viewers see alerts
    active = as_json(cli("alerts", "list", "--json", env=viewer_env))
    assert [i["id"] for i in active] == [str(acked.id), str(late.id)]  # newest first; globex's never
    first = active[1]
    assert {k: first[k] for k in ("policy_name", "kind", "severity", "title", "cause", "status", "flow_id",
                                  "flow_name", "run_count")} == {
        "policy_name": "etl: start within", "kind": "start", "severity": "critical",
        "title": "3 runs of etl started late", "cause": "No live agent covers the labels gpu", "status": "open",
        "flow_id": str(etl.id), "flow_name": "etl", "run_count": 3}
    assert set(first) >= {"id", "policy_id", "opened_at", "acknowledged_at", "resolved_at", "snoozed_until"}

    def ids(*args: str) -> list[str]:
        return [i["id"] for i in as_json(cli("alerts", "list", *args, "-o", "json", env=dev_env))]

    assert ids("--status", "open") == [str(late.id)]
    assert ids("--status", "acknowledged") == [str(acked.id)]
    assert ids("--status", "resolved") == [str(old.id)]
    assert ids("--status", "all") == [str(acked.id), str(late.id), str(old.id)]
    assert ids("--status", "all", "--flow", "etl") == [str(late.id), str(old.id)]
    assert ids("--flow", str(report.id)) == [str(acked.id)]

    text = cli("alerts", "list", env=viewer_env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["SEVERITY", "STATUS", "TITLE", "CAUSE", "FLOW", "RUNS", "OPENED"]
    assert "warning" in lines[1] and "acknowledged" in lines[1] and "report failed" in lines[1]
    assert "3 min ago" in lines[1]
    row = " ".join(lines[2:])
    assert "critical" in row and "No live agent covers the labels gpu" in row and "1 h ago" in row
    assert "globex" not in text.stdout and "etl is stale" not in text.stdout


def test_alerts_list_says_so_when_there_are_none_and_checks_its_options(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld
) -> None:
    registered_flow(live_server_url, live_world, "etl")
    none = cli("alerts", "list", env=dev_env)
    assert none.returncode == 0, none.stderr
    assert "No active SLA alerts (see earlier ones with --status all)." in none.stdout
    flow_none = cli("alerts", "list", "--flow", "etl", "--status", "resolved", env=dev_env)
    assert flow_none.returncode == 0 and "No resolved SLA alerts for flow 'etl'." in flow_none.stdout
    assert as_json(cli("alerts", "list", "--json", env=dev_env)) == []
    with pytest.raises(InvalidRequestError, match="Unknown incident status 'closed'"):
        client_for(live_server_url, live_world, "viewer").list_incidents(status="closed")
    unknown_flow = cli("alerts", "list", "--flow", "nope", env=dev_env)
    assert unknown_flow.returncode == 4 and "No flow named 'nope'" in unknown_flow.stderr
    bad_status = cli("alerts", "list", "--status", "closed", env=dev_env)
    assert bad_status.returncode == 2 and "closed" in bad_status.stderr
    # The Agent role is for agents only: it cannot read alerts.
    agent = cli("alerts", "list", env={**dev_env, "FLOWDECK_API_KEY": live_world.keys["agent"]})
    assert agent.returncode == 3 and "Permission denied" in agent.stderr
    helped = cli("alerts", "list", "--help", env={**dev_env, "COLUMNS": "200"})
    assert helped.returncode == 0 and "--status" in helped.stdout and "--json" in helped.stdout


def test_alerts_list_follows_the_cursor_past_one_page(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld
) -> None:
    etl, _ = registered_flow(live_server_url, live_world, "etl")
    now = datetime.now(UTC)
    with rls_bypass():
        Incident.all_objects.bulk_create([
            Incident(workspace=live_world.workspace, policy_name="etl: failures", kind="failure",
                     subject_key=f"run:{n}", flow=etl, title=f"failure {n}", opened_at=now - timedelta(seconds=n))
            for n in range(230)
        ])
    listed = as_json(cli("alerts", "list", "--limit", "1000", "--json", env=dev_env))
    assert [i["title"] for i in listed] == [f"failure {n}" for n in range(230)]
    assert len(as_json(cli("alerts", "list", "--json", env=dev_env))) == 50  # the default limit
    assert len(client_for(live_server_url, live_world, "viewer").list_incidents(limit=None)) == 230


def test_relative_times_read_like_a_person_would_say_them() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert _ago("2026-12-03T11:59:30Z", now) == "just now"
    assert _ago("2026-12-03T11:55:00+00:00", now) == "5 min ago"
    assert _ago("2026-12-03T09:00:00+00:00", now) == "3 h ago"
    assert _ago("2026-11-30T12:00:00+00:00", now) == "3 d ago"
    assert _ago(None, now) == "-"


# --- the whole story ----------------------------------------------------------------------------


def test_a_declared_policy_opens_an_alert_the_cli_lists_and_it_resolves_by_itself(
    dev_env: dict[str, str], live_server_url: str, live_world: WorkspaceWorld, tmp_path: Path
) -> None:
    """Register a flow whose runs need a "gpu" agent with StartWithin(minutes=5); three runs wait
    with no agent for them; the evaluator (at an explicit time) opens one incident naming the cause,
    which `flowdeck alerts list` shows; the runs are cancelled and the next pass resolves it."""
    from orchestration.alerts.evaluator import evaluate_sla_policies

    flow_id = register(flow_file(tmp_path, "StartWithin(minutes=5)"), dev_env)["flow_id"]
    developer = client_for(live_server_url, live_world, "developer")
    runs = [developer.create_flow_run(flow_id) for _ in range(3)]
    assert all(run["labels"] == ["gpu"] for run in runs)
    start = max(datetime.fromisoformat(run["scheduled_start"]) for run in runs)

    assert evaluate_sla_policies(now=start + timedelta(minutes=4)) == 0  # not late yet
    assert as_json(cli("alerts", "list", "--json", env=dev_env)) == []
    assert evaluate_sla_policies(now=start + timedelta(minutes=10)) == 1
    assert evaluate_sla_policies(now=start + timedelta(minutes=11)) == 0  # one outage, one incident
    [alert] = as_json(cli("alerts", "list", "--json", env=dev_env))
    assert (alert["policy_name"], alert["kind"], alert["status"], alert["run_count"]) == (
        "etl: start within", "start", "open", 3)
    assert "No live agent covers the labels gpu" in alert["cause"]
    text = cli("alerts", "list", env=dev_env)
    assert text.returncode == 0 and "No live agent covers the labels gpu" in text.stdout
    detail = developer.get_incident(alert["id"])
    assert sorted(run["id"] for run in detail["runs"]) == sorted(run["id"] for run in runs)
    assert [event["kind"] for event in detail["events"]][:1] == ["opened"]

    for run in runs:
        developer.cancel_flow_run(run["id"])
    evaluate_sla_policies(now=start + timedelta(minutes=12))
    assert "No active SLA alerts" in cli("alerts", "list", env=dev_env).stdout
    [resolved] = as_json(cli("alerts", "list", "--status", "resolved", "--json", env=dev_env))
    assert resolved["id"] == alert["id"] and resolved["resolved_at"] is not None
