import { useEffect, useState } from "react";
import { Link, useParams } from "react-router";

import {
  acknowledgeIncident,
  fetchIncident,
  kindLabel,
  parseJson,
  resolveIncident,
  snoozeIncident,
} from "../../api/alerts";
import { errorMessage } from "../../api/graphql";
import { StateBadge } from "../../components/orchestration";
import { Alert, ConfirmButton, EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";
import { AlertsNav, canManageAlerts, IncidentStatusBadge, SeverityBadge } from "./common";

const SNOOZES: { minutes: number; label: string }[] = [
  { minutes: 15, label: "15 min" },
  { minutes: 60, label: "1 h" },
  { minutes: 240, label: "4 h" },
];

const EVENT_LABELS: Record<string, string> = {
  opened: "Opened",
  runs_added: "Runs added",
  acknowledged: "Acknowledged",
  snoozed: "Snoozed",
  unsnoozed: "Snooze ended",
  resolved: "Resolved",
  action: "Action",
  notified: "Notified",
  notification_failed: "Notification failed",
};

function Details({ value }: { value: unknown }) {
  const parsed = parseJson(value);
  if (parsed === null || parsed === undefined) return null;
  if (typeof parsed === "object" && Object.keys(parsed as object).length === 0) return null;
  return (
    <details className="incident-details">
      <summary>Details</summary>
      <pre className="json" data-testid="incident-details">
        {typeof parsed === "string" ? parsed : JSON.stringify(parsed, null, 2)}
      </pre>
    </details>
  );
}

export function IncidentPage() {
  const { workspace } = useWorkspace();
  const slug = workspace.slug;
  const { incidentId = "" } = useParams();
  const incident = useAsync(() => fetchIncident(slug, incidentId), [slug, incidentId]);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  useFallbackPolling(incident.reload, 10000);
  useLiveRefresh(
    (message) =>
      message.kind === "resync" ||
      (message.kind === "event" && message.event.type.startsWith("incident.") && message.event.data.id === incidentId),
    incident.reload,
    250,
  );

  useEffect(() => {
    if (incident.data) document.title = `${incident.data.title} · Flowdeck`;
  }, [incident.data]);

  if (incident.error && !incident.data) return <ErrorState error={incident.error} onRetry={() => void incident.reload()} />;
  if (!incident.data && incident.loading) return <Spinner label="Loading incident…" />;
  const i = incident.data;
  if (!i) {
    return (
      <div className="stack-lg">
        <AlertsNav slug={slug} />
        <div className="card not-found">
          <h2>Incident not found</h2>
          <p>This incident does not exist in this workspace, or you cannot see it.</p>
          <Link to={`/w/${slug}/alerts/incidents`} className="btn btn-secondary">
            All incidents
          </Link>
        </div>
      </div>
    );
  }

  const manage = canManageAlerts(workspace.viewerRole);
  const active = i.status !== "resolved";
  const act = async (fn: () => Promise<void>, text: string) => {
    setBusy(true);
    setNotice(null);
    try {
      await fn();
      setNotice({ kind: "success", text });
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
    await incident.reload();
    setBusy(false);
  };

  return (
    <div className="stack-lg">
      <AlertsNav slug={slug} />
      <div>
        <p className="breadcrumbs">
          <Link to={`/w/${slug}/alerts/incidents`}>Incidents</Link> / {kindLabel(i.kind)}
        </p>
        <div className="run-head">
          <h2 data-testid="incident-title">{i.title}</h2>
          <SeverityBadge severity={i.severity} />
          <span aria-live="polite">
            <IncidentStatusBadge status={i.status} snoozedUntil={i.snoozedUntil} />
          </span>
          {manage && active ? (
            <div className="form-actions" data-testid="incident-actions">
              {i.status === "open" ? (
                <button
                  type="button"
                  className="btn btn-primary btn-small"
                  disabled={busy}
                  onClick={() => void act(() => acknowledgeIncident(slug, i.id), "Incident acknowledged.")}
                >
                  Acknowledge
                </button>
              ) : null}
              {SNOOZES.map((s) => (
                <button
                  key={s.minutes}
                  type="button"
                  className="btn btn-secondary btn-small"
                  disabled={busy}
                  aria-label={`Snooze ${s.label}`}
                  onClick={() => void act(() => snoozeIncident(slug, i.id, s.minutes), `Notifications snoozed for ${s.label}.`)}
                >
                  Snooze {s.label}
                </button>
              ))}
              <ConfirmButton
                className="btn btn-danger-outline btn-small"
                confirmLabel="Resolve incident"
                disabled={busy}
                onConfirm={() => act(() => resolveIncident(slug, i.id), "Incident resolved.")}
              >
                Resolve
              </ConfirmButton>
            </div>
          ) : null}
        </div>
      </div>
      {notice ? <Alert kind={notice.kind}>{notice.text}</Alert> : null}

      <div className="grid-2">
        <section className="card" aria-labelledby="incident-cause-title">
          <div className="card-head">
            <h2 id="incident-cause-title">Cause</h2>
          </div>
          <p className="incident-cause" data-testid="incident-cause">
            {i.cause || <span className="muted">No cause recorded.</span>}
          </p>
          <Details value={i.details} />
          <dl className="facts">
            <div>
              <dt>Policy</dt>
              <dd>{i.policyName}</dd>
            </div>
            <div>
              <dt>Kind</dt>
              <dd>{kindLabel(i.kind)}</dd>
            </div>
            <div>
              <dt>Flow</dt>
              <dd>{i.flowId ? <Link to={`/w/${slug}/flows/${i.flowId}`}>{i.flowName ?? i.flowId}</Link> : "—"}</dd>
            </div>
            <div>
              <dt>Opened</dt>
              <dd>
                <Time value={i.openedAt} />
              </dd>
            </div>
            <div>
              <dt>Acknowledged</dt>
              <dd>
                <Time value={i.acknowledgedAt} />
                {i.acknowledgedBy ? ` by ${i.acknowledgedBy}` : ""}
              </dd>
            </div>
            {i.snoozedUntil && active ? (
              <div>
                <dt>Snoozed until</dt>
                <dd>
                  <Time value={i.snoozedUntil} />
                </dd>
              </div>
            ) : null}
            <div>
              <dt>Resolved</dt>
              <dd>
                <Time value={i.resolvedAt} />
                {i.resolvedAt ? (i.resolvedBy ? ` by ${i.resolvedBy}` : " by itself") : ""}
              </dd>
            </div>
          </dl>
        </section>
        <section className="card" aria-labelledby="incident-timeline-title">
          <div className="card-head">
            <h2 id="incident-timeline-title">Timeline</h2>
          </div>
          {i.events.length === 0 ? <EmptyState>Nothing recorded yet.</EmptyState> : null}
          <ol className="timeline" data-testid="incident-timeline">
            {i.events.map((e, n) => (
              <li key={n} className={`timeline-${e.kind}`} data-testid="incident-event" data-kind={e.kind}>
                <div className="cell-main">
                  <span className="badge">{EVENT_LABELS[e.kind] ?? e.kind}</span> <Time value={e.at} />
                  {e.actor ? <span className="muted">by {e.actor}</span> : null}
                </div>
                {e.message ? <div className="cell-sub">{e.message}</div> : null}
              </li>
            ))}
          </ol>
        </section>
      </div>

      <section className="card" aria-labelledby="incident-runs-title">
        <div className="card-head">
          <h2 id="incident-runs-title">Affected runs</h2>
          <span className="count">{i.runCount}</span>
        </div>
        {i.runs.length === 0 ? (
          <EmptyState>This incident is about the flow or an agent, not about single runs.</EmptyState>
        ) : (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">State</th>
                <th scope="col">Scheduled</th>
              </tr>
            </thead>
            <tbody>
              {i.runs.map((r) => (
                <tr key={r.id} data-testid="incident-run">
                  <td data-label="Run">
                    <Link to={`/w/${slug}/runs/${r.id}`} className="cell-main">
                      {r.name}
                    </Link>
                  </td>
                  <td data-label="State">
                    <StateBadge type={r.stateType} name={r.stateName} />
                  </td>
                  <td data-label="Scheduled">
                    <Time value={r.scheduledStart} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {i.runCount > i.runs.length ? (
          <p className="hint">
            Showing {i.runs.length} of {i.runCount} runs.
          </p>
        ) : null}
      </section>
    </div>
  );
}
