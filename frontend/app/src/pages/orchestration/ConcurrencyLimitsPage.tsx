import { useEffect, useState, type FormEvent } from "react";

import { errorMessage } from "../../api/graphql";
import {
  deleteConcurrencyLimit,
  fetchConcurrencyLimits,
  setConcurrencyLimit,
  type ConcurrencyLimit,
} from "../../api/rest";
import { TextField } from "../../components/Field";
import { Alert, ConfirmButton, EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";

// Changing limits takes project:write on the server (Developer and above); others see them only.
function canEditLimits(role: string | null | undefined): boolean {
  return role === "owner" || role === "admin" || role === "developer";
}

type Notice = { kind: "success" | "error"; text: string } | null;

/** Task concurrency limits by tag: at most N task runs carrying the tag run at once, across every
 * flow and agent of the workspace (docs/agent-protocol.md, "Tag concurrency limits"). */
export function ConcurrencyLimitsPage() {
  const { workspace } = useWorkspace();
  const limits = useAsync(() => fetchConcurrencyLimits(workspace.slug), [workspace.slug]);
  const editable = canEditLimits(workspace.viewerRole);
  const [tag, setTag] = useState("");
  const [limit, setLimit] = useState("1");
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string | null>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [editing, setEditing] = useState<string | null>(null);

  useLiveRefresh(["concurrency_limit."], limits.reload, 300);
  useFallbackPolling(limits.reload, 15000);

  useEffect(() => {
    document.title = `Concurrency limits · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setFormError(null);
    setNotice(null);
    const name = tag.trim();
    try {
      if (limits.data?.some((l) => l.tag === name)) {
        throw new Error(`Tag “${name}” already has a limit: change it in the table below.`);
      }
      await setConcurrencyLimit(workspace.slug, name, parseLimit(limit));
      setNotice({ kind: "success", text: `Task runs tagged “${name}” are now limited to ${parseLimit(limit)} at once.` });
      setTag("");
      setLimit("1");
      await limits.reload();
    } catch (err) {
      setFormError(errorMessage(err));
    }
    setBusy(false);
  };

  const remove = async (l: ConcurrencyLimit) => {
    setNotice(null);
    try {
      await deleteConcurrencyLimit(workspace.slug, l.tag);
      setNotice({ kind: "success", text: `The limit on “${l.tag}” was removed; its task runs are no longer held back.` });
      await limits.reload();
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
  };

  return (
    <div className="stack-lg">
      {editable ? (
        <section className="card" aria-labelledby="new-limit-title">
          <div className="card-head">
            <h2 id="new-limit-title">Add a concurrency limit</h2>
          </div>
          <p className="muted">
            At most this many task runs carrying the tag run at once, across every flow and agent of the workspace;
            the others wait for a free slot. A limit of 0 holds them all.
          </p>
          <form onSubmit={submit} className="form form-inline" aria-label="Add concurrency limit">
            <TextField label="Tag" name="tag" required maxLength={100} placeholder="database" value={tag} onChange={(e) => setTag(e.target.value)} />
            <TextField
              label="Limit"
              name="limit"
              type="number"
              required
              min={0}
              max={1000000}
              step={1}
              value={limit}
              onChange={(e) => setLimit(e.target.value)}
            />
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {busy ? "Adding…" : "Add limit"}
            </button>
          </form>
          {formError ? <Alert kind="error">{formError}</Alert> : null}
        </section>
      ) : null}

      <section className="card" aria-labelledby="limits-title">
        <div className="card-head">
          <h2 id="limits-title">Concurrency limits</h2>
          {limits.data ? <span className="count">{limits.data.length}</span> : null}
        </div>
        {!editable ? (
          <p className="muted">Developers, Admins and Owners can add and change limits.</p>
        ) : null}
        {notice ? <Alert kind={notice.kind}>{notice.text}</Alert> : null}
        {limits.error ? <ErrorState error={limits.error} onRetry={() => void limits.reload()} /> : null}
        {!limits.data && limits.loading ? <Spinner label="Loading concurrency limits…" /> : null}
        {limits.data && limits.data.length === 0 ? (
          <EmptyState>No concurrency limits: task runs start as soon as their agent runs them.</EmptyState>
        ) : null}
        {limits.data && limits.data.length > 0 ? (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Tag</th>
                <th scope="col">Limit</th>
                <th scope="col">Since</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {limits.data.map((l) => (
                <tr key={l.id} data-testid="concurrency-limit-row">
                  <td data-label="Tag">
                    <code>{l.tag}</code>
                  </td>
                  <td data-label="Limit">
                    {editing === l.tag ? (
                      <EditLimitForm
                        row={l}
                        onCancel={() => setEditing(null)}
                        onSaved={async (value) => {
                          setEditing(null);
                          setNotice({ kind: "success", text: `Task runs tagged “${l.tag}” are now limited to ${value} at once.` });
                          await limits.reload();
                        }}
                      />
                    ) : (
                      <span data-testid="concurrency-limit-value">{l.limit}</span>
                    )}
                  </td>
                  <td data-label="Since">
                    <Time value={l.createdAt} dateOnly />
                  </td>
                  <td className="actions">
                    {editable && editing !== l.tag ? (
                      <>
                        <button
                          type="button"
                          className="btn btn-secondary btn-small"
                          aria-label={`Change the limit of ${l.tag}`}
                          onClick={() => setEditing(l.tag)}
                        >
                          Change
                        </button>
                        <ConfirmButton label={`Remove the limit of ${l.tag}`} confirmLabel="Remove limit" onConfirm={() => remove(l)}>
                          Remove
                        </ConfirmButton>
                      </>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        <p className="hint">
          Give a task its tags in code: <code>@task(tags=["database"])</code>.
        </p>
      </section>
    </div>
  );
}

function parseLimit(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 1_000_000) {
    throw new Error("A limit is a whole number from 0 to 1,000,000.");
  }
  return value;
}

function EditLimitForm({
  row,
  onCancel,
  onSaved,
}: {
  row: ConcurrencyLimit;
  onCancel: () => void;
  onSaved: (value: number) => Promise<void>;
}) {
  const { workspace } = useWorkspace();
  const [value, setValue] = useState(String(row.limit));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const parsed = parseLimit(value);
      await setConcurrencyLimit(workspace.slug, row.tag, parsed);
      await onSaved(parsed);
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} className="form form-inline" aria-label={`Change the limit of ${row.tag}`}>
      <TextField
        label={`New limit for ${row.tag}`}
        name="limit"
        type="number"
        required
        min={0}
        max={1000000}
        step={1}
        value={value}
        onChange={(e) => setValue(e.target.value)}
      />
      <button type="submit" className="btn btn-primary btn-small" disabled={busy}>
        {busy ? "Saving…" : "Save"}
      </button>
      <button type="button" className="btn btn-ghost btn-small" onClick={onCancel}>
        Cancel
      </button>
      {error ? <Alert kind="error">{error}</Alert> : null}
    </form>
  );
}
