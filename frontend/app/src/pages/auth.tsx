import { useEffect, useRef, useState, type FormEvent } from "react";
import { Link, Navigate, useNavigate, useParams, useSearchParams } from "react-router";

import { auth, type AllauthError, type AuthResult } from "../api/auth";
import { errorMessage } from "../api/graphql";
import { fetchInvitationPreview } from "../api/operations";
import { roleLabel, type InvitationPreview } from "../api/types";
import { safeNext, TextField } from "../components/Field";
import { AuthCard, FullPageSpinner } from "../components/Layout";
import { Alert, Spinner } from "../components/ui";
import { useSession } from "../session";

function ErrorList({ errors }: { errors: AllauthError[] | string[] }) {
  if (errors.length === 0) return null;
  const messages = errors.map((e) => (typeof e === "string" ? e : e.message));
  return (
    <Alert kind="error">
      {messages.length === 1 ? (
        <p>{messages[0]}</p>
      ) : (
        <ul>
          {messages.map((m, i) => (
            <li key={i}>{m}</li>
          ))}
        </ul>
      )}
    </Alert>
  );
}

/** After "sign out everywhere": what was done, and what to do next. */
function SignedOutEverywhereNotice({ revoked }: { revoked: number }) {
  const keys = Number.isFinite(revoked) && revoked > 0 ? revoked : 0;
  return (
    <Alert kind="success" title="You were signed out everywhere">
      Every browser and device is signed out, this one too
      {keys ? `, and ${keys} personal API key${keys === 1 ? " was" : "s were"} revoked` : ""}. Log in again to continue
      {keys ? "; create new keys where you still need them" : ""}.
    </Alert>
  );
}

function resultErrors(result: AuthResult): AllauthError[] {
  return result.kind === "error" ? result.errors : [];
}

export function LoginPage() {
  const { status, refresh } = useSession();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const next = safeNext(params.get("next"));
  const [email, setEmail] = useState(params.get("email") ?? "");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<string[]>([]);
  const [pendingVerification, setPendingVerification] = useState(false);

  if (status === "loading") return <FullPageSpinner />;
  if (status === "authenticated" && !busy) return <Navigate to={next} replace />;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setErrors([]);
    setPendingVerification(false);
    try {
      const result = await auth.login(email.trim(), password);
      if (result.kind === "authenticated") {
        await refresh();
        navigate(next, { replace: true });
        return;
      }
      if (result.kind === "pending" && result.flow === "verify_email") {
        setPendingVerification(true);
      } else if (result.kind === "error") {
        setErrors(resultErrors(result).map((x) => x.message));
      } else {
        setErrors(["Could not log in. Check your email and password."]);
      }
    } catch (err) {
      setErrors([errorMessage(err)]);
    }
    setBusy(false);
  };

  const signupLink = params.get("invitation")
    ? `/account/signup?invitation=${encodeURIComponent(params.get("invitation") ?? "")}`
    : "/account/signup";
  return (
    <AuthCard
      title="Log in to Flowdeck"
      footer={
        <p>
          New to Flowdeck? <Link to={signupLink}>Create an account</Link>
        </p>
      }
    >
      {params.get("reset") ? <Alert kind="success">Your password was changed. Log in with your new password.</Alert> : null}
      {params.get("signed_out") === "everywhere" ? <SignedOutEverywhereNotice revoked={Number(params.get("revoked") ?? 0)} /> : null}
      {params.get("verified") ? <Alert kind="success">Your email address is verified. Log in to continue.</Alert> : null}
      {pendingVerification ? (
        <Alert kind="info" title="Verify your email first">
          We have sent a verification link to <strong>{email}</strong>. Open it to finish signing in.
        </Alert>
      ) : null}
      <ErrorList errors={errors} />
      <form onSubmit={submit} className="form">
        <TextField label="Email" type="email" name="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <TextField
          label="Password"
          type="password"
          name="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
      <p className="form-aside">
        <Link to="/account/password/reset">Forgot your password?</Link>
      </p>
    </AuthCard>
  );
}

