/** The signed-in person's own account: changing the password, and — for someone who suspects a
 * leak — signing out everywhere and revoking every personal API key at once (a password change
 * alone leaves the keys working, as on GitHub). */

import { useEffect, useRef, useState, type FormEvent } from "react";

import { auth } from "../api/auth";
import { errorMessage } from "../api/graphql";
import { fetchPersonalApiKeys, signOutEverywhere, type PersonalKeyCount } from "../api/operations";
import { TextField } from "../components/Field";
import { Alert, ErrorState, Spinner, useAsync } from "../components/ui";
import { useSession } from "../session";

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** "2 personal API keys in Acme, 1 in Globex" — or that there are none. */
export function describeKeys(counts: PersonalKeyCount[]): string {
  const total = counts.reduce((sum, c) => sum + c.count, 0);
  if (total === 0) return "You have no personal API keys that still work, so none will be revoked.";
  const where = counts.map((c) => `${c.workspaceName} (${c.count})`).join(", ");
  return `${plural(total, "personal API key", "personal API keys")} will be revoked: ${where}. Scripts, the CLI and the SDK using ${total === 1 ? "it" : "them"} stop working at once.`;
}

export function AccountPage() {
  const { user } = useSession();
  useEffect(() => {
    document.title = "Your account · Flowdeck";
  }, []);
  return (
    <main className="container narrow stack-lg">
      <div>
        <h1>Your account</h1>
        <p className="muted">Signed in as {user?.email}.</p>
      </div>
      <ChangePasswordSection />
      <SignOutEverywhereSection />
    </main>
  );
}

function ChangePasswordSection() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [confirm, setConfirm] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<string[]>([]);
  const [done, setDone] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setDone(false);
    if (next !== confirm) {
      setErrors(["The two new passwords do not match."]);
      return;
    }
    setBusy(true);
    setErrors([]);
    try {
      const result = await auth.changePassword(current, next);
      if (result.kind === "error") {
        setErrors(result.errors.map((x) => x.message));
      } else {
        setDone(true);
        setCurrent("");
        setNext("");
        setConfirm("");
      }
    } catch (err) {
      setErrors([errorMessage(err)]);
    }
    setBusy(false);
  };

  return (
    <section className="card" aria-labelledby="password-title">
      <div className="card-head">
        <h2 id="password-title">Change password</h2>
      </div>
      <p className="muted">
        Other browsers and devices are signed out; this one stays signed in. Your personal API keys keep working — to
        revoke them too, use <strong>Sign out everywhere</strong> below.
      </p>
      {done ? <Alert kind="success">Your password was changed.</Alert> : null}
      {errors.length ? <Alert kind="error">{errors.join(" ")}</Alert> : null}
      <form onSubmit={submit} className="form narrow-form" aria-label="Change password">
        <TextField
          label="Current password"
          type="password"
          name="current_password"
          autoComplete="current-password"
          required
          value={current}
          onChange={(e) => setCurrent(e.target.value)}
        />
        <TextField
          label="New password"
          type="password"
          name="new_password"
          autoComplete="new-password"
          required
          minLength={10}
          hint="At least 10 characters; not a common password."
          value={next}
          onChange={(e) => setNext(e.target.value)}
        />
        <TextField
          label="Confirm new password"
          type="password"
          name="confirm_password"
          autoComplete="new-password"
          required
          value={confirm}
          onChange={(e) => setConfirm(e.target.value)}
        />
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? "Saving…" : "Change password"}
          </button>
        </div>
      </form>
    </section>
  );
}

function SignOutEverywhereSection() {
  const keys = useAsync(() => fetchPersonalApiKeys(), []);
  const [asking, setAsking] = useState(false);
  return (
    <section className="card danger-zone" aria-labelledby="everywhere-title">
      <div className="card-head">
        <h2 id="everywhere-title">Sign out everywhere</h2>
      </div>
      <p className="muted">
        Think your password, a session or a key has leaked? This signs you out on every browser and device,{" "}
        <strong>this one included</strong>, and revokes all your personal API keys in every workspace. Service-account
        keys (agents, CI) are not affected.
      </p>
      {keys.error ? <ErrorState error={keys.error} onRetry={() => void keys.reload()} /> : null}
      {!keys.data && keys.loading ? <Spinner label="Counting your keys…" /> : null}
      {keys.data ? <p data-testid="personal-key-count">{describeKeys(keys.data)}</p> : null}
      <button
        type="button"
        className="btn btn-danger btn-wrap"
        disabled={!keys.data}
        onClick={() => {
          void keys.reload();
          setAsking(true);
        }}
      >
        Sign out everywhere and revoke my personal API keys
      </button>
      {asking && keys.data ? <SignOutEverywhereDialog counts={keys.data} onCancel={() => setAsking(false)} /> : null}
    </section>
  );
}

/** The confirmation: what exactly will happen, and the current password. A native modal dialog
 * (focus stays inside, Escape cancels). */
function SignOutEverywhereDialog({ counts, onCancel }: { counts: PersonalKeyCount[]; onCancel: () => void }) {
  const { forgetSession } = useSession();
  const ref = useRef<HTMLDialogElement>(null);
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const result = await signOutEverywhere(password);
      // This session is gone on the server too: the signed-in layout sends the page to the sign-in
      // page, with what was done.
      forgetSession(`/account/login?signed_out=everywhere&revoked=${result.revokedApiKeys}`);
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-labelledby="everywhere-dialog-title"
      onCancel={(e) => {
        e.preventDefault();
        if (!busy) onCancel();
      }}
    >
      <h2 id="everywhere-dialog-title">Sign out everywhere and revoke your personal API keys?</h2>
      <ul className="dialog-list">
        <li>You will be signed out on every browser and device, including this one, and land on the sign-in page.</li>
        <li data-testid="dialog-key-count">{describeKeys(counts)}</li>
        <li>Service-account keys, your password and your workspaces stay as they are.</li>
      </ul>
      {error ? <Alert kind="error">{error}</Alert> : null}
      <form onSubmit={submit} className="form" aria-label="Confirm with your password">
        <TextField
          label="Your current password"
          type="password"
          name="password"
          autoComplete="current-password"
          required
          autoFocus
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <div className="form-actions">
          <button type="submit" className="btn btn-danger" disabled={busy}>
            {busy ? "Signing out everywhere…" : "Sign out everywhere"}
          </button>
          <button type="button" className="btn btn-ghost" onClick={onCancel} disabled={busy}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}
