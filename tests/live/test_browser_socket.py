"""The browser socket over real connections to real server processes sharing Redis (issue 5,
docs/reliability.md C4, E1, E2)."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from accounts.models import Membership, Role

from .conftest import Api, browser_socket, is_event, make_flow, nothing_more, receive, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


def _hello(ws) -> dict:  # type: ignore[no-untyped-def]
    message = receive(ws)
    assert message["type"] == "hello", message
    return message


def test_a_change_committed_through_one_server_arrives_on_a_socket_of_the_other(live_servers, acme):
    one, other = live_servers
    flow_id = make_flow(acme)
    with browser_socket(one, "acme", acme.users[Role.VIEWER]) as ws:
        hello = _hello(ws)
        assert hello["workspace"] == "acme"
        run_id = Api(other, acme).quick_run(flow_id)
        message, _ = receive_until(ws, is_event("flow_run.created", id=run_id))
        assert message["seq"] > hello["seq"]
        assert message["event"]["workspace_id"] == str(acme.workspace.pk)
        # A state change through the other server arrives too, with a later seq.
        Api(other, acme).call("POST", f"flow-runs/{run_id}/cancel/")
        changed, _ = receive_until(ws, is_event("flow_run.state_changed", id=run_id))
        assert changed["event"]["data"]["state_type"] == "CANCELLED"
        assert changed["seq"] > message["seq"]


def test_reconnecting_with_after_loses_nothing(live_servers, acme):
    one, other = live_servers
    flow_id = make_flow(acme)
    api = Api(other, acme)
    with browser_socket(one, "acme", acme.users[Role.VIEWER]) as ws:
        _hello(ws)
        first = api.quick_run(flow_id)
        last_seen = receive_until(ws, is_event("flow_run.created", id=first))[0]["seq"]
    missed = [api.quick_run(flow_id) for _ in range(5)]
    with browser_socket(other, "acme", acme.users[Role.VIEWER], after=last_seen) as ws:
        hello, replayed = receive_until(ws, lambda m: m["type"] == "hello")
        created = [m["event"]["data"]["id"] for m in replayed if m["event"]["type"] == "flow_run.created"]
        assert created == missed  # all of them, in order, before hello
        seqs = [m["seq"] for m in replayed]
        assert seqs == sorted(seqs) and seqs[0] > last_seen and hello["seq"] >= seqs[-1]
        # … then live, without duplicates.
        live = api.quick_run(flow_id)
        message, before = receive_until(ws, is_event("flow_run.created", id=live))
        assert message["seq"] > hello["seq"]
        assert not [m for m in before if m.get("seq", 0) <= hello["seq"]]


def test_reconnecting_after_a_seq_no_longer_kept_reports_a_gap(live_servers, acme):
    one, _ = live_servers
    with browser_socket(one, "acme", acme.users[Role.VIEWER], after=10**9) as ws:
        gap = receive(ws)
        assert gap["type"] == "gap" and "reload" in gap["message"]
        assert receive(ws)["type"] == "hello"


def test_a_member_of_another_workspace_hears_nothing_and_cannot_subscribe_to_our_runs(live_servers, acme, globex):
    one, other = live_servers
    flow_id = make_flow(acme)
    api = Api(other, acme)
    run_id = api.quick_run(flow_id)
    outsider = globex.users[Role.OWNER]
    with browser_socket(one, "globex", outsider) as ws:
        _hello(ws)
        ws.send(json.dumps({"action": "subscribe_run", "flow_run_id": run_id}))
        error = receive(ws)
        assert (error["type"], error["code"]) == ("error", "not_found")
        api.quick_run(flow_id)
        api.call("POST", f"flow-runs/{run_id}/cancel/")
        assert nothing_more(ws, 1.5) == []
    # Their own session cannot open our workspace's socket either.
    with browser_socket(one, "acme", outsider) as ws, pytest.raises(ConnectionClosed) as closed:
        receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_not_logged_in_is_4401_and_a_foreign_origin_is_refused(live_servers, acme):
    one, _ = live_servers
    with browser_socket(one, "acme", None) as ws, pytest.raises(ConnectionClosed) as closed:
        receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with pytest.raises(InvalidStatus) as refused:
        browser_socket(one, "acme", acme.users[Role.VIEWER], origin="https://evil.example.com")
    assert refused.value.response.status_code == 403


def test_only_the_served_origin_may_open_the_socket_port_and_scheme_included(live_servers, acme):
    """A page on another port of the same host, or plain http against an https origin (or the
    reverse), cannot ride the session cookie: the whole origin must match what is served."""
    one, _ = live_servers
    viewer = acme.users[Role.VIEWER]
    scheme, host_port = one.url.split("://", 1)
    host, port = host_port.rsplit(":", 1)
    other_port = f"{scheme}://{host}:{int(port) + 1}"
    other_scheme = f"{'https' if scheme == 'http' else 'http'}://{host_port}"
    for origin in (other_port, other_scheme, f"{scheme}://{host}:8000", "null"):
        with pytest.raises(InvalidStatus) as refused:
            browser_socket(one, "acme", viewer, origin=origin)
        assert refused.value.response.status_code == 403, origin
    with browser_socket(one, "acme", viewer, origin=one.url.upper()) as ws:  # origins compare case-blind
        assert _hello(ws) is not None


def test_a_removed_member_s_socket_is_closed(live_servers, acme):
    one, other = live_servers
    developer = acme.users[Role.DEVELOPER]
    with browser_socket(one, "acme", developer) as ws:
        _hello(ws)
        membership = Membership.objects.get(workspace=acme.workspace, user=developer)
        Api(other, acme, Role.OWNER).call("DELETE", f"members/{membership.pk}/")
        with pytest.raises(ConnectionClosed) as closed:
            receive_until(ws, lambda m: False, timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    with browser_socket(one, "acme", developer) as ws, pytest.raises(ConnectionClosed) as closed:
        receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_run_events_reach_only_sockets_subscribed_to_that_run(live_servers, acme):
    one, other = live_servers
    flow_id = make_flow(acme)
    api = Api(other, acme)
    run_id = api.quick_run(flow_id)
    with browser_socket(one, "acme", acme.users[Role.VIEWER]) as watching, \
            browser_socket(one, "acme", acme.users[Role.VIEWER]) as dashboard:
        _hello(watching), _hello(dashboard)
        watching.send(json.dumps({"action": "subscribe_run", "flow_run_id": run_id, "after": None}))
        assert receive_until(watching, lambda m: m["type"] == "subscribed")[0]["flow_run_id"] == run_id
        _claim_and_log(live_servers, acme, run_id, lines=3)
        logs, _ = receive_until(watching, is_event("logs.appended", flow_run_id=run_id))
        assert logs["event"]["data"]["count"] == 3
        assert not [m for m in nothing_more(dashboard, 1.0) if m["event"]["type"] == "logs.appended"]
        watching.send('{"action": "ping"}')
        receive_until(watching, lambda m: m["type"] == "pong")


def test_restricted_projects_stay_hidden_from_members_they_are_not_shared_with(live_servers, acme):
    one, other = live_servers
    secret_flow = make_flow(acme, restricted=True, name="payroll")
    open_flow = make_flow(acme, name="etl")
    api = Api(other, acme, Role.ADMIN)
    secret_run = api.quick_run(secret_flow)
    with browser_socket(one, "acme", acme.users[Role.VIEWER]) as ws:
        _hello(ws)
        ws.send(json.dumps({"action": "subscribe_run", "flow_run_id": secret_run}))
        assert receive(ws)["code"] == "not_found"
        api.quick_run(secret_flow)
        visible = api.quick_run(open_flow)
        _, before = receive_until(ws, is_event("flow_run.created", id=visible))
        assert not [m for m in before if m.get("event", {}).get("data", {}).get("flow_id") == secret_flow]


def test_log_floods_are_coalesced_and_marked_as_dropped(live_servers, acme):
    from .conftest import LOG_LINES_PER_SECOND

    one, other = live_servers
    run_id = Api(other, acme).quick_run(make_flow(acme))
    with browser_socket(one, "acme", acme.users[Role.VIEWER]) as ws:
        _hello(ws)
        ws.send(json.dumps({"action": "subscribe_run", "flow_run_id": run_id}))
        receive_until(ws, lambda m: m["type"] == "subscribed")
        batches, size = 10, 100
        _claim_and_log(live_servers, acme, run_id, lines=size, batches=batches)
        dropped, before = receive_until(ws, lambda m: m["type"] == "logs_dropped", timeout=10)
        assert dropped["flow_run_id"] == run_id and dropped["count"] > 0 and "reload" in dropped["message"]
        after = nothing_more(ws, 1.5)
        announced = sum(m["event"]["data"]["count"] for m in before + after
                        if m["type"] == "event" and m["event"]["type"] == "logs.appended")
        dropped_total = sum(m["count"] for m in [dropped, *after] if m["type"] == "logs_dropped")
        assert announced + dropped_total == batches * size
        assert announced <= 2 * LOG_LINES_PER_SECOND  # one second of burst, plus what refilled meanwhile
        # Coalesced: far fewer messages than batches.
        notices = [m for m in before + after if m["type"] == "event"]
        assert len(notices) < batches


def _claim_and_log(live_servers, world, run_id: str, *, lines: int, batches: int = 1) -> None:  # type: ignore[no-untyped-def]
    _, other = live_servers
    agent_api = Api(other, world, Role.AGENT)
    agent = agent_api.call("POST", "agents/", {"name": "logger", "type": "process", "labels": []})
    claimed = agent_api.call("POST", f"agents/{agent['id']}/claim/", {"limit": 10})["results"]
    assert run_id in [r["id"] for r in claimed]
    for b in range(batches):
        body = {"lines": [{"sequence": b * lines + i + 1, "level": 20, "timestamp": "2026-01-01T00:00:00Z",
                           "message": f"line {i}", "logger": "etl"} for i in range(lines)]}
        assert agent_api.call("POST", f"flow-runs/{run_id}/logs/", body)["count"] == lines


def test_an_idle_socket_stays_open(live_servers, acme):
    """redis-py 8's 5 s default read timeout used to cut every idle socket (channels_redis#422)."""
    one, _ = live_servers
    with browser_socket(one, "acme", acme.users[Role.VIEWER]) as ws:
        _hello(ws)
        time.sleep(8)
        ws.send('{"action": "ping"}')
        assert receive(ws) == {"type": "pong"}


