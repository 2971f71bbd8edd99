import { useEffect, useState } from "react";

import {
  actionLabel,
  createPolicy,
  deletePolicy,
  fetchChannels,
  fetchPolicies,
  humanSeconds,
  kindLabel,
  setPolicyPaused,
  updatePolicy,
  type Channel,
  type SlaPolicy,
} from "../../api/alerts";
import { errorMessage } from "../../api/graphql";
import { fetchProjects, type ProjectWithFlows } from "../../api/orchestration";
import { Alert, ConfirmButton, EmptyState, ErrorState, Spinner, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";
import { AlertsNav, canManageAlerts, SeverityBadge } from "./common";
import { PolicyForm } from "./PolicyForm";

interface Lookups {
  projects: ProjectWithFlows[];
  channels: Channel[];
}

function scopeText(p: SlaPolicy): string {
  if (p.flowId) return `Flow ${p.flowName ?? p.flowId}`;
  if (p.projectId) return `Project ${p.projectName ?? p.projectId}`;
  return "Workspace";
}

function thresholdText(p: SlaPolicy): string {
  switch (p.kind) {
    case "start":
      return `start within ${humanSeconds(p.thresholdSeconds)}`;
    case "duration":
      return `finish within ${humanSeconds(p.thresholdSeconds)}${
        p.predictive ? `; warn past p95 of last ${p.historySize}` : ""
      }`;
    case "freshness":
      return `a success every ${humanSeconds(p.thresholdSeconds)}`;
    case "agent":
      return `agent for ${p.agentLabels.join(", ") || "any labels"} within ${humanSeconds(p.thresholdSeconds)}`;
    case "failure":
      return p.consecutiveFailures > 1 ? `${p.consecutiveFailures} failures in a row` : "every failed run";
    case "prestart":
      return "any pre-start failure";
    default:
      return humanSeconds(p.thresholdSeconds);
  }
}

export function SlaPoliciesPage() {
  const { workspace } = useWorkspace();
  const slug = workspace.slug;
  const manage = canManageAlerts(workspace.viewerRole);
  const policies = useAsync(() => fetchPolicies(slug), [slug]);
  const [lookups, setLookups] = useState<Lookups | null>(null);
  const [editing, setEditing] = useState<SlaPolicy | "new" | null>(null);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  useFallbackPolling(policies.reload, 15000);
  // Open-incident counts follow incidents as they open and resolve.
  useLiveRefresh(["incident."], policies.reload, 500);

  useEffect(() => {
    document.title = `SLA policies · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  useEffect(() => {
    if (!editing || lookups) return;
    let current = true;
    Promise.all([fetchProjects(slug), fetchChannels(slug).catch(() => [] as Channel[])])
      .then(([projects, channels]) => current && setLookups({ projects, channels }))
      .catch((err) => current && setNotice({ kind: "error", text: errorMessage(err) }));
    return () => {
      current = false;
    };
  }, [editing, lookups, slug]);

  const act = async (fn: () => Promise<void>, text: string) => {
    setNotice(null);
    try {
      await fn();
      setNotice({ kind: "success", text });
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
    await policies.reload();
  };

  return (
    <div className="stack-lg">
      <AlertsNav slug={slug} />
      <section className="card" aria-labelledby="policies-title">
        <div className="card-head">
          <h2 id="policies-title">SLA policies</h2>
          {policies.data ? <span className="count">{policies.data.length}</span> : null}
          <div className="topbar-spacer" />
          {manage && !editing ? (
            <button type="button" className="btn btn-primary btn-small" onClick={() => setEditing("new")}>
              New policy
            </button>
          ) : null}
        </div>
        <p className="muted">
          A policy is a promise about runs: start on time, finish in time, do not fail, stay fresh, keep an agent for
          these labels. A broken promise opens one incident and notifies the policy's channels.
          {!manage ? " Your role can see policies; Developers and up manage them." : ""}
        </p>
        {notice ? <Alert kind={notice.kind}>{notice.text}</Alert> : null}

        {editing ? (
          <section className="subpanel" aria-labelledby="policy-form-title">
            <h3 id="policy-form-title">{editing === "new" ? "New SLA policy" : `Edit ${editing.name}`}</h3>
            {lookups ? (
              <PolicyForm
                key={editing === "new" ? "new" : editing.id}
                slug={slug}
                policy={editing === "new" ? null : editing}
                projects={lookups.projects}
                channels={lookups.channels}
                onCancel={() => setEditing(null)}
                onSubmit={async (input) => {
                  const saved =
                    editing === "new" ? await createPolicy(slug, input) : await updatePolicy(slug, editing.id, input);
                  setEditing(null);
                  setNotice({ kind: "success", text: `Policy “${saved.name}” ${editing === "new" ? "created" : "saved"}.` });
                  await policies.reload();
                }}
              />
            ) : (
              <Spinner label="Loading projects and channels…" />
            )}
          </section>
        ) : null}

        {policies.error && !policies.data ? <ErrorState error={policies.error} onRetry={() => void policies.reload()} /> : null}
        {!policies.data && policies.loading ? <Spinner label="Loading policies…" /> : null}
        {policies.data && policies.data.length === 0 ? (
          <EmptyState>No SLA policies yet.{manage ? " Create one, or declare one next to a flow in the SDK." : ""}</EmptyState>
        ) : null}
        {policies.data && policies.data.length > 0 ? (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Kind</th>
                <th scope="col">Scope</th>
                <th scope="col">Threshold</th>
                <th scope="col">Action</th>
                <th scope="col">Status</th>
                <th scope="col">Open incidents</th>
                {manage ? <th scope="col" className="actions"><span className="sr-only">Actions</span></th> : null}
              </tr>
            </thead>
            <tbody>
              {policies.data.map((p) => (
                <tr key={p.id} data-testid="policy-row" className={p.isPaused ? "row-dim" : undefined}>
                  <td data-label="Name">
                    <div className="cell-main">
                      {p.name} <SeverityBadge severity={p.severity} />
                      {p.fromRegistration ? (
                        <span className="badge" title="Declared next to the flow in the SDK">
                          SDK
                        </span>
                      ) : null}
                    </div>
                    {p.labels.length ? <div className="cell-sub">labels: {p.labels.join(", ")}</div> : null}
                    {p.description ? <div className="cell-sub">{p.description}</div> : null}
                  </td>
                  <td data-label="Kind">{kindLabel(p.kind)}</td>
                  <td data-label="Scope">{scopeText(p)}</td>
                  <td data-label="Threshold" data-testid="policy-threshold">
                    {thresholdText(p)}
                  </td>
                  <td data-label="Action">{actionLabel(p.action)}</td>
                  <td data-label="Status" data-testid="policy-status">
                    {p.isPaused ? (
                      <span className="badge">Paused</span>
                    ) : (
                      <span className="badge badge-status-active">Active</span>
                    )}
                  </td>
                  <td data-label="Open incidents">
                    {p.activeIncidentCount > 0 ? (
                      <span className="badge badge-severity-critical">{p.activeIncidentCount}</span>
                    ) : (
                      <span className="muted">0</span>
                    )}
                  </td>
                  {manage ? (
                    <td className="actions">
                      <button
                        type="button"
                        className="btn btn-ghost btn-small"
                        aria-label={`Edit ${p.name}`}
                        onClick={() => {
                          setNotice(null);
                          setEditing(p);
                        }}
                      >
                        Edit
                      </button>
                      <button
                        type="button"
                        className="btn btn-ghost btn-small"
                        aria-label={`${p.isPaused ? "Resume" : "Pause"} ${p.name}`}
                        onClick={() =>
                          void act(
                            () => setPolicyPaused(slug, p.id, !p.isPaused),
                            `Policy “${p.name}” ${p.isPaused ? "resumed" : "paused"}.`,
                          )
                        }
                      >
                        {p.isPaused ? "Resume" : "Pause"}
                      </button>
                      <ConfirmButton
                        label={`Delete ${p.name}`}
                        confirmLabel="Delete policy"
                        onConfirm={() => act(() => deletePolicy(slug, p.id), `Policy “${p.name}” deleted.`)}
                      >
                        Delete
                      </ConfirmButton>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </section>
    </div>
  );
}
