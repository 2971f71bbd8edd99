"""What a notification says, per channel kind: built once, when the delivery is queued, and stored
on it (``NotificationDelivery.payload``), so every try sends the same body. Secrets are not part of
it: the webhook signature, PagerDuty's routing key and the e-mail recipients are added at send time.

- webhook: a JSON document (``type`` incident.opened | incident.resolved | test, the incident with
  its runs and links);
- slack: ``{"text", "blocks"}`` for a Slack-compatible incoming webhook;
- pagerduty: an Events API v2 event (trigger on opening, resolve on resolution, dedup key = the
  incident id, so PagerDuty closes the page it opened);
- email: ``{"subject", "text"}``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from orchestration.models import Incident, IncidentRun, NotificationChannel

Kind = NotificationChannel.Kind
MAX_RUNS_LISTED = 50
MAX_SLACK_RUNS = 10
EVENT_TYPES = {"opened": "incident.opened", "resolved": "incident.resolved", "test": "test"}


def event_type(event: str) -> str:
    """The ``Flowdeck-Event`` header and the webhook body's ``type``."""
    return EVENT_TYPES[event]


def _base_url(slug: str) -> str:
    return f"{settings.FLOWDECK_BASE_URL}/w/{slug}"


def run_url(slug: str, run_id: Any) -> str:
    return f"{_base_url(slug)}/runs/{run_id}"


def incident_url(slug: str, incident_id: Any) -> str:
    return f"{_base_url(slug)}/alerts/incidents/{incident_id}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def incident_document(incident: Incident, slug: str) -> dict[str, Any]:
    """The incident as every message describes it (the webhook body carries it whole)."""
    rows = (IncidentRun.objects.for_workspace(incident.workspace_id).filter(incident=incident)
            .select_related("flow_run").order_by("added_at", "id"))
    runs = [
        {"id": str(row.flow_run_id), "name": row.flow_run.name, "state_type": row.flow_run.state_type,
         "state_name": row.flow_run.state_name, "url": run_url(slug, row.flow_run_id)}
        for row in rows[:MAX_RUNS_LISTED]
    ]
    return {
        "id": str(incident.pk),
        "url": incident_url(slug, incident.pk),
        "title": incident.title,
        "cause": incident.cause,
        "kind": incident.kind,
        "severity": incident.severity,
        "status": incident.status,
        "policy_id": str(incident.policy_id) if incident.policy_id else None,
        "policy_name": incident.policy_name,
        "flow_id": str(incident.flow_id) if incident.flow_id else None,
        "flow_name": incident.flow.name if incident.flow_id and incident.flow else None,
        "opened_at": _iso(incident.opened_at),
        "resolved_at": _iso(incident.resolved_at),
        "resolved_by": incident.resolved_by or None,
        "run_count": rows.count() if len(runs) == MAX_RUNS_LISTED else len(runs),
        "runs": runs,
        "details": incident.details,
    }


def _headline(event: str, doc: dict[str, Any] | None, channel_name: str) -> str:
    if doc is None:
        return f"Test notification from Flowdeck: the channel '{channel_name}' works."
    prefix = "Resolved" if event == "resolved" else ("Warning" if doc["severity"] == "warning" else "Alert")
    return f"[{prefix}] {doc['title']}"


def _lines(event: str, doc: dict[str, Any]) -> list[str]:
    lines = []
    if doc["cause"]:
        lines.append(doc["cause"])
    lines.append(f"Policy: {doc['policy_name']} ({doc['kind']}, {doc['severity']})")
    if doc["flow_name"]:
        lines.append(f"Flow: {doc['flow_name']}")
    if event == "resolved":
        by = f" by {doc['resolved_by']}" if doc["resolved_by"] else " (the condition cleared)"
        lines.append(f"Resolved at {doc['resolved_at']}{by}.")
    else:
        lines.append(f"Opened at {doc['opened_at']}.")
    return lines


