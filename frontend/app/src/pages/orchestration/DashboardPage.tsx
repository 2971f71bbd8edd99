import { useEffect, useState } from "react";
import { Link } from "react-router";

import { fetchDashboard } from "../../api/orchestration";
import { AgentStatusBadge, RunsChart, RunTable, StateBadge, usePolling } from "../../components/orchestration";
import { EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";

const WINDOWS = [
  { hours: 24, label: "24 hours" },
  { hours: 72, label: "3 days" },
  { hours: 168, label: "7 days" },
];

export function DashboardPage() {
  const { workspace } = useWorkspace();
  const [hours, setHours] = useState(24);
  const dashboard = useAsync(() => fetchDashboard(workspace.slug, hours), [workspace.slug, hours]);
  // Live: any run or agent change refreshes the dashboard (one query per second at most); it polls
  // only while the socket is down. A slow poll remains for the time-based parts (late runs, the
  // chart's moving window), which change without any event.
  useLiveRefresh(["flow_run.", "agent."], dashboard.reload, 1000);
  useFallbackPolling(dashboard.reload, 5000);
  usePolling(dashboard.reload, 60_000);

  useEffect(() => {
    document.title = `Dashboard · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  const data = dashboard.data;
  if (!data) {
    return dashboard.error ? (
      <ErrorState error={dashboard.error} onRetry={() => void dashboard.reload()} />
    ) : (
      <Spinner label="Loading dashboard…" />
    );
  }
  const healthy = data.agents.filter((a) => a.status === "healthy").length;
  return (
    <div className="stack-lg">
      {dashboard.error ? <ErrorState error={dashboard.error} /> : null}
      <section className="card" aria-labelledby="activity-title">
        <div className="card-head">
          <h2 id="activity-title">Runs by state</h2>
          <div className="topbar-spacer" />
          <select
            className="select-inline"
            aria-label="Time window"
            value={hours}
            onChange={(e) => setHours(Number(e.target.value))}
          >
            {WINDOWS.map((w) => (
              <option key={w.hours} value={w.hours}>
                Last {w.label}
              </option>
            ))}
          </select>
        </div>
        <div className="stat-row" data-testid="state-counts">
          {data.countsByState.map((c) => (
            <span key={c.stateType} className="stat">
              <StateBadge type={c.stateType} />
              <strong>{c.count}</strong>
            </span>
          ))}
        </div>
        <RunsChart buckets={data.runsByStateOverTime} now={data.now} hours={hours} />
      </section>

      <div className="grid-2">
        <section className="card" aria-labelledby="failing-title">
          <div className="card-head">
            <h2 id="failing-title">Failing runs</h2>
            <span className="count">{data.failingRuns.length}</span>
          </div>
          <RunTable slug={workspace.slug} runs={data.failingRuns} when="started" empty="No failed or crashed runs." />
        </section>
        <section className="card" aria-labelledby="late-title">
          <div className="card-head">
            <h2 id="late-title">Late runs</h2>
            <span className="count">{data.lateRuns.length}</span>
          </div>
          <RunTable slug={workspace.slug} runs={data.lateRuns} empty="Nothing is late." />
        </section>
      </div>

      <div className="grid-2">
        <section className="card" aria-labelledby="upcoming-title">
          <div className="card-head">
            <h2 id="upcoming-title">Upcoming runs</h2>
          </div>
          <RunTable slug={workspace.slug} runs={data.upcomingRuns} empty="No runs are scheduled." />
        </section>
        <section className="card" aria-labelledby="agent-health-title">
          <div className="card-head">
            <h2 id="agent-health-title">Agent health</h2>
            <span className="count">
              {healthy}/{data.agents.length} healthy
            </span>
          </div>
          {data.agents.length === 0 ? (
            <EmptyState>
              No agents yet. Start one with <code>flowdeck agent start</code>.
            </EmptyState>
          ) : (
            <ul className="flow-list">
              {data.agents.map((a) => (
                <li key={a.id} className="checkbox">
                  <AgentStatusBadge status={a.status} />
                  <span className="cell-main">{a.name}</span>
                  <span className="cell-sub">
                    heartbeat <Time value={a.lastHeartbeatAt} empty="never" />
                  </span>
                </li>
              ))}
            </ul>
          )}
          <p className="hint">
            <Link to={`/w/${workspace.slug}/agents`}>All agents</Link>
          </p>
        </section>
      </div>
    </div>
  );
}
