"""The SLA alerts story of the issue, end to end in the browser, with every part real:

A person sets a start SLA on a flow in the web app, a run goes late because no agent covers its
labels, the incident appears live with that reason, a webhook delivery is logged, an agent with the
right label starts, the run completes and the incident resolves by itself.

What runs: the real ASGI server (uvicorn subprocess; websockets), a real Celery worker and beat
(``tests/orchestration/alerts/celery_processes.py``: beat ticks every second, so the evaluator and the
notification sender run as in production), an independent signature-checking webhook receiver on
loopback (``tests/orchestration/alerts/receiver.py``), the ``flowdeck`` CLI registering the flow and a
``flowdeck agent start`` process started only once the incident is on the page. The test process
only does what a person and the CLI would (register, a channel, the policy in the form, a run
through the REST API) and watches; nothing here calls the evaluator or the delivery code.

Live means live: while the socket is up the pages do not poll (``useFallbackPolling`` only polls
when it is not "Live"), and a marker left in the page's JavaScript state proves no reload happened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.authz import principal_for_user
from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.alerts.channels import notification_channel_create
from orchestration.models import FlowRun, Incident, NotificationDelivery, PolicyChannel, SlaPolicy
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import PASSWORD
from tests.orchestration.alerts.celery_processes import CeleryProcess, celery_worker_and_beat
from tests.orchestration.alerts.celery_processes import wait_for as wait_with_logs
from tests.orchestration.alerts.receiver import Receiver
from tests.sdk.conftest import LiveServer
from tests.sdk.e2e.harness import AgentProcess, developer, register, start_agent, wait_for_state, write_flow

from .conftest import App, log_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LABEL = "gpu"
EVALUATE_TASK = "orchestration.tasks.evaluate_sla_policies_task"
# Real processes (beat's 1 s tick, the worker, the sender, the socket): generous, never slept.
PROCESSES = 20_000
CAUSE = f"No live agent covers the labels {LABEL} (no agent has these labels)."

FLOW = f"""
from flowdeck import Flow, task


@task
def train():
    return "trained"


with Flow("train", labels=["{LABEL}"]) as flow:
    train()