def _webhook(delivery_id: str, event: str, doc: dict[str, Any] | None, workspace: Any,
             channel_name: str) -> dict[str, Any]:
    return {
        "id": delivery_id,
        "type": event_type(event),
        "created_at": timezone.now().isoformat(),
        "workspace": {"id": str(workspace.pk), "slug": workspace.slug, "name": workspace.name},
        "summary": _headline(event, doc, channel_name),
        "incident": doc,
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(event: str, doc: dict[str, Any] | None, channel_name: str) -> dict[str, Any]:
    headline = _headline(event, doc, channel_name)
    if doc is None:
        return {"text": headline, "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                          "text": _slack_escape(headline)}}]}
    title = f"*<{doc['url']}|{_slack_escape(headline)}>*"
    body = "\n".join(_slack_escape(line) for line in _lines(event, doc))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{body}"}}]
    if doc["runs"]:
        listed = ", ".join(f"<{run['url']}|{_slack_escape(run['name'])}>" for run in doc["runs"][:MAX_SLACK_RUNS])
        more = doc["run_count"] - min(len(doc["runs"]), MAX_SLACK_RUNS)
        suffix = f" and {more} more" if more > 0 else ""
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"{doc['run_count']} run(s): {listed}{suffix}"}]})
    return {"text": headline, "blocks": blocks}


def _pagerduty(delivery_id: str, event: str, doc: dict[str, Any] | None, channel_name: str) -> dict[str, Any]:
    if doc is None:
        # A test opens a PagerDuty alert of its own (info severity), keyed by the delivery.
        return {"event_action": "trigger", "dedup_key": f"flowdeck-test-{delivery_id}",
                "payload": {"summary": _headline(event, None, channel_name), "source": "flowdeck",
                            "severity": "info", "custom_details": {"channel": channel_name}}}
    body: dict[str, Any] = {
        "event_action": "resolve" if event == "resolved" else "trigger",
        "dedup_key": doc["id"],
        "payload": {
            "summary": doc["title"][:1024],
            "source": "flowdeck",
            "severity": "warning" if doc["severity"] == "warning" else "critical",
            "custom_details": {"cause": doc["cause"], "policy": doc["policy_name"], "kind": doc["kind"],
                               "flow": doc["flow_name"], "run_count": doc["run_count"],
                               "runs": [run["url"] for run in doc["runs"][:MAX_SLACK_RUNS]]},
        },
        "client": "Flowdeck",
        "client_url": doc["url"],
        "links": [{"href": doc["url"], "text": "The incident in Flowdeck"}],
    }
    return body


def _email(event: str, doc: dict[str, Any] | None, channel_name: str) -> dict[str, Any]:
    headline = _headline(event, doc, channel_name)
    if doc is None:
        return {"subject": f"[Flowdeck] {headline}",
                "text": f"{headline}\n\nThis is a test sent from the channel's page in Flowdeck.\n"}
    parts = [headline, "", *_lines(event, doc), "", f"Incident: {doc['url']}"]
    if doc["runs"]:
        parts += ["", f"Runs ({doc['run_count']}):"]
        parts += [f"- {run['name']} ({run['state_name'] or run['state_type']}): {run['url']}" for run in doc["runs"]]
        if doc["run_count"] > len(doc["runs"]):
            parts.append(f"… and {doc['run_count'] - len(doc['runs'])} more.")
    return {"subject": f"[Flowdeck] {headline}", "text": "\n".join(parts) + "\n"}


def build_payload(channel: NotificationChannel, *, delivery_id: Any, event: str,
                  document: dict[str, Any] | None) -> dict[str, Any]:
    """The stored body of one delivery of ``event`` (opened, resolved, test) to ``channel``;
    ``document`` is :func:`incident_document` (None for a test)."""
    workspace = channel.workspace
    doc = document
    if channel.kind == Kind.WEBHOOK:
        return _webhook(str(delivery_id), event, doc, workspace, channel.name)
    if channel.kind == Kind.SLACK:
        return _slack(event, doc, channel.name)
    if channel.kind == Kind.PAGERDUTY:
        return _pagerduty(str(delivery_id), event, doc, channel.name)
    return _email(event, doc, channel.name)