export function SignupPage() {
  const { status, refresh, reloadWorkspaces } = useSession();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const invitationToken = params.get("invitation") ?? "";
  const [invitation, setInvitation] = useState<InvitationPreview | null>(null);
  const [invitationState, setInvitationState] = useState<"none" | "loading" | "ready" | "unusable">(
    invitationToken ? "loading" : "none",
  );
  const [email, setEmail] = useState(params.get("email") ?? "");
  const [password, setPassword] = useState("");
  const [workspaceName, setWorkspaceName] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<string[]>([]);
  const [checkInbox, setCheckInbox] = useState(false);

  useEffect(() => {
    if (!invitationToken) return;
    let live = true;
    fetchInvitationPreview(invitationToken)
      .then((preview) => {
        if (!live) return;
        if (preview && preview.status === "pending") {
          setInvitation(preview);
          setEmail((current) => current || preview.email);
          setInvitationState("ready");
        } else {
          setInvitationState("unusable");
        }
      })
      .catch(() => live && setInvitationState("unusable"));
    return () => {
      live = false;
    };
  }, [invitationToken]);

  if (status === "loading") return <FullPageSpinner />;
  if (status === "authenticated" && !busy) {
    return <Navigate to={invitationToken ? `/invitations/${encodeURIComponent(invitationToken)}` : "/"} replace />;
  }

  if (checkInbox) {
    return (
      <AuthCard title="Check your inbox">
        <Alert kind="success" title="Almost there">
          We have sent a verification link to <strong>{email}</strong>. Open it to activate your account.
        </Alert>
        <p className="muted">
          No email after a few minutes? Check your spam folder, or <Link to="/account/login">log in</Link> to have it sent
          again.
        </p>
      </AuthCard>
    );
  }

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setErrors([]);
    try {
      const input: { email: string; password: string; workspace_name?: string; invitation?: string } = {
        email: email.trim(),
        password,
      };
      if (invitation) input.invitation = invitationToken;
      else if (workspaceName.trim()) input.workspace_name = workspaceName.trim();
      const result = await auth.signup(input);
      if (result.kind === "authenticated") {
        await refresh();
        const list = await reloadWorkspaces();
        const joined = invitation && list.find((w) => w.slug === invitation.workspaceSlug);
        navigate(joined ? `/w/${joined.slug}/dashboard` : "/", { replace: true });
        return;
      }
      if (result.kind === "pending" && result.flow === "verify_email") {
        setCheckInbox(true);
      } else if (result.kind === "error") {
        setErrors(result.errors.map((x) => x.message));
      } else {
        setErrors(["Could not create the account. Try again."]);
      }
    } catch (err) {
      setErrors([errorMessage(err)]);
    }
    setBusy(false);
  };

  const loginLink = invitationToken
    ? `/account/login?next=${encodeURIComponent(`/invitations/${invitationToken}`)}&invitation=${encodeURIComponent(invitationToken)}`
    : "/account/login";

  return (
    <AuthCard
      title={invitation ? `Join ${invitation.workspaceName}` : "Create your Flowdeck account"}
      footer={
        <p>
          Already have an account? <Link to={loginLink}>Log in</Link>
        </p>
      }
    >
      {invitationState === "loading" ? <Spinner label="Checking your invitation…" /> : null}
      {invitation ? (
        <Alert kind="info">
          {invitation.invitedBy ?? "A teammate"} invited <strong>{invitation.email}</strong> to join{" "}
          <strong>{invitation.workspaceName}</strong> as {roleLabel(invitation.role)}. Sign up with that address to join
          straight away.
        </Alert>
      ) : null}
      {invitationState === "unusable" ? (
        <Alert kind="error">
          This invitation link can no longer be used. You can still create an account with your own workspace.
        </Alert>
      ) : null}
      <ErrorList errors={errors} />
      <form onSubmit={submit} className="form">
        <TextField label="Email" type="email" name="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <TextField
          label="Password"
          type="password"
          name="password"
          autoComplete="new-password"
          required
          minLength={10}
          hint="At least 10 characters; not a common password."
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        {invitation ? null : (
          <TextField
            label="Workspace name"
            name="workspace_name"
            maxLength={100}
            placeholder="Acme Data"
            hint="Optional: your first workspace. You can rename it later."
            value={workspaceName}
            onChange={(e) => setWorkspaceName(e.target.value)}
          />
        )}
        <button type="submit" className="btn btn-primary btn-block" disabled={busy || invitationState === "loading"}>
          {busy ? "Creating account…" : invitation ? "Sign up and join" : "Sign up"}
        </button>
      </form>
    </AuthCard>
  );
}

