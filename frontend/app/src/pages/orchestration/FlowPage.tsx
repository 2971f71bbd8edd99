import { useEffect } from "react";
import { Link, useParams } from "react-router";

import { fetchFlow, type Schedule } from "../../api/orchestration";
import { DagView, RunTable } from "../../components/orchestration";
import { EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { FlowAlertBadge, useAlertBadges } from "../alerts/common";
import { useWorkspace } from "../WorkspaceLayout";

export function canRunFlows(role: string): boolean {
  return role === "owner" || role === "admin" || role === "developer";
}

function describeSchedule(s: Schedule): string {
  if (s.kind === "cron") return `cron ${s.cron}`;
  if (s.kind === "interval" && s.intervalSeconds) {
    const n = s.intervalSeconds;
    if (n % 86400 === 0) return `every ${n / 86400} day(s)`;
    if (n % 3600 === 0) return `every ${n / 3600} hour(s)`;
    if (n % 60 === 0) return `every ${n / 60} minute(s)`;
    return `every ${n} seconds`;
  }
  return s.rrule ? `rrule ${s.rrule}` : s.kind;
}

export function FlowPage() {
  const { workspace } = useWorkspace();
  const { flowId = "" } = useParams();
  const flow = useAsync(() => fetchFlow(workspace.slug, flowId), [workspace.slug, flowId]);
  const badges = useAlertBadges(workspace.slug);
  useFallbackPolling(flow.reload, 10000);
  // Live: this flow's new runs, state changes of the runs shown, new versions and schedule changes.
  useLiveRefresh((message) => {
    if (message.kind === "resync") return true;
    if (message.kind !== "event") return false;
    const { type, data } = message.event;
    if (data.flow_id === flowId || (type.startsWith("flow.") && data.id === flowId)) return true;
    return type.startsWith("flow_run.") && Boolean(flow.data?.recentRuns.some((r) => r.id === data.id));
  }, flow.reload, 500);

  useEffect(() => {
    if (flow.data) document.title = `${flow.data.name} · Flowdeck`;
  }, [flow.data]);

  if (flow.error && !flow.data) return <ErrorState error={flow.error} onRetry={() => void flow.reload()} />;
  if (!flow.data && flow.loading) return <Spinner label="Loading flow…" />;
  const f = flow.data;
  if (!f) {
    return (
      <div className="card not-found">
        <h2>Flow not found</h2>
        <p>This flow does not exist in this workspace, or you cannot see it.</p>
        <Link to={`/w/${workspace.slug}/flows`} className="btn btn-secondary">
          All flows
        </Link>
      </div>
    );
  }
  const version = f.activeVersion;
  return (
    <div className="stack-lg">
      <div>
        <p className="breadcrumbs">
          <Link to={`/w/${workspace.slug}/flows`}>Flows</Link> / {f.project.name}
        </p>
        <div className="run-head">
          <h2>{f.name}</h2>
          {version ? <span className="badge">v{version.version}</span> : null}
          <FlowAlertBadge slug={workspace.slug} badge={badges.get(f.id)} />
          <div className="form-actions">
            {version && canRunFlows(workspace.viewerRole) ? (
              <Link to={`/w/${workspace.slug}/flows/${f.id}/run`} className="btn btn-primary">
                Quick run
              </Link>
            ) : null}
          </div>
        </div>
        {f.description ? <p className="muted">{f.description}</p> : null}
      </div>

      <section className="card" aria-labelledby="schematic-title">
        <div className="card-head">
          <h2 id="schematic-title">Schematic</h2>
          {version ? <span className="count">{version.tasks.length} tasks</span> : null}
        </div>
        {version ? <DagView tasks={version.tasks} edges={version.edges} /> : <EmptyState>No active version.</EmptyState>}
      </section>

      <div className="grid-2">
        <section className="card" aria-labelledby="version-title">
          <div className="card-head">
            <h2 id="version-title">Active version</h2>
          </div>
          {version ? (
            <dl className="facts">
              <div>
                <dt>Version</dt>
                <dd>{version.version}</dd>
              </div>
              <div>
                <dt>Registered</dt>
                <dd>
                  <Time value={version.createdAt} />
                </dd>
              </div>
              <div>
                <dt>Parameters</dt>
                <dd>{version.parameters.map((p) => p.name).join(", ") || "—"}</dd>
              </div>
              <div>
                <dt>Labels</dt>
                <dd>{version.labels.join(", ") || "—"}</dd>
              </div>
              <div>
                <dt>Storage</dt>
                <dd>
                  <code>{JSON.stringify(version.storage)}</code>
                </dd>
              </div>
              <div>
                <dt>Run config</dt>
                <dd>
                  <code>{JSON.stringify(version.runConfig)}</code>
                </dd>
              </div>
            </dl>
          ) : (
            <EmptyState>Every version is archived.</EmptyState>
          )}
          <h3>Versions</h3>
          <ul className="flow-list" data-testid="versions">
            {f.versions.map((v) => (
              <li key={v.id}>
                v{v.version} · <Time value={v.createdAt} />
                {v.isArchived ? <span className="badge badge-muted"> archived</span> : null}
                {version && v.id === version.id ? <span className="badge badge-status-active"> active</span> : null}
              </li>
            ))}
          </ul>
        </section>
        <section className="card" aria-labelledby="schedules-title">
          <div className="card-head">
            <h2 id="schedules-title">Schedules</h2>
          </div>
          {f.schedules.length === 0 ? (
            <EmptyState>No schedule: this flow runs when started.</EmptyState>
          ) : (
            <ul className="flow-list">
              {f.schedules.map((s) => (
                <li key={s.id}>
                  <code>{describeSchedule(s)}</code> <span className="muted">({s.timezone})</span>{" "}
                  {s.isActive ? <span className="badge badge-status-active">Active</span> : <span className="badge">Paused</span>}
                </li>
              ))}
            </ul>
          )}
        </section>
      </div>

      <section className="card" aria-labelledby="recent-title">
        <div className="card-head">
          <h2 id="recent-title">Recent runs</h2>
        </div>
        <RunTable slug={workspace.slug} runs={f.recentRuns} showFlow={false} empty="This flow has not run yet." />
      </section>
    </div>
  );
}
