"""The agent socket over real connections (issue 5): work-available pushes filtered by labels,
cancel pushes for the agent's own runs, key auth exactly as REST, and C4 for revoked keys."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from accounts.models import Role
from tests.factories import make_key

from .conftest import Api, agent_socket, make_flow, nothing_more, receive, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


def _register(server, world, labels, name="gpu-agent", role=Role.AGENT) -> str:  # type: ignore[no-untyped-def]
    return str(Api(server, world, role).call("POST", "agents/", {"name": name, "type": "process",
                                                                   "labels": labels})["id"])


def _closed_code(ws) -> int | None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionClosed) as closed:
        receive_until(ws, lambda m: False, timeout=5)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


def test_work_available_only_for_runs_the_agent_covers_and_cancel_for_its_run(live_servers, acme):
    one, other = live_servers
    agent_id = _register(other, acme, ["gpu", "linux"])
    flow_id = make_flow(acme)
    api = Api(other, acme)
    with agent_socket(one, "acme", agent_id, acme.keys[Role.AGENT]) as ws:
        assert receive(ws) == {"type": "hello", "agent_id": agent_id}
        api.quick_run(flow_id, labels=["windows"])
        run_id = api.quick_run(flow_id, labels=["gpu"])
        push = receive(ws)
        assert push == {"type": "work_available", "labels": ["gpu"], "at": None}
        assert nothing_more(ws, 1.0) == []  # not for the windows run
        # A run due later is announced with its start time (the agent sets a timer).
        later = timezone.now() + dt.timedelta(minutes=5)
        api.quick_run(flow_id, labels=["linux"], scheduled_start=later.isoformat())
        future = receive(ws)
        assert future["type"] == "work_available" and future["labels"] == ["linux"]
        assert dt.datetime.fromisoformat(future["at"]) == later
        # The agent claims the gpu run; cancelling it reaches this socket.
        claimed = Api(other, acme, Role.AGENT).call("POST", f"agents/{agent_id}/claim/", {"limit": 1})["results"]
        assert [r["id"] for r in claimed] == [run_id]
        api.call("POST", f"flow-runs/{run_id}/cancel/")
        assert receive(ws) == {"type": "cancel", "flow_run_id": run_id}
        ws.send('{"action": "ping"}')
        assert receive(ws) == {"type": "pong"}


def test_on_connect_the_agent_hears_of_work_already_waiting(live_servers, acme):
    one, other = live_servers
    agent_id = _register(other, acme, ["gpu"])
    Api(other, acme).quick_run(make_flow(acme), labels=["gpu"])
    with agent_socket(one, "acme", agent_id, acme.keys[Role.AGENT]) as ws:
        assert receive(ws)["type"] == "hello"
        assert receive(ws) == {"type": "work_available", "labels": ["gpu"], "at": None}


def test_a_crash_retry_and_a_restart_are_pushed(live_servers, acme):
    one, other = live_servers
    agent_id = _register(other, acme, ["gpu"])
    api = Api(other, acme)
    run_id = api.quick_run(make_flow(acme), labels=["gpu"])
    Api(other, acme, Role.AGENT).call("POST", f"agents/{agent_id}/claim/", {"limit": 1})
    api.call("POST", f"flow-runs/{run_id}/mark/", {"state_type": "FAILED"})
    with agent_socket(one, "acme", agent_id, acme.keys[Role.AGENT]) as ws:
        assert receive(ws)["type"] == "hello"
        api.call("POST", f"flow-runs/{run_id}/restart/")
        assert receive(ws) == {"type": "work_available", "labels": ["gpu"], "at": None}


def test_a_revoked_key_s_socket_is_closed(live_servers, acme):
    one, other = live_servers
    key, secret = make_key(workspace=acme.workspace, service_account=acme.agent)
    agent_id = _register(other, acme, ["gpu"])
    with agent_socket(one, "acme", agent_id, secret) as ws:
        assert receive(ws)["type"] == "hello"
        Api(other, acme, Role.ADMIN).call("DELETE", f"api-keys/{key.pk}/")
        assert _closed_code(ws) == 4403
    with agent_socket(one, "acme", agent_id, secret) as ws:
        assert _closed_code(ws) == 4401


def test_a_deleted_service_account_s_sockets_are_closed(live_servers, acme):
    one, other = live_servers
    agent_id = _register(other, acme, [])
    with agent_socket(one, "acme", agent_id, acme.keys[Role.AGENT]) as ws:
        assert receive(ws)["type"] == "hello"
        Api(other, acme, Role.ADMIN).call("DELETE", f"service-accounts/{acme.agent.pk}/")
        assert _closed_code(ws) == 4403


def test_only_the_agent_s_own_service_account_in_its_own_workspace_may_listen(live_servers, acme, globex):
    one, other = live_servers
    agent_id = _register(other, acme, [])
    # No key, a malformed key: 4401.
    with agent_socket(one, "acme", agent_id, None) as ws:
        assert _closed_code(ws) == 4401
    with agent_socket(one, "acme", agent_id, "fd_sa_not-a-key") as ws:
        assert _closed_code(ws) == 4401
    # Another workspace's key, on our workspace's path or theirs: 4403.
    with agent_socket(one, "acme", agent_id, globex.keys[Role.AGENT]) as ws:
        assert _closed_code(ws) == 4403
    with agent_socket(one, "globex", agent_id, globex.keys[Role.AGENT]) as ws:
        assert _closed_code(ws) == 4403
    # A person's key of our workspace is not the agent's service account: 4403.
    with agent_socket(one, "acme", agent_id, acme.keys[Role.OWNER]) as ws:
        assert _closed_code(ws) == 4403
    # Another workspace's agent gets no pushes about our runs.
    globex_agent = _register(other, globex, [], name="theirs")
    with agent_socket(one, "globex", globex_agent, globex.keys[Role.AGENT]) as ws:
        assert receive(ws)["type"] == "hello"
        Api(other, acme).quick_run(make_flow(acme))
        assert nothing_more(ws, 1.0) == []
