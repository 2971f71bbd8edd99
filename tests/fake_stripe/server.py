"""The fake Stripe HTTP server: the v1 API (api.py), the control API under /_fake/ and the hosted
Checkout and portal pages (pages.py).

Events caused by a control call (completing a checkout, renewing, a portal click, a sent or
replayed event) are delivered before the control call answers, and the answer lists each
delivery's result, so tests are deterministic. Events caused by an API call (for instance
DELETE /v1/subscriptions/{id} from the server under test) are queued by default and delivered by
`release_events()`; with `api_events="async"` a background thread delivers them right after the
API answer, as Stripe would (for end-to-end tests). While `hold_events(True)` is on, every event
is queued, so a test can release them in any order.
"""

from __future__ import annotations

import fnmatch
import json
import queue
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fake_stripe import pages
from tests.fake_stripe.api import check_auth, dispatch
from tests.fake_stripe.client import FakeStripeClient
from tests.fake_stripe.forms import FormError, parse_form
from tests.fake_stripe.state import FailureRule, Obj, StripeError, StripeState, new_id, parse_bool, parse_int
from tests.fake_stripe.webhooks import deliver, event_body, signature_header

_RECORDED_HEADERS = ("Idempotency-Key", "Stripe-Version", "Stripe-Account", "Content-Type", "User-Agent")
_API_EVENT_MODES = ("queue", "async")
_OBJECT_KINDS = ("customers", "prices", "checkout_sessions", "portal_sessions", "subscriptions", "invoices",
                 "meter_events", "events", "deliveries")


class FakeStripeCore:
    """State, webhook configuration and delivery; shared by every request thread."""

    def __init__(self, webhook_url: str | None, webhook_secrets: list[str], api_events: str) -> None:
        self.state = StripeState()
        self.webhook_url = webhook_url
        self.webhook_secrets = list(webhook_secrets)
        self.api_events = api_events
        self._async_queue: queue.Queue[Obj | None] = queue.Queue()
        self._async_worker: threading.Thread | None = None

    # -- delivery ----------------------------------------------------------------------------

    def start_worker(self) -> None:
        self._async_worker = threading.Thread(target=self._deliver_async, name="fake-stripe-webhooks", daemon=True)
        self._async_worker.start()

    def stop_worker(self) -> None:
        if self._async_worker is not None:
            self._async_queue.put(None)
            self._async_worker.join(timeout=5)
            self._async_worker = None

    def _deliver_async(self) -> None:
        while (event := self._async_queue.get()) is not None:
            self.deliver_now([event])

    def deliver_now(self, events: list[Obj]) -> list[Obj]:
        """POST each event in order, outside the state lock (the receiver may call the API)."""
        results = []
        for event in events:
            if not self.webhook_url:
                result: Obj = {"event_id": event["id"], "type": event["type"], "url": None, "status": None,
                               "response": "", "error": "no webhook URL configured", "delivered_at": time.time()}
            else:
                result = deliver(self.webhook_url, event, self.webhook_secrets or ["whsec_fake"])
            with self.state.lock:
                self.state.deliveries.append(result)
            results.append(result)
        return results

    def route_events(self, events: list[Obj], *, from_api: bool) -> list[Obj]:
        """Deliver now (control calls), queue (hold, or API calls by default) or hand to the
        background thread (API calls with api_events="async"). Returns the deliveries made now."""
        if not events:
            return []
        with self.state.lock:
            if self.state.hold or (from_api and self.api_events == "queue"):
                self.state.pending.extend(event["id"] for event in events)
                return []
        if from_api:
            for event in events:
                self._async_queue.put(event)
            return []
        return self.deliver_now(events)

    def release(self, order: list[str] | None) -> list[Obj]:
        with self.state.lock:
            pending = self.state.pending
            if order is None:
                chosen, pending[:] = list(pending), []
            else:
                chosen = []
                for event_id in order:
                    if event_id not in pending:
                        raise StripeError(f"Event {event_id} is not waiting for delivery.", param="order")
                    pending.remove(event_id)
                    chosen.append(event_id)
            events = [self.state.events[event_id] for event_id in chosen]
        return self.deliver_now(events)

    # -- failure injection -------------------------------------------------------------------

    def take_failure(self, method: str, path: str) -> FailureRule | None:
        for rule in self.state.failures:
            if rule.remaining > 0 and rule.method == method and fnmatch.fnmatchcase(path, rule.path):
                rule.remaining -= 1
                return rule
        return None


