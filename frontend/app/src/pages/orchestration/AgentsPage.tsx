import { useEffect } from "react";
import { Link } from "react-router";

import { fetchAgents } from "../../api/orchestration";
import { AgentStatusBadge, usePolling } from "../../components/orchestration";
import { EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";

export function AgentsPage() {
  const { workspace } = useWorkspace();
  const agents = useAsync(() => fetchAgents(workspace.slug), [workspace.slug]);
  // Live: registrations and status changes (healthy / unhealthy / offline / stopped) refresh the
  // list; the heartbeat times move without events, so a slow poll stays.
  useLiveRefresh(["agent."], agents.reload, 300);
  useFallbackPolling(agents.reload, 10000);
  usePolling(agents.reload, 30_000);

  useEffect(() => {
    document.title = `Agents · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  return (
    <section className="card" aria-labelledby="agents-title">
      <div className="card-head">
        <h2 id="agents-title">Agents</h2>
        {agents.data ? <span className="count">{agents.data.length}</span> : null}
      </div>
      <p className="muted">
        An agent is <strong>healthy</strong> while it heartbeats and its claim loop polls; <strong>unhealthy</strong>{" "}
        when it heartbeats but stopped polling for three intervals; <strong>offline</strong> without heartbeats;{" "}
        <strong>stopped</strong> as soon as it shuts down cleanly (SIGTERM or Ctrl-C).
      </p>
      {agents.error ? <ErrorState error={agents.error} onRetry={() => void agents.reload()} /> : null}
      {!agents.data && agents.loading ? <Spinner label="Loading agents…" /> : null}
      {agents.data && agents.data.length === 0 ? (
        <EmptyState>
          No agents yet. Create a service account with the Agent role and a key for it on the{" "}
          <Link to={`/w/${workspace.slug}/service-accounts`}>Service accounts</Link> page: it shows the{" "}
          <code>flowdeck agent start</code> command to run, with the key.
        </EmptyState>
      ) : null}
      {agents.data && agents.data.length > 0 ? (
        <table className="table">
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">Status</th>
              <th scope="col">Type</th>
              <th scope="col">Labels</th>
              <th scope="col">Last heartbeat</th>
              <th scope="col">Last poll</th>
            </tr>
          </thead>
          <tbody>
            {agents.data.map((a) => (
              <tr key={a.id} data-testid="agent-row">
                <td data-label="Agent">
                  <div className="cell-main">{a.name}</div>
                  {a.version ? <div className="cell-sub">v{a.version}</div> : null}
                </td>
                <td data-label="Status">
                  <AgentStatusBadge status={a.status} />
                </td>
                <td data-label="Type">{a.type}</td>
                <td data-label="Labels" className="cell-wrap">
                  {a.labels.length ? a.labels.join(", ") : <span className="muted">—</span>}
                </td>
                <td data-label="Last heartbeat">
                  <Time value={a.lastHeartbeatAt} empty="never" />
                </td>
                <td data-label="Last poll">
                  <Time value={a.lastPollAt} empty="never" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}
