import { useEffect, useState, type FormEvent } from "react";
import { Link, Navigate, useNavigate, useParams } from "react-router";

import { errorMessage } from "../api/graphql";
import { acceptInvitation, createWorkspace, fetchInvitationPreview } from "../api/operations";
import { roleLabel } from "../api/types";
import { TextField } from "../components/Field";
import { AuthCard, FullPageError, FullPageSpinner } from "../components/Layout";
import { Alert, ErrorState, Spinner, Time, useAsync } from "../components/ui";
import { useSession } from "../session";

const LAST_WORKSPACE = "flowdeck:last-workspace";

export function rememberWorkspace(slug: string) {
  try {
    localStorage.setItem(LAST_WORKSPACE, slug);
  } catch {
    /* storage may be unavailable */
  }
}

/** "/": the last workspace used, the first one, or creating one. */
export function HomeRedirect() {
  const { status, workspaces, workspacesError, error, refresh } = useSession();
  if (status === "loading") return <FullPageSpinner />;
  if (status === "error") return <FullPageError message={error ?? "Could not reach Flowdeck."} onRetry={() => void refresh()} />;
  if (status === "anonymous") return <Navigate to="/account/login" replace />;
  if (workspacesError) return <FullPageError message={workspacesError} onRetry={() => void refresh()} />;
  if (!workspaces || workspaces.length === 0) return <Navigate to="/workspaces/new" replace />;
  let last: string | null = null;
  try {
    last = localStorage.getItem(LAST_WORKSPACE);
  } catch {
    last = null;
  }
  const target = workspaces.find((w) => w.slug === last) ?? workspaces[0]!;
  return <Navigate to={`/w/${target.slug}/dashboard`} replace />;
}

function suggestSlug(name: string): string {
  return name
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/g, "");
}

export function CreateWorkspacePage() {
  const { workspaces, reloadWorkspaces } = useSession();
  const navigate = useNavigate();
  const [name, setName] = useState("");
  const [slug, setSlug] = useState("");
  const [slugEdited, setSlugEdited] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    document.title = "Create workspace · Flowdeck";
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const chosen = (slugEdited ? slug : suggestSlug(name)).trim();
      const created = await createWorkspace(name.trim(), chosen || null);
      await reloadWorkspaces();
      navigate(`/w/${created}/dashboard`);
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  const shownSlug = slugEdited ? slug : suggestSlug(name);
  return (
    <main className="container narrow">
      <div className="card">
        <h1>Create a workspace</h1>
        <p className="muted">
          A workspace holds its own flows, runs, members and keys. {workspaces && workspaces.length === 0 ? "You do not belong to any workspace yet." : null}
        </p>
        {error ? <Alert kind="error">{error}</Alert> : null}
        <form onSubmit={submit} className="form">
          <TextField label="Workspace name" name="name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
          <TextField
            label="URL slug"
            name="slug"
            maxLength={48}
            pattern="[a-z0-9](?:[a-z0-9\-]{0,46}[a-z0-9])?"
            hint={
              <>
                Lowercase letters, digits and hyphens. Your workspace will live at <code>/w/{shownSlug || "…"}</code>.
              </>
            }
            value={shownSlug}
            onChange={(e) => {
              setSlugEdited(true);
              setSlug(e.target.value.toLowerCase());
            }}
          />
          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {busy ? "Creating…" : "Create workspace"}
            </button>
            {workspaces && workspaces.length > 0 ? (
              <Link to="/" className="btn btn-ghost">
                Cancel
              </Link>
            ) : null}
          </div>
        </form>
      </div>
    </main>
  );
}

const UNUSABLE: Record<string, { title: string; text: string }> = {
  accepted: { title: "This invitation was already used", text: "Each invitation link works once. If it was you, log in to reach the workspace." },
  revoked: { title: "This invitation was revoked", text: "Ask the person who invited you to send a new invitation." },
  expired: { title: "This invitation has expired", text: "Invitations are valid for 7 days. Ask the person who invited you to resend it." },
};

