"""The combined agent report (``POST flow-runs/{id}/report/``): a heartbeat, task-run states, log
lines and a flow-run state of one attempt in one request, so a flow-run process sends RUNNING with
its first heartbeat and its final state with the last task states and logs (docs/api.md, agent
section). A thin adapter over ``services/reports.py``; the separate endpoints stay for other clients.

Status codes follow set-state: a REJECT/ABORT of the state → 409 with the whole reply (the other
parts were applied) and an ``error``; WAIT → 200 with ``retry_after_seconds`` in the state part.
Idempotent with an ``Idempotency-Key`` like every agent POST."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.guard import WorkspaceAPIView
from orchestration.engine import ProposedState
from orchestration.selectors import access_flow_run
from orchestration.services import reports

from . import serializers as s
from .views import IDEMPOTENCY_KEY_REUSED, _idempotent, _result_body, _set_state_body, _valid


def _task_run_reports(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task-run batch service's report shape (as the task-runs endpoint builds it)."""
    return [
        {"task_key": r["task_key"], "map_index": r["map_index"], "state_type": r["state"]["type"],
         "state_name": r["state"]["name"], "message": r["state"]["message"],
         "result_ref": r["state"]["result_ref"], "expected_version": r.get("expected_version")}
        for r in items
    ]


def _reply(outcome: reports.ReportOutcome) -> tuple[int, dict[str, Any]]:
    code, body = status.HTTP_200_OK, {}
    if outcome.heartbeat is not None:
        body["heartbeat"] = outcome.heartbeat
    if outcome.task_runs is not None:
        body["task_runs"] = {"results": [_result_body(r) for r in outcome.task_runs]}
    if outcome.logs is not None:
        body["logs"] = {"count": outcome.logs}
    if outcome.state is not None:
        code, state_body = _set_state_body(outcome.state)
        error = state_body.pop("error", None)
        body["state"] = state_body
        if error is not None:
            body["error"] = error  # a client that knows only the error shape still reads why
    return code, body


class FlowRunReportView(WorkspaceAPIView):
    scope_map = {"POST": "flow_run:report_state"}

    @extend_schema(
        request=s.FlowRunReportIn,
        responses={200: s.FlowRunReportOut, 409: s.FlowRunReportOut, 422: IDEMPOTENCY_KEY_REUSED},
        summary="Report a heartbeat, task-run states, log lines and a flow state in one request (agent); "
                "applied in that order in one transaction. State REJECT/ABORT → 409; WAIT → 200",
    )
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.FlowRunReportIn, request)
        run = access_flow_run(self.principal, flow_run_id, action="flow_run:report_state")
        heartbeat = data.get("heartbeat")
        items = data.get("task_runs")
        lines = data.get("logs")
        state = data.get("state")

        def compute() -> tuple[int, dict]:
            outcome = reports.flow_run_report(
                actor=self.principal, flow_run=run, attempt=data["attempt"],
                lease_seconds=None if heartbeat is None else heartbeat["lease_seconds"],
                task_run_reports=None if items is None else _task_run_reports(items),
                log_lines=None if lines is None else [dict(line) for line in lines],
                state=None if state is None else ProposedState(**dict(state)),
                expected_version=data.get("expected_version"),
            )
            return _reply(outcome)

        return _idempotent(self, request, f"flow_run:{run.pk}:report", compute)
