import { useEffect } from "react";
import { Link, Outlet, useOutletContext, useParams } from "react-router";

import { fetchUsage, type Usage } from "../api/billing";
import { fetchWorkspace } from "../api/operations";
import { isManager, roleLabel, type WorkspaceDetail } from "../api/types";
import { QuotaBanner } from "../components/billing";
import { WorkspaceTabs } from "../components/Layout";
import { ErrorState, Spinner, useAsync } from "../components/ui";
import { ROLE_CHANGED } from "../api/live";
import { LiveIndicator, LiveProvider, useLiveEvents, useLiveRefresh } from "../live";
import { useSession } from "../session";
import { rememberWorkspace } from "./misc";

export interface WorkspaceContext {
  workspace: WorkspaceDetail;
  manager: boolean;
  reloadWorkspace: () => Promise<void>;
  /** This billing period's usage against the plan's limits (null until read, or if it cannot be). */
  usage: Usage | null;
  /** Re-read the usage: after creating a run, inviting someone, or any 402 quota_exceeded. */
  reloadUsage: () => Promise<void>;
}

export function useWorkspace(): WorkspaceContext {
  return useOutletContext<WorkspaceContext>();
}

/** Re-reads the workspace (and so the role every page acts on) when the role changes elsewhere. */
function RoleChangeListener({ onChange }: { onChange: () => void }) {
  useLiveEvents([ROLE_CHANGED], (message) => {
    if (message.kind === "event") onChange();
  });
  return null;
}

/** New runs (the scheduler's too) count against the plan: re-read the usage behind the quota
 * banner, at most every 10 s, while billing is on. */
function UsageRefresher({ enabled, onChange }: { enabled: boolean; onChange: () => void }) {
  useLiveRefresh(
    (message) => enabled && (message.kind === "resync" || (message.kind === "event" && message.event.type === "flow_run.created")),
    onChange,
    10_000,
  );
  return null;
}

export function WorkspaceLayout() {
  const { slug = "" } = useParams();
  const { data: workspace, error, loading, reload } = useAsync(() => fetchWorkspace(slug), [slug]);
  const usage = useAsync(() => fetchUsage(slug), [slug]);
  const { refresh, reloadWorkspaces } = useSession();
  const missing = !loading && !error && !workspace;

  useEffect(() => {
    // No such workspace for us, or the session ended meanwhile: re-check the session (the app
    // layout sends a signed-out person to log in) and the workspace list.
    if (missing) void refresh();
  }, [missing, refresh]);

  useEffect(() => {
    if (workspace) {
      document.title = `${workspace.name} · Flowdeck`;
      rememberWorkspace(workspace.slug);
    }
  }, [workspace]);

  let body;
  if (error) {
    body = <ErrorState error={error} onRetry={() => void reload()} />;
  } else if (!workspace && loading) {
    body = <Spinner label="Loading workspace…" />;
  } else if (!workspace) {
    body = (
      <div className="card not-found">
        <h1>Workspace not found</h1>
        <p>
          There is no workspace at <code>/w/{slug}</code>, or you are not a member of it.
        </p>
        <Link to="/" className="btn btn-secondary">
          Go to your workspaces
        </Link>
      </div>
    );
  } else {
    const ctx: WorkspaceContext = {
      workspace,
      manager: isManager(workspace.viewerRole),
      reloadWorkspace: reload,
      usage: usage.data,
      reloadUsage: usage.reload,
    };
    // One live-updates socket while this workspace is shown (pages subscribe through it).
    body = (
      <LiveProvider slug={workspace.slug}>
        <RoleChangeListener
          onChange={() => {
            void reload();
            void reloadWorkspaces();
          }}
        />
        <UsageRefresher enabled={usage.data?.billingEnabled ?? false} onChange={() => void usage.reload()} />
        <div className="workspace-head">
          <div>
            <h1 className="workspace-title">{workspace.name}</h1>
            <p className="muted workspace-meta">
              <span>/w/{workspace.slug}</span> · <span>Your role: {roleLabel(workspace.viewerRole)}</span>
            </p>
          </div>
          <LiveIndicator />
        </div>
        <WorkspaceTabs slug={workspace.slug} manager={ctx.manager} />
        <QuotaBanner slug={workspace.slug} usage={usage.data} owner={workspace.viewerRole === "owner"} />
        <div className="workspace-body">
          <Outlet context={ctx} />
        </div>
      </LiveProvider>
    );
  }
  return <main className="container">{body}</main>;
}
