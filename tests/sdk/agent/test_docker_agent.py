"""The Docker agent, driven through the real ``docker`` library against a local fake of the Docker
Engine API that records every request: image pulls per the pull policy, the container it creates
(from the spec), start, status, kill on cancellation, the crash output, and removal."""

from __future__ import annotations

import pytest

from flowdeck.agent.base import LaunchError
from flowdeck.agent.docker import DockerAgent
from flowdeck.client import Client
from tests.sdk.agent.conftest import RUN_ID

IMAGE_PATH = "/v1.45/images/acme/etl:3/json"


@pytest.fixture
def flowdeck_client():
    # Never contacted by these tests: the agent only reads its URL, key and workspace.
    client = Client("https://flowdeck.example.com", "fd_sa_secret", "acme")
    yield client
    client.close()


def make_agent(fake, flowdeck_client, **kwargs):
    options = dict(docker_url=fake.url.replace("http://", "tcp://"), name="docker-1",
                   environ={"DATABASE_URL": "postgres://db/etl"})
    options.update(kwargs)
    return DockerAgent(flowdeck_client, **options)


def test_if_not_present_pulls_a_missing_image_then_creates_and_starts_the_container(fake_docker, flowdeck_client,
                                                                                      claimed):
    fake_docker.pullable.add("acme/etl:3")
    agent = make_agent(fake_docker, flowdeck_client, image_pull_policy="if-not-present")

    handle = agent.launch(claimed)

    assert [repr(c) for c in fake_docker.calls] == [
        "GET /version",
        f"GET {IMAGE_PATH}",
        "POST /v1.45/images/create",
        f"GET {IMAGE_PATH}",
        "POST /v1.45/containers/create",
        f"GET /v1.45/containers/{handle.container_id}/json",
        f"POST /v1.45/containers/{handle.container_id}/start",
    ]
    pull = fake_docker.calls_to("POST", "images/create")[0]
    assert pull.query == {"fromImage": "acme/etl", "tag": "3"}
    create = fake_docker.calls_to("POST", "containers/create")[0]
    assert create.query == {"name": f"flowdeck-{RUN_ID}-2"}
    assert create.body["Image"] == "acme/etl:3"
    assert create.body["Cmd"] == ["python", "-m", "flowdeck.agent.execute"]
    env = dict(item.split("=", 1) for item in create.body["Env"])
    assert env["DATABASE_URL"] == "postgres://db/etl"
    assert env["FLOWDECK_FLOW_RUN_ID"] == RUN_ID
    assert env["FLOWDECK_API_KEY"] == "fd_sa_secret"
    assert '"attempt":2' in env["FLOWDECK_FLOW_RUN_JSON"]
    assert create.body["Labels"]["io.flowdeck.flow-run-id"] == RUN_ID
    assert handle.poll() is None  # running


def test_resources_reach_the_host_config(fake_docker, flowdeck_client, claimed):
    from flowdeck.agent.resources import Resources

    fake_docker.images.add("acme/etl:3")
    agent = make_agent(fake_docker, flowdeck_client, resources=Resources(cpu_limit="1.5", memory_limit="512Mi",
                                                                          memory_request="256Mi"))
    agent.launch(claimed)

    host_config = fake_docker.calls_to("POST", "containers/create")[0].body["HostConfig"]
    assert host_config["NanoCpus"] == 1_500_000_000
    assert host_config["Memory"] == 512 * 1024**2
    assert host_config["MemoryReservation"] == 256 * 1024**2


def test_if_not_present_uses_a_present_image_without_pulling(fake_docker, flowdeck_client, claimed):
    fake_docker.images.add("acme/etl:3")
    make_agent(fake_docker, flowdeck_client).launch(claimed)
    assert fake_docker.calls_to("POST", "images/create") == []


def test_always_pulls_even_a_present_image(fake_docker, flowdeck_client, claimed):
    fake_docker.images.add("acme/etl:3")
    fake_docker.pullable.add("acme/etl:3")
    make_agent(fake_docker, flowdeck_client, image_pull_policy="always").launch(claimed)
    assert len(fake_docker.calls_to("POST", "images/create")) == 1
    assert len(fake_docker.calls_to("GET", "images/.*/json")) == 1  # only the look-up after the pull


