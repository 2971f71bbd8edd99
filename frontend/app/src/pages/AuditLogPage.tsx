import { useCallback, useEffect, useState } from "react";

import { errorMessage } from "../api/graphql";
import { fetchAuditLog } from "../api/operations";
import type { AuditEntry } from "../api/types";
import { EmptyState, ErrorState, Spinner, Time } from "../components/ui";
import { useWorkspace } from "./WorkspaceLayout";

function describeData(data: unknown): string {
  if (data === null || data === undefined) return "";
  let value = data;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch {
      return value as string;
    }
  }
  if (typeof value !== "object" || value === null) return String(value);
  return Object.entries(value as Record<string, unknown>)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" → ") : typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join(", ");
}

const TARGET_TYPES: Record<string, string> = {
  apikey: "API key",
  serviceaccount: "Service account",
  membership: "Member",
  invitation: "Invitation",
  workspace: "Workspace",
  user: "User",
};

export function AuditLogPage() {
  const { workspace, manager } = useWorkspace();
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(
    async (after: string | null) => {
      setLoading(true);
      setError(null);
      try {
        const page = await fetchAuditLog(workspace.slug, after);
        setEntries((prev) => (after ? [...prev, ...page.entries] : page.entries));
        setCursor(page.pageInfo.endCursor);
        setHasMore(page.pageInfo.hasNextPage);
      } catch (err) {
        setError(errorMessage(err));
      }
      setLoading(false);
    },
    [workspace.slug],
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
      </div>
      <p className="muted">Every change an Owner or Admin makes to members, roles and keys, newest first.</p>
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
                  <code className="action">{e.action}</code>
                </td>
                <td data-label="Target">
                  <div className="cell-main">{e.targetLabel || "—"}</div>
                  <div className="cell-sub">{TARGET_TYPES[e.targetType] ?? e.targetType}</div>
                </td>
                <td data-label="Details" className="cell-wrap">
                  {describeData(e.data) || <span className="muted">—</span>}
                </td>
                <td data-label="IP address">{e.ipAddress || <span className="muted">—</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {!loading && !error && entries.length === 0 ? <EmptyState>Nothing has been recorded yet.</EmptyState> : null}
      {error ? <ErrorState error={error} onRetry={() => void load(entries.length ? cursor : null)} /> : null}
      {loading ? <Spinner label="Loading audit log…" /> : null}
      {hasMore && !loading ? (
        <div className="load-more">
          <button type="button" className="btn btn-secondary" onClick={() => void load(cursor)}>
            Load more
          </button>
        </div>
      ) : null}
    </section>
  );
}
