/** A flow's versions: which one new runs use, and (Developers and up) pinning one as the active
 * version whatever is registered later, or archiving one so new runs no longer use it. */

import { useState } from "react";

import { errorMessage } from "../../api/graphql";
import { pinFlowVersion, setFlowVersionArchived, unpinFlowVersion, type FlowDetail } from "../../api/orchestration";
import { Alert, Time } from "../ui";

export function VersionsPanel({
  slug,
  flow,
  canEdit,
  onChanged,
}: {
  slug: string;
  flow: FlowDetail;
  canEdit: boolean;
  onChanged: () => Promise<void>;
}) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const activeId = flow.activeVersion?.id ?? null;

  const act = async (key: string, action: () => Promise<void>) => {
    setBusy(key);
    setError(null);
    try {
      await action();
      await onChanged();
    } catch (err) {
      setError(errorMessage(err));
    }
    setBusy(null);
  };

  return (
    <>
      <p className="muted" data-testid="version-rule">
        {flow.pinnedVersionId
          ? "New runs use the pinned version, whatever is registered later."
          : "New runs use the newest version that is not archived."}
      </p>
      {error ? <Alert kind="error">{error}</Alert> : null}
      <table className="table">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Registered</th>
            <th scope="col">Status</th>
            {canEdit ? (
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            ) : null}
          </tr>
        </thead>
        <tbody>
          {flow.versions.map((v) => {
            const pinned = v.id === flow.pinnedVersionId;
            return (
              <tr key={v.id} data-testid="version-row" data-version={v.version}>
                <td data-label="Version">v{v.version}</td>
                <td data-label="Registered">
                  <Time value={v.createdAt} />
                </td>
                <td data-label="Status">
                  {v.id === activeId ? <span className="badge badge-status-active">Active</span> : null}{" "}
                  {pinned ? <span className="badge">Pinned</span> : null}{" "}
                  {v.isArchived ? <span className="badge badge-muted">Archived</span> : null}
                </td>
                {canEdit ? (
                  <td data-label="Actions" className="row-actions">
                    {pinned ? (
                      <button type="button" className="btn btn-secondary btn-small" disabled={busy !== null}
                        onClick={() => void act(`unpin-${v.id}`, () => unpinFlowVersion(slug, flow.id))}
                        aria-label={`Unpin v${v.version}`}>
                        Unpin
                      </button>
                    ) : !v.isArchived ? (
                      <button type="button" className="btn btn-secondary btn-small" disabled={busy !== null}
                        onClick={() => void act(`pin-${v.id}`, () => pinFlowVersion(slug, flow.id, v.id))}
                        aria-label={`Pin v${v.version}`}>
                        Pin
                      </button>
                    ) : null}{" "}
                    <button type="button" className="btn btn-ghost btn-small" disabled={busy !== null}
                      onClick={() => void act(`archive-${v.id}`, () => setFlowVersionArchived(slug, flow.id, v.id, !v.isArchived))}
                      aria-label={`${v.isArchived ? "Restore" : "Archive"} v${v.version}`}>
                      {v.isArchived ? "Restore" : "Archive"}
                    </button>
                  </td>
                ) : null}
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}
