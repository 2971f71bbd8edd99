import { useEffect, useState } from "react";
import { Link } from "react-router";

import { createProject, fetchProjects, updateProject, type ProjectWithFlows } from "../../api/orchestration";
import { isManager } from "../../api/types";
import { ProjectForm } from "../../components/flow/ProjectForm";
import { Alert, EmptyState, ErrorState, Spinner, useAsync } from "../../components/ui";
import { useLiveRefresh } from "../../live";
import { FlowAlertBadge, useAlertBadges } from "../alerts/common";
import { useWorkspace } from "../WorkspaceLayout";
import { canRunFlows } from "./FlowPage";

export function FlowsPage() {
  const { workspace } = useWorkspace();
  const projects = useAsync(() => fetchProjects(workspace.slug), [workspace.slug]);
  const badges = useAlertBadges(workspace.slug);
  // Creating and renaming take project:write (Developers and up); restricting is for Owners and
  // Admins, who manage who sees what.
  const canWrite = canRunFlows(workspace.viewerRole);
  const canRestrict = isManager(workspace.viewerRole);
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  useLiveRefresh(["project.", "flow."], projects.reload, 500);

  useEffect(() => {
    document.title = `Flows · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  if (projects.error) return <ErrorState error={projects.error} onRetry={() => void projects.reload()} />;
  if (!projects.data) return <Spinner label="Loading projects…" />;

  const header = (
    <div className="page-actions">
      {notice ? <Alert kind="success">{notice}</Alert> : null}
      {canWrite && !creating ? (
        <button type="button" className="btn btn-primary" onClick={() => { setCreating(true); setNotice(null); }}>
          New project
        </button>
      ) : null}
      {creating ? (
        <section className="card" aria-labelledby="new-project-title">
          <div className="card-head">
            <h2 id="new-project-title">New project</h2>
          </div>
          <ProjectForm
            initial={{ name: "", description: "", isRestricted: false }}
            canRestrict={canRestrict}
            submitLabel="Create project"
            onCancel={() => setCreating(false)}
            onSubmit={async (input) => {
              await createProject(workspace.slug, input);
              setCreating(false);
              setNotice(`Project “${input.name.trim()}” created. Register flows into it with flowdeck register.`);
              await projects.reload();
            }}
          />
        </section>
      ) : null}
    </div>
  );

  if (projects.data.length === 0) {
    return (
      <div className="stack-lg">
        {header}
        <section className="card">
          <h2>Projects and flows</h2>
          <EmptyState>
            No flows yet. Register one from your code with <code>flowdeck register</code>.
          </EmptyState>
        </section>
      </div>
    );
  }
  return (
    <div className="stack-lg">
      {header}
      {projects.data.map((p) => (
        <ProjectCard
          key={p.id}
          project={p}
          editing={editing === p.id}
          canWrite={canWrite}
          canRestrict={canRestrict}
          onEdit={() => { setEditing(p.id); setNotice(null); }}
          onCancel={() => setEditing(null)}
          onSave={async (input) => {
            await updateProject(workspace.slug, p.id, input);
            setEditing(null);
            setNotice(`Project “${input.name.trim()}” saved.`);
            await projects.reload();
          }}
          slug={workspace.slug}
          badges={badges}
        />
      ))}
    </div>
  );
}

function ProjectCard({
  project: p,
  editing,
  canWrite,
  canRestrict,
  onEdit,
  onCancel,
  onSave,
  slug,
  badges,
}: {
  project: ProjectWithFlows;
  editing: boolean;
  canWrite: boolean;
  canRestrict: boolean;
  onEdit: () => void;
  onCancel: () => void;
  onSave: (input: { name: string; description?: string; isRestricted?: boolean }) => Promise<void>;
  slug: string;
  badges: ReturnType<typeof useAlertBadges>;
}) {
  return (
    <section className="card" aria-labelledby={`project-${p.id}`} data-testid="project">
      <div className="card-head">
        <h2 id={`project-${p.id}`}>{p.name}</h2>
        <span className="count">{p.flows.length}</span>
        {p.isRestricted ? <span className="badge" data-testid="restricted-badge">Restricted</span> : null}
        {canWrite && !editing ? (
          <button type="button" className="btn btn-ghost btn-small" onClick={onEdit} aria-label={`Edit project ${p.name}`}>
            Edit
          </button>
        ) : null}
      </div>
      {editing ? (
        <ProjectForm
          initial={{ name: p.name, description: p.description, isRestricted: p.isRestricted }}
          canRestrict={canRestrict}
          submitLabel="Save project"
          onCancel={onCancel}
          onSubmit={onSave}
        />
      ) : null}
      {p.description && !editing ? <p className="muted">{p.description}</p> : null}
      {p.flows.length === 0 ? (
        <EmptyState>No flows in this project.</EmptyState>
      ) : (
        <ul className="flow-list">
          {p.flows.map((f) => (
            <li key={f.id} data-testid="flow-item">
              <Link to={`/w/${slug}/flows/${f.id}`}>{f.name}</Link>{" "}
              <FlowAlertBadge slug={slug} badge={badges.get(f.id)} />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