"""


class AsgiServer(LiveServer):
    """The server the browser talks to; the receiver is on loopback (a private target)."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS": "1"}


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = AsgiServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("sla-story-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def story_world(transactional_db, settings) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True  # the channel is created here, on loopback
    return build_world("acme")


def _sdk_env(server: LiveServer, world: WorkspaceWorld, tmp_path: Path) -> dict[str, str]:
    """The CLI's and the agent's environment: the server's URL and the workspace's agent key only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(FLOWDECK_API_URL=server.url, FLOWDECK_API_KEY=world.keys[Role.AGENT],
               FLOWDECK_WORKSPACE=world.workspace.slug, FLOWDECK_HOME=str(tmp_path / "flowdeck-home"),
               NO_COLOR="1", TERM="dumb", COLUMNS="120")
    return env


def _mark_document(page: Page) -> None:
    page.evaluate("() => { window.__sameDocument = true; }")


def _same_document(page: Page) -> bool:
    return bool(page.evaluate("() => window.__sameDocument === true"))


def _recorded(world: WorkspaceWorld, event: str) -> bool:
    """Whether the worker has recorded the ``event`` delivery as delivered (it does so after the
    receiver's answer; the delivery log is read after that, as a person opening it later would)."""
    with rls_bypass():
        return NotificationDelivery.all_objects.filter(workspace=world.workspace, event=event,
                                                       status="delivered").exists()


def _of_type(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    """The verified (answered 200) deliveries of one event type."""
    return [r.json for r in list(receiver.requests) if r.status == 200 and r.json.get("type") == kind]


def test_a_start_sla_set_in_the_browser_alerts_live_notifies_and_resolves_by_itself(
    live_app: App, asgi_server: LiveServer, story_world: WorkspaceWorld, tmp_path: Path
) -> None:
    world = story_world
    slug = world.workspace.slug
    env = _sdk_env(asgi_server, world, tmp_path)

    # given a flow registered with the CLI whose runs need an agent labelled "gpu" ...
    flow_id = register(env, world, write_flow(tmp_path, "flows", FLOW), project="ml")["train"]
    # ... and a webhook channel on a local receiver that checks every signature
    with Receiver() as receiver, celery_worker_and_beat(
            tmp_path, {"FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS": "true"}) as celery:
        processes: list[CeleryProcess] = [celery.worker, celery.beat]
        with workspace_scope([world.workspace.pk]):
            channel = notification_channel_create(principal_for_user(world.users[Role.ADMIN], world.workspace),
                                                  name="on-call", kind="webhook", config={"url": receiver.url()})
        receiver.secret = channel.secret
        agent: AgentProcess | None = None
        try:
            # when an Admin sets a start SLA of 1 minute on the flow, notifying the channel, in the form
            page = live_app.new_page()
            log_in(page, world.users[Role.ADMIN].email, PASSWORD)
            page.goto(f"/w/{slug}/alerts/policies")
            expect(page.get_by_text("No SLA policies yet.")).to_be_visible()
            page.get_by_role("button", name="New policy").click()
            form = page.get_by_role("form", name="New SLA policy")
            form.get_by_label("Name").fill("train starts on time")
            form.get_by_label("Kind").select_option("start")
            form.get_by_label("Threshold", exact=True).fill("1")
            form.get_by_label("Threshold unit").select_option("minutes")
            form.get_by_label("Scope").select_option("flow")
            form.get_by_label("Flow", exact=True).select_option(label="train")
            expect(page.get_by_test_id("policy-preview").get_by_test_id("preview-count")).to_have_text(
                "1 flow covered.")
            form.get_by_role("checkbox", name=re.compile(r"^on-call")).check()
            form.get_by_role("button", name="Create policy").click()
            expect(page.get_by_text("Policy “train starts on time” created.")).to_be_visible()
            row = page.get_by_test_id("policy-row").filter(has_text="train starts on time")
            expect(row.get_by_test_id("policy-threshold")).to_have_text("start within 1 min")
            expect(row).to_contain_text("Flow train")
            with rls_bypass():
                policy = SlaPolicy.all_objects.get(workspace=world.workspace, name="train starts on time")
                assert (policy.kind, str(policy.flow_id), policy.threshold_seconds) == ("start", flow_id, 60)
                assert list(PolicyChannel.all_objects.filter(policy=policy).values_list("channel_id", flat=True)) \
                    == [channel.pk]

            # ... and keeps the incidents page open (no reload from here on)
            page.get_by_role("navigation", name="Alerts").get_by_role("link", name="Incidents").click()
            expect(page.get_by_test_id("live-status")).to_have_text("Live")
            expect(page.get_by_text("No active incidents: every SLA holds.")).to_be_visible()
            _mark_document(page)

            # when a run of the flow is created due two minutes ago (late beyond the 60 s at once),
            # while no agent exists at all
            created = httpx.post(
                f"{asgi_server.url}/api/v1/workspaces/{slug}/flow-runs/",
                json={"flow": flow_id, "scheduled_start": (timezone.now() - timedelta(minutes=2)).isoformat()},
                headers={"Authorization": f"Bearer {world.keys[Role.DEVELOPER]}"}, timeout=10)
            assert created.status_code == 201, created.text
            run = created.json()
            assert run["labels"] == [LABEL] and run["state_type"] == "SCHEDULED", run

            # then the incident appears live, saying why: no live agent covers "gpu"
            incident_row = page.get_by_test_id("incident-row")
            expect(incident_row).to_have_count(1, timeout=PROCESSES)
            expect(incident_row.get_by_test_id("incident-cause")).to_have_text(CAUSE)
            expect(incident_row.get_by_test_id("incident-status")).to_have_text("Open")
            expect(incident_row.get_by_test_id("incident-run-count")).to_have_text("1")
            assert _same_document(page), "the incidents page was reloaded"
            with rls_bypass():
                incident = Incident.all_objects.get(workspace=world.workspace)
            assert incident.policy_id == policy.pk and incident.subject_key == f"labels:{LABEL}"

            # and the receiver gets one verified incident.opened about it
            (opened,) = wait_with_logs(lambda: _of_type(receiver, "incident.opened"), PROCESSES / 1000,
                                       "the incident.opened webhook", processes)
            assert opened["incident"]["id"] == str(incident.pk)
            assert opened["incident"]["cause"] == CAUSE
            assert run["id"] in [r["id"] for r in opened["incident"]["runs"]]

            # and the channels page's delivery log shows it delivered (another tab, same person)
            wait_with_logs(lambda: _recorded(world, "opened"), PROCESSES / 1000, "the delivery's outcome", processes)
            channels = page.context.new_page()
            channels.on("pageerror", lambda exc: live_app.js_errors.append(str(exc)))
            channels.goto(f"/w/{slug}/alerts/channels")
            delivery = channels.get_by_test_id("delivery-row")
            expect(delivery).to_have_count(1)
            expect(delivery.get_by_test_id("delivery-status")).to_have_text("delivered")
            expect(delivery.get_by_test_id("delivery-code")).to_have_text("200")
            expect(delivery).to_contain_text("opened")
            expect(delivery).to_contain_text("on-call")

            # the incident's own page (opened from the list: still the same document)
            incident_row.get_by_role("link").first.click()
            expect(page).to_have_url(re.compile(rf"/w/{slug}/alerts/incidents/{incident.pk}$"))
            expect(page.get_by_test_id("incident-status")).to_have_text("Open")
            expect(page.get_by_test_id("incident-cause")).to_have_text(CAUSE)
            assert _same_document(page)

            # when an agent carrying "gpu" starts
            agent = start_agent(env, tmp_path, LABEL, name="gpu-box")
            # then it runs the flow to the end ...
            client = developer(asgi_server.url, world)
            done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=PROCESSES / 1000)
            assert done["state_type"] == "COMPLETED", (done, agent.log())
            assert {a["id"]: a["name"] for a in client.list_agents()}.get(done["agent"]) == "gpu-box"
            # ... and the incident resolves by itself, live on the open page
            expect(page.get_by_test_id("incident-status")).to_have_text("Resolved", timeout=PROCESSES)
            expect(page.get_by_test_id("incident-actions")).to_have_count(0)
            assert _same_document(page), "the incident page was reloaded"
            (resolved,) = wait_with_logs(lambda: _of_type(receiver, "incident.resolved"), PROCESSES / 1000,
                                         "the incident.resolved webhook", processes)
            assert resolved["incident"]["id"] == str(incident.pk)
            # two more evaluator ticks later, nothing else was opened or sent
            ticks = celery.task_succeeded(EVALUATE_TASK)
            wait_with_logs(lambda: celery.task_succeeded(EVALUATE_TASK) >= ticks + 2, PROCESSES / 1000,
                           "two more evaluator ticks", processes)
            wait_with_logs(lambda: _recorded(world, "resolved"), PROCESSES / 1000, "the delivery's outcome",
                           processes)
            channels.reload()
            expect(channels.get_by_test_id("delivery-row")).to_have_count(2)
            expect(channels.get_by_test_id("delivery-row").filter(has_text="resolved")
                   .get_by_test_id("delivery-status")).to_have_text("delivered")
        except BaseException:
            print(celery.logs())
            if agent is not None:
                print("--- agent ---\n" + agent.log()[-4000:])
            raise
        finally:
            if agent is not None:
                agent.stop()

    # exactly one verified incident.opened and one incident.resolved, nothing refused
    assert [(r.status, r.json["type"]) for r in receiver.requests] == [(200, "incident.opened"),
                                                                       (200, "incident.resolved")]
    assert [r.headers.get("Flowdeck-Event") for r in receiver.requests] == ["incident.opened", "incident.resolved"]
    with rls_bypass():
        incident.refresh_from_db()
        assert incident.status == Incident.Status.RESOLVED and incident.resolved_by == ""  # by itself
        assert Incident.all_objects.filter(workspace=world.workspace).count() == 1
        assert sorted(NotificationDelivery.all_objects.filter(workspace=world.workspace)
                      .values_list("event", "status")) == [("opened", "delivered"), ("resolved", "delivered")]
        finished = FlowRun.all_objects.get(pk=run["id"])
    assert finished.state_type == "COMPLETED" and finished.labels == [LABEL]
    assert not live_app.js_errors, live_app.js_errors