export function InvitationPage() {
  const { token = "" } = useParams();
  const { status, user, reloadWorkspaces, signOut } = useSession();
  const navigate = useNavigate();
  const { data: preview, error, loading, reload } = useAsync(() => fetchInvitationPreview(token), [token]);
  const [busy, setBusy] = useState(false);
  const [acceptError, setAcceptError] = useState<string | null>(null);

  if (loading && preview === null && !error) {
    return (
      <AuthCard title="Invitation">
        <Spinner label="Loading invitation…" />
      </AuthCard>
    );
  }
  if (error) {
    return (
      <AuthCard title="Invitation">
        <ErrorState error={error} onRetry={() => void reload()} />
      </AuthCard>
    );
  }
  if (!preview) {
    return (
      <AuthCard title="Invitation not found">
        <Alert kind="error" title="This invitation link is not valid">
          It may have been copied incompletely, or replaced by a newer invitation (resending an invitation makes the old
          link stop working). Ask the person who invited you to send it again.
        </Alert>
        <Link to="/" className="btn btn-secondary btn-block">
          Go to Flowdeck
        </Link>
      </AuthCard>
    );
  }
  const unusable = UNUSABLE[preview.status];
  if (unusable) {
    return (
      <AuthCard title={`Join ${preview.workspaceName}`}>
        <Alert kind="error" title={unusable.title}>
          {unusable.text}
        </Alert>
        <Link to="/" className="btn btn-secondary btn-block">
          Go to Flowdeck
        </Link>
      </AuthCard>
    );
  }

  const sameEmail = user && user.email.toLowerCase() === preview.email.toLowerCase();
  const accept = async () => {
    setBusy(true);
    setAcceptError(null);
    try {
      const ws = await acceptInvitation(token);
      await reloadWorkspaces();
      navigate(`/w/${ws.slug}/dashboard`, { replace: true });
    } catch (err) {
      setAcceptError(errorMessage(err));
      setBusy(false);
    }
  };

  return (
    <AuthCard title={`Join ${preview.workspaceName}`}>
      <dl className="invite-facts">
        <div>
          <dt>Workspace</dt>
          <dd>{preview.workspaceName}</dd>
        </div>
        <div>
          <dt>Invited by</dt>
          <dd>{preview.invitedBy ?? "A workspace admin"}</dd>
        </div>
        <div>
          <dt>Role</dt>
          <dd>{roleLabel(preview.role)}</dd>
        </div>
        <div>
          <dt>Sent to</dt>
          <dd>{preview.email}</dd>
        </div>
        <div>
          <dt>Expires</dt>
          <dd>
            <Time value={preview.expiresAt} />
          </dd>
        </div>
      </dl>
      {acceptError ? <Alert kind="error">{acceptError}</Alert> : null}
      {status === "loading" ? <Spinner /> : null}
      {status === "authenticated" && sameEmail ? (
        <button type="button" className="btn btn-primary btn-block" onClick={accept} disabled={busy}>
          {busy ? "Joining…" : "Accept invitation"}
        </button>
      ) : null}
      {status === "authenticated" && !sameEmail ? (
        <>
          <Alert kind="info">
            This invitation was sent to <strong>{preview.email}</strong>, but you are logged in as{" "}
            <strong>{user?.email}</strong>. Log out and continue with the invited address.
          </Alert>
          <button type="button" className="btn btn-secondary btn-block" onClick={() => void signOut()}>
            Log out
          </button>
        </>
      ) : null}
      {status === "anonymous" || status === "error" ? (
        <div className="stack">
          <Link
            className="btn btn-primary btn-block"
            to={`/account/signup?invitation=${encodeURIComponent(token)}&email=${encodeURIComponent(preview.email)}`}
          >
            Sign up to accept
          </Link>
          <Link
            className="btn btn-secondary btn-block"
            to={`/account/login?next=${encodeURIComponent(`/invitations/${token}`)}&email=${encodeURIComponent(preview.email)}&invitation=${encodeURIComponent(token)}`}
          >
            I already have an account: log in
          </Link>
        </div>
      ) : null}
    </AuthCard>
  );
}

export function NotFoundPage() {
  return (
    <AuthCard title="Page not found">
      <p className="muted">There is nothing at this address.</p>
      <Link to="/" className="btn btn-secondary btn-block">
        Go to Flowdeck
      </Link>
    </AuthCard>
  );
}
