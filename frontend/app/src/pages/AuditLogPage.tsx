import { useCallback, useEffect, useRef, useState } from "react";

import { errorMessage } from "../api/graphql";
import type { AuditEntry } from "../api/types";
import { EmptyState, ErrorState, Spinner, Time } from "../components/ui";
import { AUDIT_AREAS, actionLabel, describeEntry, fetchAuditLogPage, targetTypeLabel } from "./auditLog";
import { useWorkspace } from "./WorkspaceLayout";

export function AuditLogPage() {
  const { workspace, manager } = useWorkspace();
  const [area, setArea] = useState("");
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  // Only the newest request may fill the table: switching areas quickly must not mix two answers.
  const latest = useRef(0);

  const load = useCallback(
    async (after: string | null) => {
      const request = ++latest.current;
      setLoading(true);
      setError(null);
      if (!after) setEntries([]);
      try {
        const page = await fetchAuditLogPage(workspace.slug, area, after);
        if (request !== latest.current) return;
        setEntries((prev) => (after ? [...prev, ...page.entries] : page.entries));
        setNext(page.next);
      } catch (err) {
        if (request !== latest.current) return;
        setError(errorMessage(err));
      }
      setLoading(false);
    },
    [workspace.slug, area],
  );

  useEffect(() => {
    if (manager) void load(null);
  }, [load, manager]);

  if (!manager) {
    return (
      <section className="card">
        <h2>Audit log</h2>
        <p className="muted">Only Owners and Admins can see the audit log.</p>
      </section>
    );
  }

  return (
    <section className="card" aria-labelledby="audit-title">
      <div className="card-head">
        <h2 id="audit-title">Audit log</h2>
        <div className="topbar-spacer" />
        <select className="select-inline" aria-label="Area" value={area} onChange={(e) => setArea(e.target.value)}>
          <option value="">All areas</option>
          {AUDIT_AREAS.map((a) => (
            <option key={a.value} value={a.value}>
              {a.label}
            </option>
          ))}
        </select>
      </div>
      <p className="muted">
        Every change to members, roles and keys, to projects, flows, schedules and concurrency limits, to SLA policies,
        notification channels and incidents, and every bulk action on runs, newest first.
      </p>
      {entries.length > 0 ? (
        <table className="table">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Actor</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col">Details</th>
              <th scope="col">IP address</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.id} data-testid="audit-row">
                <td data-label="When">
                  <Time value={e.createdAt} />
                </td>
                <td data-label="Actor">{e.actor || <span className="muted">System</span>}</td>
                <td data-label="Action">
                  {actionLabel(e.action) ? <div className="cell-main">{actionLabel(e.action)}</div> : null}
                  <code className="action">{e.action}</code>
                </td>
                <td data-label="Target">
                  <div className="cell-main">{e.targetLabel || "—"}</div>
                  <div className="cell-sub">{targetTypeLabel(e.targetType)}</div>
                </td>
                <td data-label="Details" className="cell-wrap">
                  {describeEntry(e.action, e.data) || <span className="muted">—</span>}
                </td>
                <td data-label="IP address">{e.ipAddress || <span className="muted">—</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {!loading && !error && entries.length === 0 ? (
        <EmptyState>{area ? "Nothing has been recorded in this area yet." : "Nothing has been recorded yet."}</EmptyState>
      ) : null}
      {error ? <ErrorState error={error} onRetry={() => void load(entries.length ? next : null)} /> : null}
      {loading ? <Spinner label="Loading audit log…" /> : null}
      {next && !loading ? (
        <div className="load-more">
          <button type="button" className="btn btn-secondary" onClick={() => void load(next)}>
            Load more
          </button>
        </div>
      ) : null}
    </section>
  );
}