def _failure_body(rule: FailureRule) -> Obj:
    error_type = "api_error" if rule.status >= 500 else "invalid_request_error"
    return {"error": {"type": error_type, "message": rule.message}}


class FakeStripeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeStripe/1.0"
    timeout = 60
    server: FakeStripeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def core(self) -> FakeStripeCore:
        return self.server.core

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    # -- plumbing ----------------------------------------------------------------------------

    def _body(self) -> str:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode() if length else ""

    def _send(self, status: int, body: str, content_type: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body, indent=2), "application/json", headers)

    def _html(self, status: int, body: str) -> None:
        self._send(status, body, "text/html; charset=utf-8")

    def _redirect(self, location: str) -> None:
        self._send(HTTPStatus.SEE_OTHER, "", "text/plain", {"Location": location})

    def _route(self, method: str) -> None:
        split = urlsplit(self.path)
        try:
            if split.path.startswith("/v1/"):
                self._api(method, split.path, split.query)
            elif split.path.startswith("/_fake/"):
                self._control(method, split.path, split.query)
            else:
                self._body()
                raise StripeError(f"Unrecognized request URL ({method}: {split.path}).", status=404)
        except StripeError as exc:
            self._json(exc.status, exc.body, exc.headers)
        except Exception as exc:  # a bug in the fake: say so instead of dropping the connection
            traceback.print_exc()
            self._json(500, {"error": {"type": "api_error", "message": f"fake Stripe failed: {exc!r}"}},
                       {"Stripe-Should-Retry": "false"})

    # -- the Stripe API ----------------------------------------------------------------------

    def _api(self, method: str, path: str, query: str) -> None:
        body = self._body()
        request_id = new_id("req_", 14)
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        record: Obj = {
            "id": request_id, "method": method, "path": path, "query": query, "params": None,
            "idempotency_key": key, "status": None, "replayed": False, "injected_failure": False,
            "headers": {name: self.headers[name] for name in _RECORDED_HEADERS if name in self.headers},
            "time": time.time(),
        }
        headers = {"Request-Id": request_id}
        if key:
            headers["Idempotency-Key"] = key
        if "Stripe-Version" in self.headers:
            headers["Stripe-Version"] = self.headers["Stripe-Version"]
        events: list[Obj] = []
        state = self.core.state
        with state.lock:
            state.requests.append(record)
            try:
                params = parse_form(body if method == "POST" else query)
                record["params"] = params
                auth_error = check_auth(self.headers.get("Authorization"))
                if auth_error is not None:
                    raise auth_error
                rule = self.core.take_failure(method, path)
                if rule is not None and rule.when == "before":
                    record["injected_failure"] = True
                    status, answer = rule.status, _failure_body(rule)
                elif key and key in state.idempotency:
                    saved = state.idempotency[key]
                    if (saved["method"], saved["path"], saved["params"]) != (method, path, params):
                        raise StripeError(
                            "Keys for idempotent requests can only be used with the same parameters they were "
                            f"first used with. Try using a key other than '{key}' if you meant to execute a "
                            "different request.", error_type="idempotency_error")
                    status, answer = saved["status"], saved["body"]
                    record["replayed"] = True
                    headers["Idempotent-Replayed"] = "true"
                    headers["Original-Request"] = saved["request_id"]
                else:
                    status, answer, events = dispatch(state, method, path, params)
                    for event in events:
                        event["request"] = {"id": request_id, "idempotency_key": key}
                    if key:  # Stripe keeps the result of a request that ran, for 24 hours
                        state.idempotency[key] = {"method": method, "path": path, "params": params,
                                                  "status": status, "body": answer, "request_id": request_id}
                    if rule is not None:  # "after": it ran, but the caller sees a failure
                        record["injected_failure"] = True
                        status, answer = rule.status, _failure_body(rule)
            except FormError as exc:
                status, answer = 400, {"error": {"type": "invalid_request_error", "message": str(exc)}}
            except StripeError as exc:
                status, answer = exc.status, exc.body
                headers.update(exc.headers)
            record["status"] = status
        self._json(status, answer, headers)
        self.core.route_events(events, from_api=True)

    # -- control API and hosted pages --------------------------------------------------------

    def _control(self, method: str, path: str, query: str) -> None:
        parts = path.strip("/").split("/")[1:]  # after "_fake"
        if parts[:1] == ["checkout"] and len(parts) == 2:
            return self._checkout_page(method, parts[1])
        if parts[:1] == ["portal"] and len(parts) == 2:
            return self._portal_page(method, parts[1], query)
        raw = self._body()
        try:
            data = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise StripeError(f"Control body is not JSON: {exc}")
        if not isinstance(data, dict):
            raise StripeError("Control body must be a JSON object.")
        args = {k: v[-1] for k, v in parse_qs(query).items()}
        status, answer = self._control_action(method, parts, data, args)
        self._json(status, answer)

    def _control_action(self, method: str, parts: list[str], data: Obj, args: dict[str, str]) -> tuple[int, Any]:
        core, state = self.core, self.core.state
        route = (method, *parts)
        match route:
            case ("GET", "health"):
                return 200, {"ok": True, "base_url": state.base_url}
            case ("POST", "reset"):
                with state.lock:
                    base_url, lock = state.base_url, state.lock
                    fresh = StripeState(lock=lock, base_url=base_url)
                    state.__dict__.update(fresh.__dict__)
                return 200, {"ok": True}
            case ("POST", "config"):
                if "api_events" in data and data["api_events"] not in _API_EVENT_MODES:
                    raise StripeError(f"api_events must be one of {_API_EVENT_MODES}", param="api_events")
                if "webhook_url" in data:
                    core.webhook_url = data["webhook_url"]
                if "webhook_secrets" in data:
                    core.webhook_secrets = list(data["webhook_secrets"])
                if "api_events" in data:
                    core.api_events = data["api_events"]
                return 200, {"webhook_url": core.webhook_url, "webhook_secrets": core.webhook_secrets,
                             "api_events": core.api_events}
            case ("GET", "requests"):
                with state.lock:
                    found = [r for r in state.requests
                             if (not args.get("method") or r["method"] == args["method"].upper())
                             and (not args.get("path") or fnmatch.fnmatchcase(r["path"], args["path"]))]
                    return 200, json.loads(json.dumps(found))
            case ("POST", "failures"):
                rule = FailureRule(method=str(data.get("method", "POST")).upper(), path=_required(data, "path"),
                                   remaining=parse_int(data.get("count", 1), "count"),
                                   status=parse_int(data.get("status", 500), "status"),
                                   when=data.get("when", "before"),
                                   message=data.get("message") or FailureRule.message)
                if rule.when not in ("before", "after"):
                    raise StripeError("when must be before or after", param="when")
                with state.lock:
                    state.failures.append(rule)
                return 200, {"ok": True}
            case ("POST", "prices"):
                with state.lock:
                    return 200, state.seed_price(data)
            case ("GET", "objects", kind) if kind in _OBJECT_KINDS:
                with state.lock:
                    store = getattr(state, kind)
                    objects = list(store.values()) if isinstance(store, dict) else list(store)
                    return 200, state.public(json.loads(json.dumps(objects)))
            case ("POST", "checkout", session_id, "complete"):
                with state.lock:
                    result, events = state.complete_checkout(session_id, data.get("email"))
                    result = state.public(json.loads(json.dumps(result)))
                return 200, self._with_events(result, events)
            case ("POST", "checkout", session_id, "expire"):
                return self._state_action(state.expire_checkout, session_id)
            case ("POST", "subscriptions", sub_id, "advance"):
                return self._state_action(state.advance_period, sub_id)
            case ("POST", "subscriptions", sub_id, "fail_payment"):
                return self._state_action(state.fail_payment, sub_id)
            case ("POST", "invoices", invoice_id, "pay"):
                return self._state_action(state.pay_invoice, invoice_id)
            case ("POST", "subscriptions", sub_id, "update"):
                return self._portal_update(sub_id, data)
            case ("POST", "subscriptions", sub_id, "cancel"):
                at_period_end = parse_bool(data.get("at_period_end", False), "at_period_end")
                action = "cancel" if at_period_end else "cancel_now"
                return self._portal_update(sub_id, {"action": action})
            case ("GET", "events"):
                with state.lock:
                    found = [e for e in state.events.values() if not args.get("type") or e["type"] == args["type"]]
                    return 200, json.loads(json.dumps(found))
            case ("POST", "events"):
                event_type = _required(data, "type")
                obj = data.get("object")
                if not isinstance(obj, dict):
                    raise StripeError("object must be a JSON object (the event's data.object)", param="object")
                with state.lock:
                    event = state.emit(event_type, obj, data.get("previous_attributes"))
                return 200, self._with_events({"event": event}, [event])
            case ("POST", "events", event_id, "replay"):
                with state.lock:
                    event = state.get_event(event_id)
                return 200, self._with_events({"event": event}, [event])
            case ("GET", "events", event_id, "signed"):
                with state.lock:
                    body = event_body(state.get_event(event_id))
                return 200, {"body": body, "signature": signature_header(body, core.webhook_secrets or ["whsec_fake"])}
            case ("POST", "hold"):
                with state.lock:
                    state.hold = parse_bool(data.get("on", True), "on")
                return 200, {"hold": state.hold}
            case ("GET", "pending"):
                with state.lock:
                    return 200, json.loads(json.dumps([state.events[i] for i in state.pending]))
            case ("POST", "release"):
                order = data.get("order")
                if order is not None and not (isinstance(order, list) and all(isinstance(i, str) for i in order)):
                    raise StripeError("order must be a list of event ids", param="order")
                return 200, {"deliveries": core.release(order)}
        raise StripeError(f"Unknown control call {method} /_fake/{'/'.join(parts)}", status=404)

    def _with_events(self, result: Obj, events: list[Obj]) -> Obj:
        result["events"] = json.loads(json.dumps(events))
        result["deliveries"] = self.core.route_events(events, from_api=False)
        return result

    def _state_action(self, action: Any, object_id: str) -> tuple[int, Obj]:
        with self.core.state.lock:
            result, events = action(object_id)
            result = self.core.state.public(json.loads(json.dumps(result)))
        return 200, self._with_events(result, events)

    def _portal_update(self, sub_id: str, data: Obj) -> tuple[int, Obj]:
        """What the portal's buttons do: change seats or price, cancel (now or at period end), renew."""
        state = self.core.state
        with state.lock:
            subscription = state.get_subscription(sub_id)
            action = data.get("action")
            if action == "cancel_now":
                subscription, events = state.cancel_subscription(sub_id)
            else:
                params: Obj = {}
                if action == "cancel":
                    params["cancel_at_period_end"] = "true"
                elif action == "renew":
                    params["cancel_at_period_end"] = "false"
                if "cancel_at_period_end" in data:
                    params["cancel_at_period_end"] = "true" if parse_bool(data["cancel_at_period_end"],
                                                                          "cancel_at_period_end") else "false"
                item: Obj = {"id": subscription["items"]["data"][0]["id"]}
                if data.get("quantity") not in (None, ""):
                    item["quantity"] = str(parse_int(data["quantity"], "quantity"))
                if data.get("price"):
                    item["price"] = data["price"]
                if len(item) > 1:
                    params["items"] = [item]
                subscription, events = state.update_subscription(sub_id, params)
            result = {"subscription": state.public(json.loads(json.dumps(subscription)))}
        return 200, self._with_events(result, events)

    def _checkout_page(self, method: str, session_id: str) -> None:
        state = self.core.state
        form = parse_form(self._body()) if method == "POST" else {}
        with state.lock:
            session = state.checkout_sessions.get(session_id)
            if session is None:
                return self._html(404, pages.message_page("Checkout", "This checkout session does not exist."))
            if method == "GET" or session["status"] != "open":
                return self._html(200, pages.checkout_page(session, state.checkout_private[session_id]["line_items"]))
            result, events = state.complete_checkout(session_id, form.get("email") or None)
            success_url = (session["success_url"] or "").replace("{CHECKOUT_SESSION_ID}", session_id)
        self.core.route_events(events, from_api=False)
        self._redirect(success_url)

    def _portal_page(self, method: str, session_id: str, query: str) -> None:
        state = self.core.state
        form = parse_form(self._body()) if method == "POST" else {}
        with state.lock:
            session = state.portal_sessions.get(session_id)
            if session is None:
                return self._html(404, pages.message_page("Billing portal", "This portal session does not exist."))
        if method == "POST":
            sub_id = form.get("subscription", "")
            with state.lock:
                subscription = state.subscriptions.get(sub_id)
                if subscription is None or subscription["customer"] != session["customer"]:
                    return self._html(404, pages.message_page("Billing portal", "No such plan."))
            notices = {"seats": "Seats updated.", "cancel": "Plan cancelled.", "renew": "Plan renewed.",
                       "cancel_now": "Plan cancelled."}
            action = form.get("action", "")
            if action not in notices:
                return self._html(400, pages.message_page("Billing portal", "Unknown action."))
            try:
                self._portal_update(sub_id, {"action": action, "quantity": form.get("quantity")})
            except StripeError as exc:
                return self._html(400, pages.message_page("Billing portal", str(exc)))
            return self._redirect(f"/_fake/portal/{session_id}?{urlencode({'notice': notices[action]})}")
        notice = parse_qs(query).get("notice", [""])[-1]
        with state.lock:
            subscriptions = [s for s in state.subscriptions.values()
                             if s["customer"] == session["customer"] and s["status"] != "canceled"]
            page = pages.portal_page(session, subscriptions, notice)
        self._html(200, page)


