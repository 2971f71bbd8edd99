import { lazy, Suspense, useEffect } from "react";
import { Link, useParams } from "react-router";

import { fetchFlow } from "../../api/orchestration";
import { ParametersTable } from "../../components/flow/ParametersTable";
import { RunHistoryChart } from "../../components/flow/RunHistoryChart";
import { SchedulesPanel } from "../../components/flow/SchedulesPanel";
import { VersionsPanel } from "../../components/flow/VersionsPanel";
import { RunTable } from "../../components/orchestration";
import { EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { FlowAlertBadge, useAlertBadges } from "../alerts/common";
import { useWorkspace } from "../WorkspaceLayout";

// The layout library is large: loaded with the first schematic shown, not with the app.
const Schematic = lazy(() => import("../../components/run/RunSchematic").then((m) => ({ default: m.RunSchematic })));

export function canRunFlows(role: string): boolean {
  return role === "owner" || role === "admin" || role === "developer";
}

export function FlowPage() {
  const { workspace, usage } = useWorkspace();
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
  // Pinning, archiving and pausing take flow:register / project:write: Developers and up.
  const canEdit = canRunFlows(workspace.viewerRole);
  return (
    <div className="stack-lg">
      <div>
        <p className="breadcrumbs">
          <Link to={`/w/${workspace.slug}/flows`}>Flows</Link> / {f.project.name}
        </p>
        <div className="run-head">
          <h2>{f.name}</h2>
          {version ? <span className="badge" data-testid="active-version">v{version.version}</span> : null}
          <FlowAlertBadge slug={workspace.slug} badge={badges.get(f.id)} />
          <div className="form-actions">
            {version && canEdit ? (
              <Link to={`/w/${workspace.slug}/flows/${f.id}/run`} className="btn btn-primary">
                Quick run
              </Link>
            ) : null}
          </div>
        </div>
        {f.description ? <p className="muted">{f.description}</p> : null}
        {!canEdit ? (
          <p className="muted" data-testid="viewer-note">
            Developers, Admins and Owners can start runs, pin or archive versions and pause schedules.
          </p>
        ) : null}
      </div>

      <section className="card" aria-labelledby="history-title">
        <div className="card-head">
          <h2 id="history-title">Run history</h2>
          {f.recentRuns.length ? <span className="count">{f.recentRuns.length}</span> : null}
        </div>
        {f.recentRuns.length === 0 ? (
          <EmptyState>This flow has not run yet.</EmptyState>
        ) : (
          <RunHistoryChart slug={workspace.slug} runs={f.recentRuns} />
        )}
      </section>

      <section className="card" aria-labelledby="schematic-title">
        <div className="card-head">
          <h2 id="schematic-title">Schematic</h2>
          {version ? <span className="count">{version.tasks.length} {version.tasks.length === 1 ? "task" : "tasks"}</span> : null}
        </div>
        {version ? (
          <Suspense fallback={<Spinner label="Loading the schematic…" />}>
            <Schematic of="flow" tasks={version.tasks} edges={version.edges} parameters={version.parameters} taskRuns={[]} />
          </Suspense>
        ) : (
          <EmptyState>No active version.</EmptyState>
        )}
      </section>

      <div className="grid-2">
        <section className="card" aria-labelledby="version-title" data-testid="versions">
          <div className="card-head">
            <h2 id="version-title">Versions</h2>
            <span className="count">{f.versions.length}</span>
          </div>
          {version ? (
            <dl className="facts">
              <div>
                <dt>Active</dt>
                <dd>
                  v{version.version}, registered <Time value={version.createdAt} />
                </dd>
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
            <EmptyState>Every version is archived: restore one to run this flow.</EmptyState>
          )}
          <VersionsPanel slug={workspace.slug} flow={f} canEdit={canEdit} onChanged={flow.reload} />
        </section>
        <section className="card" aria-labelledby="schedules-title">
          <div className="card-head">
            <h2 id="schedules-title">Schedules</h2>
          </div>
          <SchedulesPanel slug={workspace.slug} flowId={f.id} schedules={f.schedules} canEdit={canEdit} onChanged={flow.reload}
            usage={usage} />
        </section>
      </div>

      <section className="card" aria-labelledby="parameters-title">
        <div className="card-head">
          <h2 id="parameters-title">Parameters</h2>
          {version ? <span className="muted">of v{version.version}</span> : null}
        </div>
        {version ? <ParametersTable parameters={version.parameters} /> : <EmptyState>No active version.</EmptyState>}
      </section>

      {f.recentRuns.length > 0 ? (
        <section className="card" aria-labelledby="recent-title">
          <div className="card-head">
            <h2 id="recent-title">Recent runs</h2>
          </div>
          <RunTable slug={workspace.slug} runs={f.recentRuns.slice(0, 10)} showFlow={false} empty="" />
        </section>
      ) : null}
    </div>
  );
}
