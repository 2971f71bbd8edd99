"""The Kubernetes agent, driven through the real ``kubernetes`` client against a local fake of the
Kubernetes API that records every request: the Job it creates (the manifest, as the API receives
it), the Job's status as the run goes on, the pod's exit code and reasons, a pod that can never
start (a pre-start failure), and deletion with propagation Background on cancellation."""

from __future__ import annotations

import pytest
from kubernetes.client import Configuration

from flowdeck.agent.base import LaunchError
from flowdeck.agent.kubernetes import KubernetesAgent
from flowdeck.agent.resources import Resources
from flowdeck.client import Client
from tests.sdk.agent.conftest import RUN_ID

JOB = f"flowdeck-{RUN_ID}-2"
JOBS = "/apis/batch/v1/namespaces/flows/jobs"


@pytest.fixture
def flowdeck_client():
    client = Client("https://flowdeck.example.com", "fd_sa_secret", "acme")
    yield client
    client.close()


def make_agent(fake, flowdeck_client, **kwargs):
    options = dict(kube_host=fake.url, namespace="flows", name="k8s-1", environ={"DATABASE_URL": "postgres://db"})
    options.update(kwargs)
    return KubernetesAgent(flowdeck_client, **options)


def kubernetes_claim(claimed):
    return type(claimed).from_claim({**claimed.raw, "version": {
        **claimed.raw["version"], "run_config": {**claimed.run_config, "agent_type": "kubernetes"}}})


def test_launch_creates_the_job_from_the_manifest(fake_kubernetes, flowdeck_client, claimed):
    agent = make_agent(fake_kubernetes, flowdeck_client, service_account="flow-runner", image_pull_policy="always",
                       resources=Resources(cpu_request="250m", memory_limit="1Gi"))
    handle = agent.launch(kubernetes_claim(claimed))

    (create,) = fake_kubernetes.calls
    assert (create.method, create.path) == ("POST", JOBS)
    job = create.body
    assert job == agent.job_manifest(kubernetes_claim(claimed))
    assert job["metadata"]["name"] == JOB == handle.name
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "flow-runner"
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DATABASE_URL"] == "postgres://db"
    assert env["FLOWDECK_FLOW_RUN_ID"] == RUN_ID


def test_status_while_pending_running_and_after_success(fake_kubernetes, flowdeck_client, claimed):
    handle = make_agent(fake_kubernetes, flowdeck_client).launch(kubernetes_claim(claimed))
    assert handle.poll() is None  # ContainerCreating
    fake_kubernetes.set_pod_state("flows", JOB, {"running": {"startedAt": "2026-01-01T00:00:01Z"}})
    assert handle.poll() is None
    assert handle.pod_started
    calls_before = len(fake_kubernetes.calls)
    assert handle.poll() is None
    # Once the pod runs, only the Job's status is read.
    assert [repr(c) for c in fake_kubernetes.calls[calls_before:]] == [f"GET {JOBS}/{JOB}/status"]

    fake_kubernetes.finish("flows", JOB, exit_code=0)
    outcome = handle.poll()
    assert outcome is not None and outcome.ok
    status_reads = fake_kubernetes.calls_to("GET", f"{JOB}/status")
    assert len(status_reads) == 4
    pod_lists = fake_kubernetes.calls_to("GET", "/api/v1/namespaces/flows/pods$")
    assert pod_lists[0].query == {"labelSelector": f"job-name={JOB}"}


def test_failed_job_reports_the_pods_exit_code_and_reason(fake_kubernetes, flowdeck_client, claimed):
    handle = make_agent(fake_kubernetes, flowdeck_client).launch(kubernetes_claim(claimed))
    fake_kubernetes.finish("flows", JOB, exit_code=137, reason="OOMKilled", log="loading…\nKilled")
    outcome = handle.poll()
    assert outcome is not None and not outcome.ok and not outcome.failed_to_start
    assert outcome.code == 137
    assert outcome.reason == (f"the Job {JOB} failed (exit code 137, OOMKilled; "
                              "BackoffLimitExceeded: Job has reached the specified backoff limit)")
    assert handle.output_tail() == "loading…\nKilled"
    (log,) = fake_kubernetes.calls_to("GET", "/log$")
    assert log.query == {"container": "flow", "tailLines": "30"}


def test_a_pod_that_cannot_pull_its_image_is_a_prestart_failure(fake_kubernetes, flowdeck_client, claimed):
    handle = make_agent(fake_kubernetes, flowdeck_client).launch(kubernetes_claim(claimed))
    fake_kubernetes.set_pod_state("flows", JOB, {"waiting": {"reason": "ErrImagePull", "message": "not found"}})
    assert handle.poll() is None  # the kubelet retries a first failure
    fake_kubernetes.set_pod_state("flows", JOB, {"waiting": {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "acme/etl:3"'}})
    outcome = handle.poll()
    assert outcome is not None and outcome.failed_to_start
    assert outcome.reason == (
        'The flow run\'s pod could not start: ImagePullBackOff: Back-off pulling image "acme/etl:3"'
    )


def test_cancel_deletes_the_job_in_the_background_and_kill_at_once(fake_kubernetes, flowdeck_client, claimed):
    agent = make_agent(fake_kubernetes, flowdeck_client)
    handle = agent.launch(kubernetes_claim(claimed))
    handle.terminate()
    (delete,) = fake_kubernetes.calls_to("DELETE", JOB)
    assert delete.path == f"{JOBS}/{JOB}"
    assert delete.query == {"propagationPolicy": "Background"}
    outcome = handle.poll()
    assert outcome is not None and "disappeared" in outcome.reason
    handle.kill()  # already gone: a 404 is not an error
    assert fake_kubernetes.calls_to("DELETE", JOB)[-1].query == {"gracePeriodSeconds": "0",
                                                                 "propagationPolicy": "Background"}


def test_a_refused_job_is_a_prestart_failure(fake_kubernetes, flowdeck_client, claimed):
    agent = make_agent(fake_kubernetes, flowdeck_client)
    agent.launch(kubernetes_claim(claimed))
    with pytest.raises(LaunchError, match="Kubernetes refused the Job: 409.*already exists"):
        agent.launch(kubernetes_claim(claimed))


def test_run_config_for_another_agent_type_is_refused(fake_kubernetes, flowdeck_client, claimed):
    agent = make_agent(fake_kubernetes, flowdeck_client)
    with pytest.raises(LaunchError, match="asks for a docker agent"):
        agent.check_run_config(claimed)


def test_explicit_configuration_is_used(fake_kubernetes, flowdeck_client, claimed):
    configuration = Configuration(host=fake_kubernetes.url)
    agent = KubernetesAgent(flowdeck_client, kube_configuration=configuration, namespace="flows", name="k8s-1")
    agent.launch(kubernetes_claim(claimed))
    assert fake_kubernetes.calls_to("POST", JOBS)
