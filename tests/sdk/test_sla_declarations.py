"""SLA policies declared with ``Flow(sla=[...])``: what they serialize to in the registration metadata
(``sla_policies``), the mistakes they refuse before anything reaches the server, and the contract
that the SDK's kinds, actions and severities are exactly the server's choices."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from flowdeck import Flow, task
from flowdeck import sla as fd_sla
from flowdeck.sla import AgentCoverage, Failures, FinishWithin, Freshness, PrestartFailure, StartWithin
from flowdeck.storage import Module


@task
def work() -> int:
    return 1


def build(sla: Any = None, **kwargs: Any) -> Flow:
    with Flow("etl", storage=Module("acme.flows"), sla=sla, **kwargs) as flow:
        work()
    return flow


def test_every_kind_serializes_to_the_agreed_registration_shape() -> None:
    flow = build(labels=["gpu", "eu"], sla=[
        StartWithin(minutes=10, action="cancel_run", channels=["ops", "oncall"]),
        FinishWithin(hours=1, predictive=True, history_size=30, labels=["nightly"]),
        Failures(consecutive=3, action="pause_schedules", severity="warning", channels=[]),
        Freshness(timedelta(days=1), description="The dashboard reads it every morning."),
        AgentCoverage(["gpu"], minutes=5, name="gpu agents"),
        PrestartFailure(),
    ])
    policies = flow.serialize()["sla_policies"]
    assert [p["name"] for p in policies] == [  # by name: stable for the same code
        "failures", "finish within", "freshness", "gpu agents", "prestart failure", "start within"]
    by_name = {p["name"]: p for p in policies}
    # channels and description only when given: left out, people's choices in the web app are kept.
    common = {"labels": [], "action": "none", "severity": "critical"}
    assert by_name["start within"] == {**common, "name": "start within", "kind": "start", "threshold_seconds": 600,
                                       "action": "cancel_run", "channels": ["oncall", "ops"]}
    assert by_name["finish within"] == {**common, "name": "finish within", "kind": "duration",
                                        "threshold_seconds": 3600, "predictive": True, "history_size": 30,
                                        "labels": ["nightly"]}
    assert by_name["failures"] == {**common, "name": "failures", "kind": "failure", "consecutive_failures": 3,
                                   "action": "pause_schedules", "severity": "warning", "channels": []}
    assert by_name["freshness"] == {**common, "name": "freshness", "kind": "freshness", "threshold_seconds": 86400,
                                    "description": "The dashboard reads it every morning."}
    assert by_name["gpu agents"] == {**common, "name": "gpu agents", "kind": "agent", "threshold_seconds": 300,
                                     "agent_labels": ["gpu"]}
    assert by_name["prestart failure"] == {**common, "name": "prestart failure", "kind": "prestart"}
    json.dumps(policies)  # plain JSON


def test_a_flow_without_policies_says_so() -> None:
    # An empty list, not a missing key: registering it removes the policies an earlier version declared.
    meta = build().serialize()
    assert meta["sla_policies"] == []
    assert list(meta)[:8] == ["tasks", "edges", "parameters", "schedule", "storage", "labels", "run_config",
                              "sla_policies"]  # then Prefect 1's keys (tests/sdk/prefect1_compat)
    assert build(sla=[]).serialize() == meta


def test_serialization_is_stable_whatever_the_declaration_order() -> None:
    one = build(sla=[Failures(), StartWithin(minutes=5), Freshness(hours=2)]).serialize()
    two = build(sla=[Freshness(hours=2), StartWithin(minutes=5), Failures()]).serialize()
    assert one == two
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def test_agent_coverage_without_labels_is_about_the_flows_own_labels() -> None:
    meta = build(labels=["prod", "gpu"], sla=[AgentCoverage(minutes=5)]).serialize()
    assert meta["sla_policies"][0]["agent_labels"] == ["gpu", "prod"]
    with pytest.raises(TypeError, match="labels"):  # it watches agents, not runs
        AgentCoverage(["gpu"], minutes=5, labels=["nightly"])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"'agent coverage' \(AgentCoverage\) has no labels to watch"):
        build(sla=[AgentCoverage(minutes=5)]).serialize()


def test_policies_read_well_in_a_repl() -> None:
    assert repr(AgentCoverage(minutes=5)) == (
        "AgentCoverage(name='agent coverage', labels=[], action='none', severity='critical', threshold_seconds=300)")
    assert repr(Failures(consecutive=2, channels=["ops"])) == (
        "Failures(name='failures', labels=[], action='none', severity='critical', channels=['ops'], "
        "consecutive_failures=2)")


def test_a_copied_flow_keeps_its_policies() -> None:
    flow = build(sla=[StartWithin(minutes=10)])
    assert flow.copy().serialize()["sla_policies"] == flow.serialize()["sla_policies"]


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: StartWithin(seconds=30), ValueError, "at least 1 minute"),
    (lambda: FinishWithin(seconds=59.5), ValueError, "at least 1 minute"),
    (lambda: Freshness(), ValueError, r"needs a time, e\.g\. Freshness\(minutes=10\)"),
    (lambda: StartWithin(10), TypeError, r"as a timedelta or as keywords"),
    (lambda: StartWithin(timedelta(minutes=5), minutes=5), ValueError, "not both"),
    (lambda: StartWithin(minutes=-5), ValueError, "at least 1 minute"),
    (lambda: Freshness(days=31), ValueError, "at most 30 days"),
    (lambda: StartWithin(seconds=90.5), ValueError, "whole seconds"),
    (lambda: StartWithin(minutes="10"), TypeError, r"minutes=\.\.\.\) must be a number"),
    (lambda: StartWithin(minutes=10, action="page_everyone"), ValueError,
     r"'page_everyone'\) is not an action; choose one of 'cancel_run', 'fail_run', 'pause_schedules'"),
    (lambda: Freshness(hours=1, action="cancel_run"), ValueError,
     r"Freshness cannot take the action 'cancel_run' on a breach \(possible: 'pause_schedules'\)"),
    (lambda: Failures(action="fail_run"), ValueError, r"possible: 'pause_schedules'"),
    (lambda: AgentCoverage(["gpu"], minutes=5, action="pause_schedules"), ValueError, r"\(possible: none\)"),
    (lambda: AgentCoverage([], minutes=5), ValueError, "at least one agent label"),
    (lambda: StartWithin(minutes=10, severity="high"), ValueError, "choose 'critical' or 'warning'"),
    (lambda: StartWithin(minutes=10, name=" "), ValueError, "name=...\\) must be a non-empty string"),
    (lambda: StartWithin(minutes=10, name="x" * 101), ValueError, "longer than 100"),
    (lambda: StartWithin(minutes=10, labels="gpu"), TypeError, r"labels=\['gpu'\]"),
    (lambda: StartWithin(minutes=10, channels=["ops", ""]), ValueError, "'' is not a name"),
    (lambda: Failures(consecutive=0), ValueError, r"between 1 and 100 \(got 0\)"),
    (lambda: Failures(consecutive=101), ValueError, r"between 1 and 100 \(got 101\)"),
    (lambda: Failures(consecutive=2.5), TypeError, "whole number"),
    (lambda: FinishWithin(hours=1, history_size=4), ValueError, r"history_size=\.\.\.\) must be between 5"),
    (lambda: Freshness(hours=1, description=3), ValueError, "description"),
    (lambda: FinishWithin(hours=1, predictive="yes"), TypeError, "True or False"),
    (lambda: AgentCoverage(timedelta(minutes=5)), TypeError, r"agent labels first: AgentCoverage\(\['gpu'\]"),
    (lambda: fd_sla.SlaPolicy(), TypeError, "the base class"),
])
def test_mistakes_are_refused_when_the_policy_is_declared(make: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def test_flow_level_mistakes_are_refused_when_the_flow_is_built() -> None:
    with pytest.raises(ValueError, match=r"two SLA policies named 'failures'; give one of them its own name="):
        build(sla=[Failures(), Failures(consecutive=3)])
    with pytest.raises(TypeError, match=r"sla= takes a list of policies"):
        build(sla=StartWithin(minutes=5))
    with pytest.raises(TypeError, match=r"not dict"):
        build(sla=[{"kind": "start"}])
    # Two of a kind are fine with names of their own.
    flow = build(sla=[Failures(), Failures(consecutive=3, name="three in a row")])
    assert [p["name"] for p in flow.serialize()["sla_policies"]] == ["failures", "three in a row"]


def test_policies_added_after_the_flow_was_built_are_checked_at_serialization() -> None:
    flow = build(sla=[Failures()])
    flow.sla.append(Failures(consecutive=2))
    with pytest.raises(ValueError, match="two SLA policies named 'failures'"):
        flow.serialize()


def test_the_sdk_tables_are_the_servers_choices() -> None:
    """Contract: the kinds, actions and severities the SDK offers are exactly the server's, and each
    policy class is one server kind."""
    from orchestration.alerts.models import BreachAction, PolicyKind, Severity

    assert set(fd_sla.KINDS) == set(PolicyKind.values)
    assert set(fd_sla.ACTIONS) == set(BreachAction.values)
    assert set(fd_sla.SEVERITIES) == set(Severity.values)
    classes = [StartWithin, FinishWithin, Failures, Freshness, AgentCoverage, PrestartFailure]
    assert sorted(c.kind for c in classes) == sorted(PolicyKind.values)
    for cls in classes:
        assert set(cls.actions) <= set(BreachAction.values) - {BreachAction.NONE}


def test_the_sdk_limits_are_the_servers() -> None:
    """Contract: what the SDK refuses locally is what the server's validator refuses, no more, no less."""
    from orchestration.alerts import policies as server

    assert (fd_sla.MIN_THRESHOLD_SECONDS, fd_sla.MAX_THRESHOLD_SECONDS) == (server.MIN_THRESHOLD, server.MAX_THRESHOLD)
    assert fd_sla.MAX_NAME_LENGTH == server.MAX_DECLARED_NAME
    assert fd_sla.MAX_DESCRIPTION_LENGTH == server.MAX_DESCRIPTION
    assert (fd_sla.MAX_LABELS, fd_sla.MAX_LABEL_LENGTH, fd_sla.MAX_CHANNELS) == (
        server.MAX_LABELS, server.MAX_LABEL, server.MAX_CHANNELS)
    assert fd_sla.MAX_POLICIES_PER_FLOW == server.MAX_DECLARED_PER_FLOW
    from orchestration.alerts.models import NotificationChannel

    assert NotificationChannel._meta.get_field("name").max_length == fd_sla.MAX_CHANNEL_NAME_LENGTH
    assert set(server.DECLARED_KEYS) >= {key for cls in (StartWithin, FinishWithin, Failures, Freshness,
                                                           AgentCoverage, PrestartFailure) for key in
                                          _every_key(cls)}
    for cls in (StartWithin, FinishWithin, Failures, Freshness, AgentCoverage, PrestartFailure):
        run_actions = {"cancel_run", "fail_run"} if cls.kind in server.RUN_ACTION_KINDS else set()
        pause = set() if cls.kind == "agent" else {"pause_schedules"}
        assert set(cls.actions) == run_actions | pause, cls
        assert set(cls(**_minimal(cls)).serialize(["gpu"])) - {"name", "kind", "labels", "action", "severity"} \
            == set(server.KIND_FIELDS[cls.kind]), cls


