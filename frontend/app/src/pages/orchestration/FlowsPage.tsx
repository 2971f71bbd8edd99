import { useEffect } from "react";
import { Link } from "react-router";

import { fetchProjects } from "../../api/orchestration";
import { EmptyState, ErrorState, Spinner, useAsync } from "../../components/ui";
import { FlowAlertBadge, useAlertBadges } from "../alerts/common";
import { useWorkspace } from "../WorkspaceLayout";

export function FlowsPage() {
  const { workspace } = useWorkspace();
  const projects = useAsync(() => fetchProjects(workspace.slug), [workspace.slug]);
  const badges = useAlertBadges(workspace.slug);

  useEffect(() => {
    document.title = `Flows · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  if (projects.error) return <ErrorState error={projects.error} onRetry={() => void projects.reload()} />;
  if (!projects.data) return <Spinner label="Loading projects…" />;
  if (projects.data.length === 0) {
    return (
      <section className="card">
        <h2>Projects and flows</h2>
        <EmptyState>
          No flows yet. Register one from your code with <code>flowdeck register</code>.
        </EmptyState>
      </section>
    );
  }
  return (
    <div className="stack-lg">
      {projects.data.map((p) => (
        <section key={p.id} className="card" aria-labelledby={`project-${p.id}`} data-testid="project">
          <div className="card-head">
            <h2 id={`project-${p.id}`}>{p.name}</h2>
            <span className="count">{p.flows.length}</span>
            {p.isRestricted ? <span className="badge">Restricted</span> : null}
          </div>
          {p.description ? <p className="muted">{p.description}</p> : null}
          {p.flows.length === 0 ? (
            <EmptyState>No flows in this project.</EmptyState>
          ) : (
            <ul className="flow-list">
              {p.flows.map((f) => (
                <li key={f.id} data-testid="flow-item">
                  <Link to={`/w/${workspace.slug}/flows/${f.id}`}>{f.name}</Link>{" "}
                  <FlowAlertBadge slug={workspace.slug} badge={badges.get(f.id)} />
                </li>
              ))}
            </ul>
          )}
        </section>
      ))}
    </div>
  );
}
