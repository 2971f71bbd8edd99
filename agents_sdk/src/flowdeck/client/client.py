"""A synchronous client of the Flowdeck REST API (``/api/v1``), for the agent, the flow-run process
and the CLI.

Failures it can outlive are retried inside each call: network errors, 5xx and 429, with exponential
backoff and jitter, honouring ``Retry-After``. Every POST carries an ``Idempotency-Key`` (a fresh
UUID unless the caller gives one), and the same key goes out on every retry of that POST, so a
report whose answer was lost is applied exactly once. Other errors become the exceptions of
:mod:`flowdeck.client.errors`, with the server's ``code``/``message``/``details``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

import flowdeck
from flowdeck.client.errors import (
    AuthenticationError,
    ConflictError,
    FlowdeckError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerUnavailableError,
)
from flowdeck.client.info import FlowRunInfo, flow_run_info, state_from_server
from flowdeck.client.retry import MAX_RETRY_AFTER_SECONDS, backoff_delay, parse_retry_after
from flowdeck.config import ENV_WORKSPACE, ConfigError, Settings, resolve_settings

API_PREFIX = "/api/v1"
MAX_PAGE = 200  # the server's page-size limit
# ``list_incidents(status=...)``: "active" is open or acknowledged; "all" is no filter.
INCIDENT_STATUSES = ("active", "open", "acknowledged", "resolved", "all")

JSON = dict[str, Any]


@dataclass
class _Connection:
    """What clones of one client share: the HTTP connection pool, the settings and the workspace
    slug once discovered."""

    http: httpx.Client
    settings: Settings
    workspace: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """The Flowdeck API for one workspace.

    ``api_url``, ``api_key`` and ``workspace`` default to ``FLOWDECK_API_URL``, ``FLOWDECK_API_KEY``
    and ``FLOWDECK_WORKSPACE``, then to the file written by ``flowdeck login``. Without a workspace
    the client asks the server which one the key belongs to (a key belongs to exactly one).

    ``retries`` is how many times a call is tried again after a network error, a 5xx or a 429
    (so up to ``retries + 1`` attempts); ``backoff_base``/``backoff_max`` shape the waits between them.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        workspace: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        _connection: _Connection | None = None,
    ) -> None:
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        if _connection is not None:
            self._conn = _connection
            self._owns_http = False
            return
        settings = resolve_settings(api_url, api_key, workspace)
        http = httpx.Client(
            base_url=settings.api_url,
            headers={
                "Authorization": f"Bearer {settings.api_key}",
                "User-Agent": f"flowdeck/{flowdeck.__version__}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )
        self._conn = _Connection(http=http, settings=settings, workspace=settings.workspace)
        self._owns_http = True

    # --- lifecycle ------------------------------------------------------------------------------

    def with_options(self, *, retries: int | None = None, timeout: float | None = None,
                     backoff_base: float | None = None, backoff_max: float | None = None) -> Client:
        """A client sharing this one's connection pool and settings with other retry/timeout
        choices (the reporter wants quick failures so it can spool to disk instead)."""
        return Client(
            timeout=self.timeout if timeout is None else timeout,
            retries=self.retries if retries is None else retries,
            backoff_base=self.backoff_base if backoff_base is None else backoff_base,
            backoff_max=self.backoff_max if backoff_max is None else backoff_max,
            _connection=self._conn,
        )

    def close(self) -> None:
        if self._owns_http:
            self._conn.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api_url(self) -> str:
        return self._conn.settings.api_url

    @property
    def workspace(self) -> str:
        """The workspace slug: configured, or discovered from the key on first use."""
        conn = self._conn
        if conn.workspace is not None:
            return conn.workspace
        with conn.lock:
            if conn.workspace is None:
                conn.workspace = self._discover_workspace()
            return conn.workspace

    def _discover_workspace(self) -> str:
        found = self._request("GET", f"{API_PREFIX}/workspaces/", scoped=False).json()
        items = found.get("results", found) if isinstance(found, dict) else found
        slugs = [w["slug"] for w in items if isinstance(w, dict) and w.get("slug")]
        if len(slugs) == 1:
            return str(slugs[0])
        if not slugs:
            raise ConfigError(
                f"This API key belongs to no workspace; set {ENV_WORKSPACE} or pass workspace=.",
                code="workspace_unknown")
        raise ConfigError(
            f"This key can see {len(slugs)} workspaces ({', '.join(slugs)}); choose one with "
            f"{ENV_WORKSPACE}, workspace=, or `flowdeck login --workspace`.", code="workspace_ambiguous")

    # --- transport ------------------------------------------------------------------------------

    def _url(self, path: str, scoped: bool) -> str:
        if not scoped:
            return path
        return f"{API_PREFIX}/workspaces/{self.workspace}/{path.lstrip('/')}"

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        allow: Sequence[int] = (),
        scoped: bool = True,
    ) -> httpx.Response:
        """One logical call: retried on network errors, 5xx and 429; other errors raised as
        FlowdeckError subclasses unless their status is in ``allow``."""
        url = self._url(path, scoped)
        headers: dict[str, str] = {}
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        query = {k: v for k, v in (params or {}).items() if v is not None}
        retry = 0
        while True:
            try:
                response = self._conn.http.request(method, url, json=json, params=query, headers=headers,
                                                   timeout=self.timeout)
            except httpx.TransportError as exc:
                if retry >= self.retries:
                    raise ServerUnavailableError(
                        f"Could not reach Flowdeck at {self.api_url} ({type(exc).__name__}: {exc or 'no answer'}) "
                        f"after {retry + 1} attempt(s) of {method} {url}.",
                        code="unreachable",
                    ) from exc
                time.sleep(backoff_delay(retry, base=self.backoff_base, cap=self.backoff_max))
                retry += 1
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if retry >= self.retries or (wait is not None and wait > MAX_RETRY_AFTER_SECONDS):
                    raise _error_from(response, method, url, attempts=retry + 1)
                time.sleep(wait if wait is not None else backoff_delay(retry, base=self.backoff_base,
                                                                        cap=self.backoff_max))
                retry += 1
                continue
            if status >= 400 and status not in allow:
                raise _error_from(response, method, url, attempts=retry + 1)
            return response

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=params).json()

    def _post(self, path: str, body: Any, *, idempotency_key: str | None = None,
              allow: Sequence[int] = ()) -> httpx.Response:
        return self._request("POST", path, json=body, idempotency_key=idempotency_key, allow=allow)

    def _pages(self, path: str, params: Mapping[str, Any], limit: int | None) -> Iterator[JSON]:
        """Items of a cursor-paginated listing, following ``next`` until ``limit`` items."""
        query = dict(params)
        seen = 0
        while True:
            page_size = MAX_PAGE if limit is None else max(1, min(MAX_PAGE, limit - seen))
            page = self._get(path, **query, limit=page_size)
            if isinstance(page, list):  # an unpaginated listing
                yield from page if limit is None else page[: max(0, limit - seen)]
                return
            for item in page.get("results", []):
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            cursor = _cursor_of(page.get("next"))
            if not cursor:
                return
            query["cursor"] = cursor

    # --- identity -------------------------------------------------------------------------------

    def me(self) -> JSON:
        """Who the key is: ``{"user": … or None, "workspaces": [...]}``."""
        body: JSON = self._request("GET", f"{API_PREFIX}/me/", scoped=False).json()
        return body

    # --- agent protocol -------------------------------------------------------------------------

    def register_agent(self, name: str, type: str, labels: Sequence[str], version: str,
                       poll_interval_seconds: int, *, idempotency_key: str | None = None) -> JSON:
        """Register the agent (or get the same record back after a restart)."""
        body = {"name": name, "type": type, "labels": list(labels), "version": version,
                "poll_interval_seconds": poll_interval_seconds}
        result: JSON = self._post("agents/", body, idempotency_key=idempotency_key).json()
        return result

    def agent_heartbeat(self, agent_id: str, *, polled: bool, idempotency_key: str | None = None,
                        flow_runs: Sequence[Mapping[str, Any]] | None = None) -> JSON:
        """``{"status", "server_time", "poll_interval_seconds", "cancel_flow_run_ids",
        "lost_flow_run_ids"}``; ``flow_runs`` (``{"id", "attempt"}``) are the runs the agent runs, of
        which ``lost_flow_run_ids`` names those it no longer holds."""
        body: JSON = {"polled": polled}
        if flow_runs:
            body["flow_runs"] = [dict(run) for run in flow_runs]
        result: JSON = self._post(f"agents/{agent_id}/heartbeat/", body, idempotency_key=idempotency_key).json()
        return result

    def agent_stop(self, agent_id: str) -> JSON:
        """Tell the server the agent is shutting down cleanly: it shows ``stopped`` at once instead of
        healthy until its liveness window runs out. ``{"agent_id", "status", "stopped_at"}``."""
        result: JSON = self._post(f"agents/{agent_id}/stop/", {}).json()
        return result

    def claim(self, agent_id: str, *, limit: int, lease_seconds: int, lookahead_seconds: int | None = None,
              idempotency_key: str | None = None) -> list[JSON]:
        """Claim due runs this agent's labels cover (and, with ``lookahead_seconds``, runs due within
        that many seconds); each claimed run is PENDING and held by it."""
        body = {"limit": limit, "lease_seconds": lease_seconds}
        if lookahead_seconds:
            body["lookahead_seconds"] = int(lookahead_seconds)
        result = self._post(f"agents/{agent_id}/claim/", body, idempotency_key=idempotency_key).json()
        return list(result.get("results", []))

    def set_flow_run_state(self, flow_run_id: str, state: Mapping[str, Any], *, attempt: int,
                           expected_version: int | None = None, idempotency_key: str | None = None) -> JSON:
        """Propose a flow-run state. Returns the orchestration answer (``status`` ACCEPT, WAIT, REJECT
        or ABORT, and the run's ``state``) for 200 and for a 409 REJECT/ABORT alike; a 409 without a
        status (``stale_state_version``) raises ConflictError."""
        body: JSON = {"state": dict(state), "attempt": attempt}
        if expected_version is not None:
            body["expected_version"] = expected_version
        response = self._post(f"flow-runs/{flow_run_id}/set-state/", body, idempotency_key=idempotency_key,
                              allow=(409,))
        answer = _json_or_empty(response)
        if response.status_code == 409 and answer.get("status") not in ("REJECT", "ABORT"):
            raise _error_from(response, "POST", f"flow-runs/{flow_run_id}/set-state/")
        return answer

    def flow_run_heartbeat(self, flow_run_id: str, *, attempt: int, lease_seconds: int | None = None,
                           idempotency_key: str | None = None) -> JSON:
        """Extend the run's lease (by ``lease_seconds``, 10–3600; the server's default is 60).
        ``{"cancellation_requested", "lease_expires_at", "state_type", "attempt"}``; a 409 (stale
        attempt, run no longer held) raises ConflictError: stop the run."""
        body: dict[str, Any] = {"attempt": attempt}
        if lease_seconds is not None:
            body["lease_seconds"] = int(lease_seconds)
        result: JSON = self._post(f"flow-runs/{flow_run_id}/heartbeat/", body, idempotency_key=idempotency_key).json()
        return result

    def report_task_runs(self, flow_run_id: str, *, attempt: int, reports: Sequence[Mapping[str, Any]],
                         idempotency_key: str | None = None) -> list[JSON]:
        """Report up to 5,000 task-run states, applied in order; one answer per report. A stale
        attempt raises ConflictError (nothing was applied)."""
        body = {"attempt": attempt, "reports": [dict(r) for r in reports]}
        result = self._post(f"flow-runs/{flow_run_id}/task-runs/", body, idempotency_key=idempotency_key).json()
        return list(result.get("results", []))

    def flow_run_report(self, flow_run_id: str, *, attempt: int, heartbeat: bool = False,
                        lease_seconds: int | None = None, task_runs: Sequence[Mapping[str, Any]] | None = None,
                        logs: Sequence[Mapping[str, Any]] | None = None, state: Mapping[str, Any] | None = None,
                        expected_version: int | None = None, idempotency_key: str | None = None) -> JSON:
        """What :meth:`flow_run_heartbeat`, :meth:`report_task_runs`, :meth:`send_logs` and
        :meth:`set_flow_run_state` send, in one request, applied in that order in one transaction
        (a heartbeat when ``heartbeat`` or ``lease_seconds`` is given; the other parts when given).
        Returns each part's answer under ``heartbeat``, ``task_runs`` (``{"results"}``), ``logs``
        (``{"count"}``) and ``state`` — for 200 and for a 409 whose state is REJECT/ABORT alike (the
        other parts were applied). A 409 of another kind (stale attempt) raises ConflictError and
        nothing was applied. A server older than this endpoint answers 404 (NotFoundError) or 405
        (InvalidRequestError): send the parts with their own calls."""
        body: JSON = {"attempt": attempt}
        if heartbeat or lease_seconds is not None:
            body["heartbeat"] = {} if lease_seconds is None else {"lease_seconds": int(lease_seconds)}
        if task_runs:
            body["task_runs"] = [dict(r) for r in task_runs]
        if logs:
            body["logs"] = [dict(line) for line in logs]
        if state is not None:
            body["state"] = dict(state)
            if expected_version is not None:
                body["expected_version"] = expected_version
        path = f"flow-runs/{flow_run_id}/report/"
        response = self._post(path, body, idempotency_key=idempotency_key, allow=(409,))
        reply = _json_or_empty(response)
        answer = reply.get("state")
        if response.status_code == 409 and not (isinstance(answer, dict)
                                                and answer.get("status") in ("REJECT", "ABORT")):
            raise _error_from(response, "POST", path)
        return reply

    def send_logs(self, flow_run_id: str, lines: Sequence[Mapping[str, Any]], *,
                  idempotency_key: str | None = None) -> int:
        """Send up to 1,000 log lines; returns how many were new (a re-sent line is stored once)."""
        result = self._post(f"flow-runs/{flow_run_id}/logs/", {"lines": [dict(line) for line in lines]},
                            idempotency_key=idempotency_key).json()
        return int(result.get("count", 0))

    # --- flows ----------------------------------------------------------------------------------

    def register_flow(self, *, project: str, name: str, metadata: Mapping[str, Any]) -> tuple[JSON, bool]:
        """Register a flow's metadata in ``project`` (created if needed). Returns ``(version, created)``:
        unchanged metadata gives back the existing version with ``created=False``. ``version["flow"]``
        is the flow's id."""
        body = {"project": project, "name": name, "metadata": dict(metadata)}
        result = self._post("flows/register/", body).json()
        version: JSON = dict(result["version"])
        return version, bool(result.get("created"))

    def list_flows(self, *, project: str | None = None, name: str | None = None,
                   limit: int | None = None) -> list[JSON]:
        """Flows visible to the key, by name; ``project`` is a project id or name."""
        project_id = project if project is None or _is_uuid(project) else None
        flows = list(self._pages("flows/", {"project": project_id, "name": name}, limit))
        if project is not None and project_id is None:
            flows = [f for f in flows if f.get("project_name") == project]
        return flows

    def get_flow(self, id_or_name: str, *, project: str | None = None) -> JSON:
        """A flow by id, or by name (``project``, an id or a name, settles a name used in several
        projects)."""
        if _is_uuid(id_or_name):
            result: JSON = self._get(f"flows/{id_or_name}/")
            return result
        flows = self.list_flows(project=project, name=id_or_name)
        if not flows:
            where = f" in project '{project}'" if project else ""
            raise NotFoundError(f"No flow named '{id_or_name}'{where} in workspace '{self.workspace}'.",
                                status=404, code="not_found",
                                hint="Register it first with `flowdeck register`, or check the name.")
        if len(flows) > 1:
            projects = ", ".join(sorted(str(f.get("project_name")) for f in flows))
            raise InvalidRequestError(f"Several flows are named '{id_or_name}' (projects: {projects}).",
                                      code="ambiguous_flow", hint="Choose one with --project / project=.")
        return flows[0]

    # --- flow runs ------------------------------------------------------------------------------

    def create_flow_run(self, flow_id: str, *, parameters: Mapping[str, Any] | None = None,
                        labels: Sequence[str] | None = None, name: str | None = None,
                        idempotency_key: str | None = None, scheduled_start: datetime | str | None = None,
                        flow_version: str | None = None, parent_flow_run: str | None = None,
                        parent_task_run: str | None = None, run_name: str | None = None,
                        scheduled_start_time: datetime | str | None = None) -> JSON:
        """Create a run of ``flow_id`` (a quick run unless ``scheduled_start`` is later). The body
        always carries an ``idempotency_key`` (a fresh one by default) so a retried call cannot
        create the run twice; the same key later returns the same run. ``parent_flow_run`` /
        ``parent_task_run`` link the new run to the run (task run) that starts it (flow of flows).

        ``run_name`` and ``scheduled_start_time`` are Prefect 1's names of ``name`` and
        ``scheduled_start``. Unlike Prefect 1, which returns the new run's id, this returns the run
        (its id is ``run["id"]``)."""
        name = _one_of("name", name, "run_name", run_name)
        scheduled_start = _one_of("scheduled_start", scheduled_start, "scheduled_start_time", scheduled_start_time)
        body: JSON = {"flow": flow_id, "idempotency_key": idempotency_key or str(uuid.uuid4())}
        if parameters is not None:
            body["parameters"] = dict(parameters)
        if labels is not None:
            body["labels"] = list(labels)
        if name is not None:
            body["name"] = name
        if scheduled_start is not None:
            body["scheduled_start"] = (scheduled_start.isoformat() if isinstance(scheduled_start, datetime)
                                       else scheduled_start)
        if flow_version is not None:
            body["flow_version"] = flow_version
        if parent_flow_run is not None:
            body["parent_flow_run"] = parent_flow_run
        if parent_task_run is not None:
            body["parent_task_run"] = parent_task_run
        result: JSON = self._post("flow-runs/", body).json()
        return result

    def create_flow_runs(self, flow_id: str, runs: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create up to 5,000 runs of ``flow_id`` in one request; each item may have ``parameters``,
        ``labels``, ``name``, ``scheduled_start`` and ``idempotency_key`` (a fresh key is added to
        items without one, so a retried call cannot create a run twice). Returns the runs' ids in
        the items' order; an invalid item refuses the whole call."""
        items = [{**item, "idempotency_key": item.get("idempotency_key") or str(uuid.uuid4())} for item in runs]
        result: JSON = self._post("flow-runs/bulk/", {"flow": flow_id, "runs": items}).json()
        return [str(run_id) for run_id in result.get("ids", [])]

    def get_flow_run(self, flow_run_id: str) -> JSON:
        """A run with its ``task_runs`` and state history (``states``)."""
        result: JSON = self._get(f"flow-runs/{flow_run_id}/")
        return result

    def list_flow_runs(self, *, flow: str | None = None, state_type: str | Sequence[str] | None = None,
                       state_name: str | None = None, labels: Sequence[str] | None = None,
                       scheduled_before: datetime | str | None = None, scheduled_after: datetime | str | None = None,
                       created_by: str | None = None, parent_flow_run: str | None = None,
                       limit: int | None = 50) -> list[JSON]:
        """Runs, newest first, filtered like the REST listing (``parent_flow_run``: the child runs
        that run started); at most ``limit`` (None: all)."""
        params = {
            "flow": flow,
            "state_type": state_type if isinstance(state_type, str) or state_type is None else ",".join(state_type),
            "state_name": state_name,
            "labels": ",".join(labels) if labels else None,
            "scheduled_before": _iso(scheduled_before),
            "scheduled_after": _iso(scheduled_after),
            "created_by": created_by,
            "parent_flow_run": parent_flow_run,
        }
        return list(self._pages("flow-runs/", params, limit))

    def list_flow_run_states(self, flow_run_id: str, *, after: int | None = None, limit: int = 200) -> JSON:
        """One page of the run's state history, in the order the run passed through the states:
        ``{"results": [...], "next_after"}``; pass ``next_after`` back as ``after`` for the states
        that came since. Each state has ``id``, ``type``, ``name``, ``message``, ``timestamp``,
        ``details``."""
        result: JSON = self._get(f"flow-runs/{flow_run_id}/states/", after=after, limit=limit)
        return result

    def cancel_flow_run(self, flow_run_id: str) -> JSON:
        """Request cancellation: CANCELLING while an agent holds the run, else CANCELLED at once."""
        result: JSON = self._post(f"flow-runs/{flow_run_id}/cancel/", {}).json()
        return result

    def list_task_runs(self, flow_run_id: str) -> list[JSON]:
        """The run's task runs (from the run detail)."""
        return list(self.get_flow_run(flow_run_id).get("task_runs", []))

    def list_logs(self, flow_run_id: str, *, after_sequence: int | None = None, level_gte: int | None = None,
                  limit: int = 200) -> JSON:
        """One page of the run's logs in sequence order: ``{"results": [...], "next_after_sequence"}``;
        pass ``next_after_sequence`` back as ``after_sequence`` for the next page."""
        result: JSON = self._get(f"flow-runs/{flow_run_id}/logs/", after_sequence=after_sequence,
                                 level_gte=level_gte, limit=limit)
        return result

    # --- Prefect 1 names ------------------------------------------------------------------------
    # What Prefect 1 code calls on ``prefect.Client``, where Flowdeck has the same operation.

    def register(self, flow: Any, project_name: str, build: bool = True, no_url: bool = False,
                 idempotency_key: str | None = None) -> str:
        """Register ``flow`` in project ``project_name``; returns the flow's id (as Prefect 1).

        ``build``, ``no_url`` and ``idempotency_key`` are accepted and change nothing: Flowdeck
        storage has nothing to build, prints no URL, and registering unchanged metadata already
        returns the existing version."""
        version, _created = self.register_flow(project=project_name, name=flow.name, metadata=flow.serialize())
        return str(version["flow"])

    def get_flow_run_info(self, flow_run_id: str) -> FlowRunInfo:
        """The run with its state and its task runs' states as state objects (Prefect 1's shape)."""
        return flow_run_info(self.get_flow_run(flow_run_id))

    def get_flow_run_state(self, flow_run_id: str) -> Any:
        """The run's current state as a ``flowdeck.engine.state`` object."""
        run = self.get_flow_run(flow_run_id)
        return state_from_server(run.get("state_type"), run.get("state_name"), run.get("state_message"))

    # --- agents ---------------------------------------------------------------------------------

    def list_agents(self, *, limit: int | None = None) -> list[JSON]:
        """The workspace's agents with their health (``status``)."""
        return list(self._pages("agents/", {}, limit))

    # --- SLA alerts -----------------------------------------------------------------------------

    def list_incidents(self, *, status: str = "active", flow: str | None = None, project: str | None = None,
                       flow_run: str | None = None, policy: str | None = None, limit: int | None = 50) -> list[JSON]:
        """SLA incidents, newest first: ``status`` is "active" (open or acknowledged, the default),
        "open", "acknowledged", "resolved" or "all"; ``flow`` a flow id or name (``project`` settles a
        name used in several projects). Each has ``id``, ``policy_id``, ``policy_name``, ``kind``,
        ``severity``, ``title``, ``cause``, ``status``, ``flow_id``, ``flow_name``, ``run_count``,
        ``opened_at``, ``acknowledged_at``, ``resolved_at``, ``snoozed_until``."""
        if status not in INCIDENT_STATUSES:
            raise InvalidRequestError(f"Unknown incident status {status!r}; choose one of "
                                      f"{', '.join(INCIDENT_STATUSES)}.", code="invalid_status")
        flow_id = flow
        if flow is not None and not _is_uuid(flow):
            flow_id = str(self.get_flow(flow, project=project)["id"])
        params = {"status": None if status == "all" else status, "flow": flow_id, "flow_run": flow_run,
                  "policy": policy}
        return list(self._pages("incidents/", params, limit))

    def get_incident(self, incident_id: str) -> JSON:
        """An incident with its affected ``runs`` and its timeline (``events``)."""
        result: JSON = self._get(f"incidents/{incident_id}/")
        return result

    def list_sla_policies(self, *, limit: int | None = None) -> list[JSON]:
        """The workspace's SLA policies visible to the key (``from_registration`` marks those declared
        with a flow and kept by ``flowdeck register``)."""
        return list(self._pages("sla-policies/", {}, limit))


# --- helpers ------------------------------------------------------------------------------------


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """``value``, or its Prefect 1 spelling ``alias_value``; both given (and different) is an error."""
    if alias_value is None:
        return value
    if value is not None and value != alias_value:
        raise TypeError(f"Give {name}= or {alias}= (the same setting), not both.")
    return alias_value


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _cursor_of(next_url: Any) -> str | None:
    if not isinstance(next_url, str) or not next_url:
        return None
    values = parse_qs(urlsplit(next_url).query).get("cursor")
    return values[0] if values else None


def _json_or_empty(response: httpx.Response) -> JSON:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _summarize_details(details: Any, message: str, limit: int = 5) -> str:
    """``path: problem`` pairs from a 400's details that the message does not already say."""
    if not isinstance(details, dict) or not details:
        return ""
    parts: list[str] = []
    for key, value in details.items():
        if len(parts) >= limit:
            parts.append("…")
            break
        problem = value[0] if isinstance(value, list) and value and isinstance(value[0], str) else value
        if isinstance(problem, str) and problem not in message:
            parts.append(f"{key}: {problem}")
    return "; ".join(parts)


def _error_from(response: httpx.Response, method: str, url: str, *, attempts: int = 1) -> FlowdeckError:
    """The exception for an error response, built from ``{"error": {"code", "message", "details"}}``."""
    status = response.status_code
    error = _json_or_empty(response).get("error")
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or f"http_{status}")
    message = str(error.get("message") or response.reason_phrase or f"HTTP {status}").strip()
    details = error.get("details") or {}
    where = f"{method} {url}"
    kwargs: dict[str, Any] = {"status": status, "code": code, "details": details}
    if status == 401:
        return AuthenticationError(
            f"Flowdeck refused the API key ({code}): {message}",
            hint="Check FLOWDECK_API_KEY, or run `flowdeck login --url URL --key KEY` with a valid key.", **kwargs)
    if status == 402:
        # The server's words say which limit, the usage and how to raise it: shown as they are.
        return PaymentRequiredError(message, **kwargs)
    if status == 403:
        return PermissionDeniedError(f"Permission denied ({code}): {message}",
                                     hint=f"The key in use may not {where}; use a key whose role may.", **kwargs)
    if status == 404:
        return NotFoundError(f"Not found: {where} ({message})", **kwargs)
    if status == 409:
        return ConflictError(f"Conflict ({code}): {message}", **kwargs)
    if status == 429:
        return RateLimitedError(f"Flowdeck is rate limiting this client ({message}); gave up after {attempts} "
                                f"attempt(s) of {where}.", retry_after=parse_retry_after(
                                    response.headers.get("Retry-After")), **kwargs)
    if status >= 500:
        return ServerUnavailableError(f"The Flowdeck server failed with HTTP {status} ({message}) on {where} "
                                      f"after {attempts} attempt(s).", **kwargs)
    summary = _summarize_details(details, message)
    text = f"Invalid request ({code}): {message}"
    if summary:
        text = f"{text} [{summary}]"
    return InvalidRequestError(text, **kwargs)
