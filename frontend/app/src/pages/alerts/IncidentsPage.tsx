import { useEffect } from "react";
import { Link, useSearchParams } from "react-router";

import { fetchIncidents, kindLabel, type IncidentFilter } from "../../api/alerts";
import { EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";
import { AlertsNav, IncidentStatusBadge, SeverityBadge } from "./common";

const FILTERS: { value: IncidentFilter; label: string }[] = [
  { value: "active", label: "Active" },
  { value: "open", label: "Open" },
  { value: "acknowledged", label: "Acknowledged" },
  { value: "resolved", label: "Resolved" },
];

export function IncidentsPage() {
  const { workspace } = useWorkspace();
  const slug = workspace.slug;
  const [params, setParams] = useSearchParams();
  const status = (FILTERS.find((f) => f.value === params.get("status"))?.value ?? "active") as IncidentFilter;
  const flowId = params.get("flow") ?? undefined;
  const incidents = useAsync(() => fetchIncidents(slug, { status, flowId }), [slug, status, flowId]);
  useFallbackPolling(incidents.reload, 10000);
  useLiveRefresh(["incident."], incidents.reload, 300);

  useEffect(() => {
    document.title = `Incidents · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  const choose = (value: IncidentFilter) => {
    const next = new URLSearchParams(params);
    next.set("status", value);
    setParams(next, { replace: true });
  };
  const flowName = incidents.data?.find((i) => i.flowId === flowId)?.flowName;

  return (
    <div className="stack-lg">
      <AlertsNav slug={slug} />
      <section className="card" aria-labelledby="incidents-title">
        <div className="card-head">
          <h2 id="incidents-title">Incidents</h2>
          {incidents.data ? (
            <span className="count" data-testid="incident-count">
              {incidents.data.length}
            </span>
          ) : null}
        </div>
        <div className="segmented" role="group" aria-label="Show incidents">
          {FILTERS.map((f) => (
            <button
              key={f.value}
              type="button"
              className={f.value === status ? "segment active" : "segment"}
              aria-pressed={f.value === status}
              onClick={() => choose(f.value)}
            >
              {f.label}
            </button>
          ))}
        </div>
        {flowId ? (
          <p className="muted">
            Only flow {flowName ?? "selected"}.{" "}
            <Link
              to={`/w/${slug}/alerts/incidents${status !== "active" ? `?status=${status}` : ""}`}
              replace
            >
              Show every flow
            </Link>
          </p>
        ) : null}
        {incidents.error && !incidents.data ? (
          <ErrorState error={incidents.error} onRetry={() => void incidents.reload()} />
        ) : null}
        {!incidents.data && incidents.loading ? <Spinner label="Loading incidents…" /> : null}
        {incidents.data && incidents.data.length === 0 ? (
          <EmptyState>
            {status === "active" ? "No active incidents: every SLA holds." : `No ${status} incidents.`}
          </EmptyState>
        ) : null}
        {incidents.data && incidents.data.length > 0 ? (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Severity</th>
                <th scope="col">Incident</th>
                <th scope="col">Status</th>
                <th scope="col">Opened</th>
                <th scope="col">Runs</th>
              </tr>
            </thead>
            <tbody>
              {incidents.data.map((i) => (
                <tr key={i.id} data-testid="incident-row" data-incident-id={i.id}>
                  <td data-label="Severity">
                    <SeverityBadge severity={i.severity} />
                  </td>
                  <td data-label="Incident" className="cell-wrap wide">
                    <Link to={`/w/${slug}/alerts/incidents/${i.id}`} className="cell-main">
                      {i.title}
                    </Link>
                    {i.cause ? <div className="cell-sub" data-testid="incident-cause">{i.cause}</div> : null}
                    <div className="cell-sub">
                      {kindLabel(i.kind)} · {i.policyName}
                      {i.flowName ? ` · ${i.flowName}` : ""}
                    </div>
                  </td>
                  <td data-label="Status">
                    <IncidentStatusBadge status={i.status} snoozedUntil={i.snoozedUntil} />
                  </td>
                  <td data-label="Opened">
                    <Time value={i.openedAt} />
                    {i.resolvedAt ? (
                      <div className="cell-sub">
                        resolved <Time value={i.resolvedAt} />
                      </div>
                    ) : null}
                  </td>
                  <td data-label="Runs" data-testid="incident-run-count">
                    {i.runCount}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </section>
    </div>
  );
}