def test_never_refuses_a_missing_image_without_pulling(fake_docker, flowdeck_client, claimed):
    agent = make_agent(fake_docker, flowdeck_client, image_pull_policy="never")
    with pytest.raises(LaunchError, match="not on the Docker host.*'never'"):
        agent.launch(claimed)
    assert fake_docker.calls_to("POST", "images/create") == []
    assert fake_docker.calls_to("POST", "containers/create") == []


def test_an_image_that_cannot_be_pulled_is_a_prestart_failure(fake_docker, flowdeck_client, claimed):
    agent = make_agent(fake_docker, flowdeck_client)
    with pytest.raises(LaunchError, match="Could not pull the image acme/etl:3: pull access denied"):
        agent.launch(claimed)
    assert fake_docker.calls_to("POST", "containers/create") == []


def test_a_container_that_cannot_start_is_removed_and_a_prestart_failure(fake_docker, flowdeck_client, claimed):
    fake_docker.images.add("acme/etl:3")
    fake_docker.fail_start = 'exec: "python": executable file not found in $PATH'
    agent = make_agent(fake_docker, flowdeck_client)
    with pytest.raises(LaunchError, match="could not start the container.*executable file not found"):
        agent.launch(claimed)
    assert len(fake_docker.calls_to("DELETE", "/containers/")) == 1
    assert fake_docker.containers == {}


def test_exit_status_output_and_removal(fake_docker, flowdeck_client, claimed):
    fake_docker.images.add("acme/etl:3")
    handle = make_agent(fake_docker, flowdeck_client).launch(claimed)

    fake_docker.finish(handle.container_id, 1, output="Traceback (most recent call last):\nRuntimeError: boom\n")
    outcome = handle.poll()
    assert outcome is not None and not outcome.ok
    assert outcome.code == 1 and outcome.reason == "the container exited with code 1"
    assert handle.output_tail() == "Traceback (most recent call last):\nRuntimeError: boom"
    assert fake_docker.calls_to("GET", "/logs")[0].query["tail"] == "30"

    handle.cleanup()
    (remove,) = fake_docker.calls_to("DELETE", "/containers/")
    assert remove.query["force"] == "True"
    assert fake_docker.containers == {}


def test_out_of_memory_is_named_in_the_reason(fake_docker, flowdeck_client, claimed):
    fake_docker.images.add("acme/etl:3")
    handle = make_agent(fake_docker, flowdeck_client).launch(claimed)
    fake_docker.finish(handle.container_id, 137, oom_killed=True)
    outcome = handle.poll()
    assert outcome is not None and outcome.code == 137
    assert "more memory than its limit" in outcome.reason


def test_cancel_sends_sigterm_and_kill_sends_sigkill(fake_docker, flowdeck_client, claimed):
    fake_docker.images.add("acme/etl:3")
    agent = make_agent(fake_docker, flowdeck_client)
    handle = agent.launch(claimed)
    handle.terminate()
    (term,) = fake_docker.calls_to("POST", "/kill")
    assert term.query == {"signal": "SIGTERM"}

    second = agent.launch(type(claimed).from_claim({**claimed.raw, "attempt": 3}))
    second.kill()
    kill = fake_docker.calls_to("POST", "/kill")[-1]
    assert kill.path == f"/v1.45/containers/{second.container_id}/kill" and kill.query == {}
    second.kill()  # already stopped: a 409 from the engine is not an error


def test_a_container_that_disappeared_has_ended(fake_docker, flowdeck_client, claimed):
    fake_docker.images.add("acme/etl:3")
    handle = make_agent(fake_docker, flowdeck_client).launch(claimed)
    fake_docker.containers.clear()
    outcome = handle.poll()
    assert outcome is not None and "disappeared" in outcome.reason


def test_an_unreachable_engine_is_a_clear_error(flowdeck_client):
    with pytest.raises(RuntimeError, match="Cannot reach the Docker engine at tcp://127.0.0.1:9"):
        DockerAgent(flowdeck_client, docker_url="tcp://127.0.0.1:9")
