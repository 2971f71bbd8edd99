"""The Docker and Kubernetes agents' whole loop against the real server, with the container
platform faked at its HTTP API: a claimed run becomes a container (a Job) built from the real claim
record; when it dies without a final state the agent reports it CRASHED (the server retries it);
a pod that can never start is a pre-start FAILED; a cancelled run's container is killed (its Job
deleted) and the run ends CANCELLED; finished containers are removed."""

from __future__ import annotations

import json

from flowdeck.agent.docker import DockerAgent
from flowdeck.agent.kubernetes import KubernetesAgent
from tests.sdk.agent.live import wait_for
from tests.sdk.agent.test_process_agent import NOOP

IMAGE_STORAGE = {"type": "image", "image": "acme/etl:3", "module": "flows.etl", "flow_name": "noop-flow"}


def docker_flow(live):
    return live.register("noop", NOOP, storage=IMAGE_STORAGE,
                         run_config={"agent_type": "docker", "image": "acme/etl:3", "env": ["DATABASE_URL"]})


def start_docker_agent(live, fake):
    fake.pullable.add("acme/etl:3")
    return live.start_agent(DockerAgent, docker_url=fake.url.replace("http://", "tcp://"),
                            environ={"DATABASE_URL": "postgres://db/etl"})


def only_container(fake):
    return wait_for(lambda: next((c for c in list(fake.containers.values()) if c.status == "running"), None),
                    what="a running container")


def test_docker_container_from_the_claim_and_crash_report(live, fake_docker):
    run_id = live.create_run(docker_flow(live), parameters={})
    start_docker_agent(live, fake_docker)

    container = only_container(fake_docker)
    env = dict(item.split("=", 1) for item in container.config["Env"])
    assert env["FLOWDECK_FLOW_RUN_ID"] == run_id and env["FLOWDECK_ATTEMPT"] == "1"
    assert env["FLOWDECK_API_URL"].startswith("http://host.docker.internal:")
    assert env["DATABASE_URL"] == "postgres://db/etl"
    record = json.loads(env["FLOWDECK_FLOW_RUN_JSON"])
    assert record["storage"] == IMAGE_STORAGE and record["attempt"] == 1
    assert container.config["Labels"]["io.flowdeck.flow-run-id"] == run_id

    fake_docker.finish(container.id, 1, output="ModuleNotFoundError: No module named 'flows'\n")

    run = wait_for(lambda: (r := live.run(run_id))["attempt"] == 2 and r, what="the crash report")
    crash = next(s for s in run["states"] if s["name"] == "AwaitingRetry")
    assert "the container exited with code 1" in crash["message"]
    assert "ModuleNotFoundError: No module named 'flows'" in crash["message"]
    wait_for(lambda: fake_docker.calls_to("DELETE", f"/containers/{container.id}"), what="the container's removal")


def test_docker_cancel_kills_the_container_and_the_run_ends_cancelled(live, fake_docker):
    run_id = live.create_run(docker_flow(live))
    start_docker_agent(live, fake_docker)
    container = only_container(fake_docker)

    live.developer.cancel_flow_run(run_id)

    assert live.wait_state(run_id)["state_type"] == "CANCELLED"
    kill = fake_docker.calls_to("POST", f"/containers/{container.id}/kill")[0]
    assert kill.query == {"signal": "SIGTERM"}
    wait_for(lambda: container.id not in fake_docker.containers, what="the container's removal")


def kubernetes_flow(live):
    return live.register("noop", NOOP, storage=IMAGE_STORAGE,
                         run_config={"agent_type": "kubernetes", "image": "acme/etl:3"})


def start_kubernetes_agent(live, fake):
    return live.start_agent(KubernetesAgent, kube_host=fake.url, namespace="flows", service_account="runner")


def only_job(fake):
    return wait_for(lambda: next(iter(list(fake.jobs)), None), what="a Job")[1]


def test_kubernetes_pod_that_cannot_pull_its_image_fails_the_run_before_it_starts(live, fake_kubernetes):
    run_id = live.create_run(kubernetes_flow(live))
    start_kubernetes_agent(live, fake_kubernetes)
    job = only_job(fake_kubernetes)
    manifest = fake_kubernetes.jobs[("flows", job)]
    assert manifest["spec"]["template"]["spec"]["serviceAccountName"] == "runner"
    env = {e["name"]: e.get("value") for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLOWDECK_FLOW_RUN_ID"] == run_id

    fake_kubernetes.set_pod_state("flows", job, {"waiting": {"reason": "ImagePullBackOff",
                                                             "message": 'Back-off pulling image "acme/etl:3"'}})

    run = live.wait_state(run_id)
    assert (run["state_type"], run["attempt"]) == ("FAILED", 1)
    assert run["state_message"] == (
        'The flow run\'s pod could not start: ImagePullBackOff: Back-off pulling image "acme/etl:3"'
    )


def test_kubernetes_failed_job_is_reported_crashed(live, fake_kubernetes):
    run_id = live.create_run(kubernetes_flow(live))
    start_kubernetes_agent(live, fake_kubernetes)
    job = only_job(fake_kubernetes)
    fake_kubernetes.set_pod_state("flows", job, {"running": {"startedAt": "2026-01-01T00:00:00Z"}})

    fake_kubernetes.finish("flows", job, exit_code=137, reason="OOMKilled")

    run = wait_for(lambda: (r := live.run(run_id))["attempt"] == 2 and r, what="the crash report")
    crash = next(s for s in run["states"] if s["name"] == "AwaitingRetry")
    assert "exit code 137, OOMKilled" in crash["message"]


def test_kubernetes_cancel_deletes_the_job_and_the_run_ends_cancelled(live, fake_kubernetes):
    run_id = live.create_run(kubernetes_flow(live))
    start_kubernetes_agent(live, fake_kubernetes)
    job = only_job(fake_kubernetes)

    live.developer.cancel_flow_run(run_id)

    assert live.wait_state(run_id)["state_type"] == "CANCELLED"
    (delete,) = fake_kubernetes.calls_to("DELETE", job)
    assert delete.query["propagationPolicy"] == "Background"
    assert ("flows", job) not in fake_kubernetes.jobs
