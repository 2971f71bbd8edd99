"""Issue 9 (2), G3: live updates come back by themselves after Redis restarts empty.

Real processes only: a redis-server of the test's own on a free port (never the shared one), the
real server against it, a browser socket logged in with a session, and a real ``flowdeck agent
start`` process polling only every two minutes, so that a fast pickup can only be a push. Redis is
stopped for 30 s and started again with nothing in it (channels-redis's group memberships, the
event counters and the replay streams are gone). Then: no handshake fails, the socket that stayed
connected hears new events within 5 s with a seq above everything it saw before, and the agent
claims a new run by push.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from accounts.models import Role
from tests.conftest import WorkspaceWorld
from tests.live.conftest import Api, TunedServer, browser_socket, is_event, receive
from tests.live.redis_process import RedisProcess
from tests.sdk.e2e.harness import developer, register, start_agent, wait_for, wait_for_state, write_flow

pytestmark = pytest.mark.postgres

OUTAGE_SECONDS = 30
RECOVERY_SECONDS = 5  # the promise: sockets hear events again within this of Redis coming back
POLL_INTERVAL = 120  # the agent's; only a push can explain a pickup well under it

FLOW = """
from flowdeck import Flow, task


@task
def hello():
    return "hello"


with Flow("hello") as flow:
    hello()
"""


class ServerOnOwnRedis(TunedServer):
    def __init__(self, redis_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redis_url = redis_url

    def env(self) -> dict[str, str]:
        return {**super().env(), "REDIS_URL": self.redis_url}


@pytest.fixture(scope="module")
def own_redis_stack(django_db_setup, tmp_path_factory) -> Iterator[tuple[RedisProcess, ServerOnOwnRedis]]:  # type: ignore[no-untyped-def]
    log_dir: Path = tmp_path_factory.mktemp("redis-restart")
    own_redis = RedisProcess(log_dir)
    own_redis.start()
    server = ServerOnOwnRedis(own_redis.url, periodic_every=None, log_dir=log_dir)
    try:
        server.start()
        yield own_redis, server
    finally:
        server.stop()
        own_redis.stop()


class Listener:
    """A browser socket and the highest seq it has been shown (events and hello)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.max_seq = 0
        self.seen: list[dict[str, Any]] = []

    def next(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first message matching ``match`` within ``timeout`` (None if none came)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = receive(self.ws, left)
            except TimeoutError:
                return None
            self.seen.append(message)
            if message.get("type") in ("event", "hello"):
                self.max_seq = max(self.max_seq, int(message["seq"]))
            if match(message):
                return message
        return None

    def drain(self, wait: float) -> None:
        self.next(lambda m: False, wait)


def _agent_env(server: ServerOnOwnRedis, world: WorkspaceWorld, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(FLOWDECK_API_URL=server.url, FLOWDECK_API_KEY=world.keys["agent"],
               FLOWDECK_WORKSPACE=world.workspace.slug, FLOWDECK_HOME=str(tmp_path / "flowdeck-home"),
               NO_COLOR="1", TERM="dumb", COLUMNS="120")
    return env


def _pickup_seconds(run: dict[str, Any]) -> float:
    """From the run's creation to its claim, both by the server's clock."""
    created = dt.datetime.fromisoformat(run["created_at"])
    claimed = min(dt.datetime.fromisoformat(s["timestamp"]) for s in run["states"] if s["type"] != "SCHEDULED")
    return (claimed - created).total_seconds()


def test_sockets_and_agents_recover_by_themselves_after_redis_restarts_empty(own_redis_stack, acme, tmp_path):
    own_redis, server = own_redis_stack
    slug, viewer = acme.workspace.slug, acme.users[Role.VIEWER]
    env = _agent_env(server, acme, tmp_path)
    flow_id = register(env, acme, write_flow(tmp_path, "flows", FLOW))["hello"]
    api, runs = Api(server, acme), developer(server.url, acme)
    agent = start_agent(env, tmp_path, name="pushed", extra=("--poll-interval", str(POLL_INTERVAL)))
    try:
        wait_for(lambda: "Live updates connected" in agent.log(), 30, "the agent's live socket")
        with browser_socket(server, slug, viewer) as ws:
            listener = Listener(ws)
            assert listener.next(lambda m: m["type"] == "hello", 5)
            # Given live updates that work: an event reaches the browser and a push the agent.
            before = api.quick_run(flow_id)
            assert listener.next(is_event("flow_run.created", id=before), 5)
            assert _pickup_seconds(wait_for_state(runs, before, {"COMPLETED"}, timeout=30)) < RECOVERY_SECONDS
            listener.drain(1.0)
            seen_before_outage = listener.max_seq
            assert seen_before_outage > 0

            # When Redis stops for 30 s (REST keeps working, and so do handshakes) …
            own_redis.stop()
            outage_ends = time.monotonic() + OUTAGE_SECONDS
            api.call("PUT", "concurrency-limits/", {"tag": "during-outage", "limit": 1})
            with browser_socket(server, slug, viewer, after=seen_before_outage) as during:
                assert [m["type"] for m in (receive(during), receive(during))] == ["gap", "hello"]
            listener.drain(max(0.0, outage_ends - time.monotonic()))

            # … and comes back empty:
            own_redis.start()
            back_at, mark = time.monotonic(), len(listener.seen)
            # the first handshake is no HTTP 500: the replay says what was lost, from a seq no lower
            with browser_socket(server, slug, viewer, after=seen_before_outage) as first:
                gap, hello = receive(first), receive(first)
            assert (gap["type"], hello["type"]) == ("gap", "hello")
            assert hello["seq"] >= seen_before_outage

            # the socket that stayed connected hears new events within 5 s …
            heard, probes = None, 0
            while heard is None and time.monotonic() - back_at < RECOVERY_SECONDS:
                probes += 1
                api.call("PUT", "concurrency-limits/", {"tag": "probe", "limit": probes})
                heard = listener.next(is_event("concurrency_limit.updated", tag="probe"), 0.5)
            assert heard is not None, (
                f"no event within {RECOVERY_SECONDS}s of Redis coming back: {listener.seen[mark:]}"
            )
            # … after being told that events were lost while Redis was down
            assert "gap" in [m["type"] for m in listener.seen[mark:]]

            # And the agent, whose socket stayed up, claims a new run by push again, not at its next poll.
            after = api.quick_run(flow_id)
            assert listener.next(is_event("flow_run.created", id=after), RECOVERY_SECONDS)
            pickup = _pickup_seconds(wait_for_state(runs, after, {"COMPLETED"}, timeout=30))
            assert pickup < RECOVERY_SECONDS, f"claimed {pickup:.1f}s after creation: polled, not pushed"
            assert agent.log().count("Live updates connected") == 1

            # Nothing numbered after the restart is at or below what the socket saw before it.
            numbered_after = [m["seq"] for m in listener.seen[mark:] if m["type"] == "event"]
            assert numbered_after and min(numbered_after) > seen_before_outage
    finally:
        agent.stop()