def _required(data: Obj, key: str) -> Any:
    if not data.get(key):
        raise StripeError(f"Missing required field: {key}", param=key)
    return data[key]


class FakeStripeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], core: FakeStripeCore) -> None:
        super().__init__(address, FakeStripeHandler)
        self.core = core


def _address(httpd: FakeStripeHTTPServer) -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host!s}:{port}"


def _secrets(webhook_secret: str | list[str] | None) -> list[str]:
    if webhook_secret is None:
        return []
    return [webhook_secret] if isinstance(webhook_secret, str) else list(webhook_secret)


class FakeStripe(FakeStripeClient):
    """The fake, served from a thread of this process; control calls go over HTTP as they do
    for a fake in another process (`FakeStripeProcess`), so both behave the same."""

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | list[str] | None = None,
        prices: list[Obj] | None = None,
        api_events: str = "queue",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if api_events not in _API_EVENT_MODES:
            raise ValueError(f"api_events must be one of {_API_EVENT_MODES}")
        super().__init__("")
        self.core = FakeStripeCore(webhook_url, _secrets(webhook_secret), api_events)
        self._address = (host, port)
        self._prices = prices or []
        self._httpd: FakeStripeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeStripe:
        self._httpd = FakeStripeHTTPServer(self._address, self.core)
        self.base_url = _address(self._httpd)
        self.core.state.base_url = self.base_url
        self.core.start_worker()
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-stripe",
                                        daemon=True)
        self._thread.start()
        for price in self._prices:
            self.seed_price(**price)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.core.stop_worker()

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str, port: int, webhook_url: str | None, webhook_secrets: list[str], api_events: str) -> None:
    """Run in the foreground (python -m tests.fake_stripe); prints the address once it listens."""
    core = FakeStripeCore(webhook_url, webhook_secrets, api_events)
    httpd = FakeStripeHTTPServer((host, port), core)
    core.state.base_url = _address(httpd)
    core.start_worker()
    print(f"FAKE_STRIPE_READY {core.state.base_url}", flush=True)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        core.stop_worker()