def _minimal(cls: type[fd_sla.SlaPolicy]) -> dict[str, Any]:
    return {"minutes": 5} if issubclass(cls, fd_sla._Timed) else {}


def _every_key(cls: type[fd_sla.SlaPolicy]) -> set[str]:
    return set(cls(**_minimal(cls), channels=["c"], description="d").serialize(["gpu"]))


@pytest.mark.postgres
def test_the_server_registers_exactly_what_the_sdk_declares(world_a: Any) -> None:
    """Contract: the server's registration takes the SDK's ``sla_policies`` unchanged and keeps every
    declared field (through the REST endpoint ``flowdeck register`` calls, in-process)."""
    from core.tenancy import rls_bypass
    from orchestration.alerts.models import NotificationChannel, PolicyChannel, SlaPolicy

    with rls_bypass():
        channel = NotificationChannel.all_objects.create(workspace=world_a.workspace, name="ops", kind="webhook",
                                                         config={"url": "https://hooks.example.com/x"})
    flow = build(labels=["gpu"], sla=[
        StartWithin(minutes=10, action="cancel_run", channels=["ops"], labels=["nightly"]),
        FinishWithin(hours=1, predictive=True, history_size=30, action="fail_run", severity="warning"),
        Failures(consecutive=3, action="pause_schedules"),
        Freshness(timedelta(days=1), description="Read every morning."),
        AgentCoverage(minutes=5),
        PrestartFailure(action="pause_schedules"),
    ])
    declared = flow.serialize()["sla_policies"]
    response = world_a.client("developer").post(world_a.url("flows/register/"), {
        "project": "data", "name": "etl", "metadata": flow.serialize()}, format="json")
    assert response.status_code in (200, 201), response.content
    with rls_bypass():
        stored = {p.name: p for p in SlaPolicy.all_objects.filter(workspace=world_a.workspace)}
        channels = {link.policy.name: link.channel_id for link in PolicyChannel.all_objects.select_related("policy")}
    assert sorted(stored) == [f"etl: {item['name']}" for item in declared]
    for item in declared:
        policy = stored[f"etl: {item['name']}"]
        assert policy.from_registration and policy.flow_id is not None and policy.project_id is None
        for key, value in item.items():
            if key == "name":
                continue
            if key == "channels":
                assert channels[policy.name] == channel.pk
                continue
            assert getattr(policy, key) == value, (policy.name, key)