export function VerifyEmailPage() {
  const { key = "" } = useParams();
  const { status, refresh } = useSession();
  const navigate = useNavigate();
  const started = useRef(false);
  const [state, setState] = useState<"working" | "verified" | "failed">("working");
  const [errors, setErrors] = useState<string[]>([]);
  const [email, setEmail] = useState<string | null>(null);

  useEffect(() => {
    // One request at a time: the session check the app sends on load must be answered before the
    // verification logs the person in. Sent together, the check could read the session that the
    // login had just replaced, find it gone and answer by deleting the new session cookie.
    if (started.current || status === "loading") return;
    started.current = true;
    (async () => {
      try {
        const address = await auth.verificationEmail(key);
        const result = await auth.verifyEmail(key);
        if (result.kind === "authenticated") {
          await refresh();
          navigate("/", { replace: true });
          return;
        }
        if (result.kind === "error") {
          setErrors(result.errors.map((e) => e.message));
          setState("failed");
          return;
        }
        // Verified from another browser than the one that signed up: one log-in step, address filled in.
        setEmail(address);
        setState("verified");
      } catch (err) {
        setErrors([errorMessage(err)]);
        setState("failed");
      }
    })();
  }, [key, navigate, refresh, status]);

  if (state === "working") {
    return (
      <AuthCard title="Verifying your email">
        <Spinner label="Verifying your email address…" />
      </AuthCard>
    );
  }
  if (state === "verified") {
    return (
      <AuthCard title="Email verified">
        <Alert kind="success">
          Your email address is verified. This browser has not signed you in yet: log in once with your email and password
          to open your workspace.
        </Alert>
        <Link
          to={`/account/login?verified=1${email ? `&email=${encodeURIComponent(email)}` : ""}`}
          className="btn btn-primary btn-block"
        >
          Log in
        </Link>
      </AuthCard>
    );
  }
  return (
    <AuthCard title="This link did not work">
      <ErrorList errors={errors.length ? errors : ["This verification link is invalid or has expired."]} />
      <p className="muted">
        Verification links expire and work once. <Link to="/account/login">Log in</Link> and we will send you a new one.
      </p>
    </AuthCard>
  );
}

export function PasswordResetRequestPage() {
  const [email, setEmail] = useState("");
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState(false);
  const [errors, setErrors] = useState<string[]>([]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setErrors([]);
    try {
      const result = await auth.requestPasswordReset(email.trim());
      if (result.kind === "error") setErrors(result.errors.map((x) => x.message));
      else setSent(true);
    } catch (err) {
      setErrors([errorMessage(err)]);
    }
    setBusy(false);
  };

  return (
    <AuthCard
      title="Reset your password"
      footer={
        <p>
          Remembered it? <Link to="/account/login">Log in</Link>
        </p>
      }
    >
      {sent ? (
        <Alert kind="success" title="Check your inbox">
          If an account exists for <strong>{email}</strong>, we have sent it a link to set a new password.
        </Alert>
      ) : (
        <>
          <p className="muted">Enter the email address you signed up with and we will send you a reset link.</p>
          <ErrorList errors={errors} />
          <form onSubmit={submit} className="form">
            <TextField label="Email" type="email" name="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
            <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
              {busy ? "Sending…" : "Send reset link"}
            </button>
          </form>
        </>
      )}
    </AuthCard>
  );
}

export function PasswordResetKeyPage() {
  const { key = "" } = useParams();
  const { refresh } = useSession();
  const navigate = useNavigate();
  const [password, setPassword] = useState("");
  const [confirm, setConfirm] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<string[]>([]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (password !== confirm) {
      setErrors(["The two passwords do not match."]);
      return;
    }
    setBusy(true);
    setErrors([]);
    try {
      const result = await auth.resetPassword(key, password);
      if (result.kind === "authenticated") {
        await refresh();
        navigate("/", { replace: true });
        return;
      }
      if (result.kind === "error") {
        setErrors(result.errors.map((x) => x.message));
        setBusy(false);
        return;
      }
      navigate("/account/login?reset=1", { replace: true });
    } catch (err) {
      setErrors([errorMessage(err)]);
      setBusy(false);
    }
  };

  return (
    <AuthCard title="Choose a new password">
      <ErrorList errors={errors} />
      <form onSubmit={submit} className="form">
        <TextField
          label="New password"
          type="password"
          name="password"
          autoComplete="new-password"
          required
          minLength={10}
          hint="At least 10 characters; not a common password."
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <TextField
          label="Confirm new password"
          type="password"
          name="password2"
          autoComplete="new-password"
          required
          value={confirm}
          onChange={(e) => setConfirm(e.target.value)}
        />
        <button type="submit" className="btn btn-primary btn-block" disabled={busy}>
          {busy ? "Saving…" : "Set new password"}
        </button>
      </form>
      <p className="form-aside">
        Link expired? <Link to="/account/password/reset">Request a new one</Link>
      </p>
    </AuthCard>
  );
}
