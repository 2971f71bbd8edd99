import { useState, type FormEvent } from "react";
import { useNavigate } from "react-router";

import { errorMessage, mutate } from "../api/graphql";
import { leaveWorkspace, updateWorkspace } from "../api/operations";
import { TextField } from "../components/Field";
import { Alert, ConfirmButton, Time } from "../components/ui";
import { useSession } from "../session";
import { useWorkspace } from "./WorkspaceLayout";

async function deleteWorkspace(workspace: string, confirmSlug: string): Promise<void> {
  await mutate(
    `mutation DeleteWorkspace($workspace: String!, $confirmSlug: String!) {
      deleteWorkspace(workspace: $workspace, confirmSlug: $confirmSlug) { ok errors { code message field } } }`,
    { workspace, confirmSlug },
    "deleteWorkspace",
  );
}

/** Owners only: deleting takes everything with it, so the slug must be typed to confirm. */
function DeleteWorkspaceSection({ slug, name }: { slug: string; name: string }) {
  const { reloadWorkspaces } = useSession();
  const navigate = useNavigate();
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await deleteWorkspace(slug, typed.trim());
      await reloadWorkspaces();
      navigate("/", { replace: true });
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  return (
    <section className="card danger-zone" aria-labelledby="delete-title">
      <div className="card-head">
        <h2 id="delete-title">Delete this workspace</h2>
      </div>
      <p className="muted">
        Deletes <strong>{name}</strong> for every member, with all its flows, runs, logs, schedules, keys and its audit
        log. This cannot be undone.
      </p>
      {error ? <Alert kind="error">{error}</Alert> : null}
      <form onSubmit={submit} className="form narrow-form">
        <TextField
          label="Type the workspace's slug to confirm"
          name="confirm_slug"
          autoComplete="off"
          spellCheck={false}
          hint={
            <>
              Type <code>{slug}</code>.
            </>
          }
          value={typed}
          onChange={(e) => setTyped(e.target.value)}
        />
        <div className="form-actions">
          <button type="submit" className="btn btn-danger" disabled={busy || typed.trim() !== slug}>
            {busy ? "Deleting…" : "Delete workspace"}
          </button>
        </div>
      </form>
    </section>
  );
}

export function SettingsPage() {
  const { workspace, manager, reloadWorkspace } = useWorkspace();
  const { reloadWorkspaces } = useSession();
  const navigate = useNavigate();
  const [name, setName] = useState(workspace.name);
  const [slug, setSlug] = useState(workspace.slug);
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setNotice(null);
    try {
      const newSlug = await updateWorkspace(workspace.slug, name.trim(), slug.trim());
      await reloadWorkspaces();
      if (newSlug !== workspace.slug) {
        navigate(`/w/${newSlug}/settings`, { replace: true });
      } else {
        await reloadWorkspace();
        setNotice({ kind: "success", text: "Workspace settings saved." });
      }
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
    setBusy(false);
  };

  return (
    <div className="stack-lg">
      <section className="card" aria-labelledby="general-title">
        <div className="card-head">
          <h2 id="general-title">General</h2>
        </div>
        {notice ? <Alert kind={notice.kind}>{notice.text}</Alert> : null}
        {manager ? (
          <form onSubmit={submit} className="form narrow-form">
            <TextField label="Workspace name" name="name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
            <TextField
              label="URL slug"
              name="slug"
              required
              maxLength={48}
              hint="Changing it changes every link to this workspace."
              value={slug}
              onChange={(e) => setSlug(e.target.value.toLowerCase())}
            />
            <div className="form-actions">
              <button type="submit" className="btn btn-primary" disabled={busy}>
                {busy ? "Saving…" : "Save changes"}
              </button>
            </div>
          </form>
        ) : (
          <dl className="facts">
            <div>
              <dt>Name</dt>
              <dd>{workspace.name}</dd>
            </div>
            <div>
              <dt>Slug</dt>
              <dd>{workspace.slug}</dd>
            </div>
          </dl>
        )}
        <p className="hint">
          Created <Time value={workspace.createdAt} dateOnly />.
        </p>
      </section>
      <section className="card danger-zone" aria-labelledby="leave-title">
        <div className="card-head">
          <h2 id="leave-title">Leave this workspace</h2>
        </div>
        <p className="muted">You lose access to its flows, runs and keys. Your personal keys here stop working.</p>
        <ConfirmButton
          className="btn btn-danger-outline"
          confirmLabel="Yes, leave workspace"
          onConfirm={async () => {
            try {
              await leaveWorkspace(workspace.slug);
              await reloadWorkspaces();
              navigate("/", { replace: true });
            } catch (err) {
              setNotice({ kind: "error", text: errorMessage(err) });
            }
          }}
        >
          Leave workspace
        </ConfirmButton>
      </section>
      {workspace.viewerRole === "owner" ? <DeleteWorkspaceSection slug={workspace.slug} name={workspace.name} /> : null}
    </div>
  );
}