def test_logging_out_closes_that_session_s_sockets(live_servers, acme):
    import httpx

    from .conftest import session_cookie

    one, other = live_servers
    cookie = session_cookie(acme.users[Role.VIEWER])
    with connect(f"{one.ws}/ws/v1/workspaces/acme/events/",
                 additional_headers={"Origin": one.url, "Cookie": f"sessionid={cookie}"}) as ws:
        _hello(ws)
        with httpx.Client(base_url=other.url, cookies={"sessionid": cookie}, timeout=10) as http:
            http.get("/_allauth/browser/v1/config")
            response = http.delete("/_allauth/browser/v1/auth/session",
                                   headers={"X-CSRFToken": http.cookies.get("csrftoken") or ""})
            assert response.status_code == 401, response.text  # logged out
        with pytest.raises(ConnectionClosed) as closed:
            receive_until(ws, lambda m: False, timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_a_deactivated_user_is_closed_by_the_periodic_recheck(live_servers, acme):
    from .conftest import REVALIDATE_SECONDS

    one, _ = live_servers
    viewer = acme.users[Role.VIEWER]
    with browser_socket(one, "acme", viewer) as ws:
        _hello(ws)
        type(viewer).objects.filter(pk=viewer.pk).update(is_active=False)  # no service, no control message
        with pytest.raises(ConnectionClosed) as closed:
            receive_until(ws, lambda m: False, timeout=REVALIDATE_SECONDS * 3)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
