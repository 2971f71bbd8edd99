import { useEffect } from "react";
import { Link, Outlet, useOutletContext, useParams } from "react-router";

import { fetchWorkspace } from "../api/operations";
import { isManager, roleLabel, type WorkspaceDetail } from "../api/types";
import { WorkspaceTabs } from "../components/Layout";
import { ErrorState, Spinner, useAsync } from "../components/ui";
import { ROLE_CHANGED } from "../api/live";
import { LiveIndicator, LiveProvider, useLiveEvents } from "../live";
import { useSession } from "../session";
import { rememberWorkspace } from "./misc";

export interface WorkspaceContext {
  workspace: WorkspaceDetail;
  manager: boolean;
  reloadWorkspace: () => Promise<void>;
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

export function WorkspaceLayout() {
  const { slug = "" } = useParams();
  const { data: workspace, error, loading, reload } = useAsync(() => fetchWorkspace(slug), [slug]);
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
    const ctx: WorkspaceContext = { workspace, manager: isManager(workspace.viewerRole), reloadWorkspace: reload };
    // One live-updates socket while this workspace is shown (pages subscribe through it).
    body = (
      <LiveProvider slug={workspace.slug}>
        <RoleChangeListener
          onChange={() => {
            void reload();
            void reloadWorkspaces();
          }}
        />
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
        <div className="workspace-body">
          <Outlet context={ctx} />
        </div>
      </LiveProvider>
    );
  }
  return <main className="container">{body}</main>;
}
