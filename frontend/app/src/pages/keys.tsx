import { useState, type FormEvent } from "react";
import { Link } from "react-router";

import { errorMessage } from "../api/graphql";
import {
  createApiKey,
  createServiceAccount,
  createServiceAccountKey,
  deleteServiceAccount,
  fetchApiKeys,
  fetchServiceAccounts,
  revokeApiKey,
  type CreatedKey,
} from "../api/operations";
import { fetchAgents } from "../api/orchestration";
import { rotateApiKey } from "../api/rest";
import { ALL_ROLES, canGrant, HUMAN_ROLES, roleLabel, type ApiKey, type Role, type ServiceAccount } from "../api/types";
import { SelectField, TextField } from "../components/Field";
import {
  Alert,
  ConfirmButton,
  EmptyState,
  ErrorState,
  RoleBadge,
  SecretPanel,
  Spinner,
  StatusBadge,
  Time,
  useAsync,
  useCopy,
} from "../components/ui";
import { AgentStatusBadge } from "../components/orchestration";
import { useFallbackPolling, useLiveRefresh } from "../live";
import { useWorkspace } from "./WorkspaceLayout";

const EXPIRY_CHOICES = [
  { value: "30", label: "30 days" },
  { value: "90", label: "90 days" },
  { value: "365", label: "1 year" },
  { value: "never", label: "Never" },
];

function expiryFromChoice(choice: string): string | null {
  if (choice === "never") return null;
  const days = Number(choice);
  return new Date(Date.now() + days * 24 * 3600 * 1000).toISOString();
}

function keyStatus(k: ApiKey): string {
  if (k.revokedAt) return "revoked";
  if (k.expiresAt && new Date(k.expiresAt).getTime() <= Date.now()) return "expired";
  return "active";
}

type Notice = { kind: "success" | "error"; text: string } | null;

export function ApiKeysPage() {
  const { workspace } = useWorkspace();
  const keys = useAsync(() => fetchApiKeys(workspace.slug), [workspace.slug]);
  const [name, setName] = useState("");
  const [expiry, setExpiry] = useState("90");
  const [role, setRole] = useState<string>("");
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string | null>(null);
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [rotating, setRotating] = useState<ApiKey | null>(null);
  const [rotated, setRotated] = useState<CreatedKey | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setFormError(null);
    setNotice(null);
    try {
      const result = await createApiKey(workspace.slug, name.trim(), expiryFromChoice(expiry), (role || null) as Role | null);
      setCreated(result);
      setName("");
      await keys.reload();
    } catch (err) {
      setFormError(errorMessage(err));
    }
    setBusy(false);
  };

  const revoke = async (k: ApiKey) => {
    setNotice(null);
    try {
      await revokeApiKey(workspace.slug, k.id);
      setNotice({ kind: "success", text: `Key “${k.name}” revoked. It stops working immediately.` });
      await keys.reload();
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
  };

  return (
    <div className="stack-lg">
      <section className="card" aria-labelledby="new-key-title">
        <div className="card-head">
          <h2 id="new-key-title">Create a personal API key</h2>
        </div>
        <p className="muted">
          A personal key acts as you in this workspace (never above your role) for the CLI, the SDK and scripts. For
          agents and CI, prefer a service account.
        </p>
        {created ? (
          <SecretPanel secret={created.secret} name={created.apiKey.name} onDone={() => setCreated(null)} />
        ) : null}
        <form onSubmit={submit} className="form form-inline" aria-label="Create API key">
          <TextField label="Key name" name="name" required maxLength={100} placeholder="laptop CLI" value={name} onChange={(e) => setName(e.target.value)} />
          <SelectField label="Expires" name="expires" value={expiry} onChange={(e) => setExpiry(e.target.value)}>
            {EXPIRY_CHOICES.map((c) => (
              <option key={c.value} value={c.value}>
                {c.label}
              </option>
            ))}
          </SelectField>
          <SelectField label="Key role" name="role" value={role} onChange={(e) => setRole(e.target.value)}>
            <option value="">Same as mine ({roleLabel(workspace.viewerRole)})</option>
            {HUMAN_ROLES.filter((r) => r !== workspace.viewerRole && canGrant(workspace.viewerRole, r)).map((r) => (
              <option key={r} value={r}>
                {roleLabel(r)}
              </option>
            ))}
          </SelectField>
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? "Creating…" : "Create key"}
          </button>
        </form>
        {formError ? <Alert kind="error">{formError}</Alert> : null}
      </section>

      <section className="card" aria-labelledby="keys-title">
        <div className="card-head">
          <h2 id="keys-title">API keys</h2>
        </div>
        {notice ? <Alert kind={notice.kind}>{notice.text}</Alert> : null}
        {rotated ? (
          <SecretPanel secret={rotated.secret} name={rotated.apiKey.name} onDone={() => setRotated(null)} />
        ) : null}
        {rotating ? (
          <RotateKeyForm
            slug={workspace.slug}
            apiKey={rotating}
            onCancel={() => setRotating(null)}
            onRotated={async (result, graceSeconds) => {
              setRotating(null);
              setRotated(result);
              setNotice({
                kind: "success",
                text:
                  graceSeconds === 0
                    ? `Key “${rotating.name}” was replaced; the old key stopped working.`
                    : `Key “${rotating.name}” was replaced; the old key keeps working until ${new Date(
                        Date.now() + graceSeconds * 1000,
                      ).toLocaleString()}.`,
              });
              await keys.reload();
            }}
          />
        ) : null}
        {keys.error ? <ErrorState error={keys.error} onRetry={() => void keys.reload()} /> : null}
        {!keys.data && keys.loading ? <Spinner label="Loading keys…" /> : null}
        {keys.data && keys.data.length === 0 ? <EmptyState>No API keys yet.</EmptyState> : null}
        {keys.data && keys.data.length > 0 ? (
          <KeyTable
            keys={keys.data}
            onRevoke={revoke}
            onRotate={(k) => {
              setNotice(null);
              setRotated(null);
              setRotating(k);
            }}
          />
        ) : null}
      </section>
    </div>
  );
}

const GRACE_CHOICES = [
  { value: "0", label: "Stop the old key now" },
  { value: "3600", label: "Keep the old key for 1 hour" },
  { value: "86400", label: "Keep the old key for 1 day" },
  { value: "604800", label: "Keep the old key for 7 days" },
];

/** Rotate a key: a new secret (shown once), and the old key revoked now or after a grace period so
 * that whatever uses it can be switched over first. */
function RotateKeyForm({
  slug,
  apiKey,
  onCancel,
  onRotated,
}: {
  slug: string;
  apiKey: ApiKey;
  onCancel: () => void;
  onRotated: (k: CreatedKey, graceSeconds: number) => Promise<void>;
}) {
  const [grace, setGrace] = useState("0");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const seconds = Number(grace);
      await onRotated(await rotateApiKey(slug, apiKey.id, seconds), seconds);
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };
  return (
    <div className="subpanel">
      <h3>Rotate key {apiKey.name}</h3>
      <p className="muted">
        A new secret replaces <code className="prefix">{apiKey.lookupPrefix}…</code> with the same name, role and expiry.
      </p>
      <form onSubmit={submit} className="form form-inline" aria-label={`Rotate key ${apiKey.name}`}>
        <SelectField label="Old key" name="grace" value={grace} onChange={(e) => setGrace(e.target.value)}>
          {GRACE_CHOICES.map((c) => (
            <option key={c.value} value={c.value}>
              {c.label}
            </option>
          ))}
        </SelectField>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Rotating…" : "Rotate key"}
        </button>
        <button type="button" className="btn btn-ghost" onClick={onCancel}>
          Cancel
        </button>
      </form>
      {error ? <Alert kind="error">{error}</Alert> : null}
    </div>
  );
}

function KeyTable({
  keys,
  onRevoke,
  onRotate,
}: {
  keys: ApiKey[];
  onRevoke: (k: ApiKey) => Promise<void>;
  onRotate: (k: ApiKey) => void;
}) {
  return (
    <table className="table">
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Prefix</th>
          <th scope="col">Owner</th>
          <th scope="col">Role</th>
          <th scope="col">Last used</th>
          <th scope="col">Expires</th>
          <th scope="col">Status</th>
          <th scope="col">
            <span className="sr-only">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {keys.map((k) => {
          const status = keyStatus(k);
          return (
            <tr key={k.id} data-testid="api-key-row" className={status !== "active" ? "row-dim" : undefined}>
              <td data-label="Name">
                <div className="cell-main">{k.name}</div>
              </td>
              <td data-label="Prefix">
                <code className="prefix">{k.lookupPrefix}…</code>
              </td>
              <td data-label="Owner">
                <div className="cell-main">{k.owner ?? "—"}</div>
                <div className="cell-sub">{k.kind === "service_account" ? "Service account" : "Personal"}</div>
              </td>
              <td data-label="Role">
                {k.role ? (
                  <RoleBadge role={k.role} />
                ) : (
                  <span className="muted">{k.kind === "service_account" ? "Same as account" : "Same as owner"}</span>
                )}
              </td>
              <td data-label="Last used">
                <Time value={k.lastUsedAt} empty="Never" />
              </td>
              <td data-label="Expires">
                <Time value={k.expiresAt} empty="Never" dateOnly />
              </td>
              <td data-label="Status">
                <StatusBadge status={status} />
              </td>
              <td className="actions">
                {status === "active" ? (
                  <>
                    <button
                      type="button"
                      className="btn btn-secondary btn-small"
                      aria-label={`Rotate key ${k.name}`}
                      onClick={() => onRotate(k)}
                    >
                      Rotate
                    </button>
                    <ConfirmButton label={`Revoke key ${k.name}`} confirmLabel="Revoke key" onConfirm={() => onRevoke(k)}>
                      Revoke
                    </ConfirmButton>
                  </>
                ) : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function ServiceAccountsPage() {
  const { workspace, manager } = useWorkspace();
  const accounts = useAsync(() => fetchServiceAccounts(workspace.slug), [workspace.slug]);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [role, setRole] = useState<Role>("agent");
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string | null>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [keyFor, setKeyFor] = useState<ServiceAccount | null>(null);
  const [created, setCreated] = useState<(CreatedKey & { account: ServiceAccount }) | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setFormError(null);
    setNotice(null);
    try {
      await createServiceAccount(workspace.slug, name.trim(), role, description.trim());
      setNotice({ kind: "success", text: `Service account “${name.trim()}” created. Create a key for it below.` });
      setName("");
      setDescription("");
      await accounts.reload();
    } catch (err) {
      setFormError(errorMessage(err));
    }
    setBusy(false);
  };

  const remove = async (a: ServiceAccount) => {
    setNotice(null);
    try {
      await deleteServiceAccount(workspace.slug, a.id);
      setNotice({ kind: "success", text: `Service account “${a.name}” deleted; its keys stopped working.` });
      await accounts.reload();
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
  };

  return (
    <div className="stack-lg">
      {manager ? (
        <section className="card" aria-labelledby="new-sa-title">
          <div className="card-head">
            <h2 id="new-sa-title">Create a service account</h2>
          </div>
          <p className="muted">
            Service accounts are non-human principals for agents and CI. The <strong>Agent</strong> role can only
            register, heartbeat, claim runs and report states and logs.
          </p>
          <form onSubmit={submit} className="form form-inline" aria-label="Create service account">
            <TextField label="Name" name="name" required maxLength={100} placeholder="k8s-agent" value={name} onChange={(e) => setName(e.target.value)} />
            <TextField
              label="Description"
              name="description"
              maxLength={500}
              placeholder="Runs flows in the prod cluster"
              value={description}
              onChange={(e) => setDescription(e.target.value)}
            />
            <SelectField label="Role" name="role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
              {ALL_ROLES.filter((r) => r !== "owner" && canGrant(workspace.viewerRole, r)).map((r) => (
                <option key={r} value={r}>
                  {roleLabel(r)}
                </option>
              ))}
            </SelectField>
            <button type="submit" className="btn btn-primary" disabled={busy}>
              {busy ? "Creating…" : "Create service account"}
            </button>
          </form>
          {formError ? <Alert kind="error">{formError}</Alert> : null}
        </section>
      ) : null}

      <section className="card" aria-labelledby="sa-title">
        <div className="card-head">
          <h2 id="sa-title">Service accounts</h2>
        </div>
        {notice ? <Alert kind={notice.kind}>{notice.text}</Alert> : null}
        {created ? <SecretPanel secret={created.secret} name={created.apiKey.name} onDone={() => setCreated(null)} /> : null}
        {created && created.account.role === "agent" ? (
          <ConnectAgentPanel slug={workspace.slug} account={created.account} created={created} />
        ) : null}
        {keyFor ? (
          <ServiceAccountKeyForm
            slug={workspace.slug}
            account={keyFor}
            onCancel={() => setKeyFor(null)}
            onCreated={(k) => {
              setKeyFor(null);
              setCreated({ ...k, account: keyFor });
            }}
          />
        ) : null}
        {accounts.error ? <ErrorState error={accounts.error} onRetry={() => void accounts.reload()} /> : null}
        {!accounts.data && accounts.loading ? <Spinner label="Loading service accounts…" /> : null}
        {accounts.data && accounts.data.length === 0 ? <EmptyState>No service accounts yet.</EmptyState> : null}
        {accounts.data && accounts.data.length > 0 ? (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {accounts.data.map((a) => (
                <tr key={a.id} data-testid="service-account-row">
                  <td data-label="Name">
                    <div className="cell-main">
                      {a.name}
                      {a.isRestricted ? <span className="badge badge-muted">Restricted</span> : null}
                    </div>
                    {a.description ? <div className="cell-sub">{a.description}</div> : null}
                  </td>
                  <td data-label="Role">
                    <RoleBadge role={a.role} />
                  </td>
                  <td data-label="Created">
                    <Time value={a.createdAt} dateOnly />
                  </td>
                  <td className="actions">
                    <button
                      type="button"
                      className="btn btn-secondary btn-small"
                      aria-label={`Create key for ${a.name}`}
                      onClick={() => {
                        setCreated(null);
                        setKeyFor(a);
                      }}
                    >
                      Create key
                    </button>
                    {manager ? (
                      <ConfirmButton label={`Delete ${a.name}`} confirmLabel="Delete account" onConfirm={() => remove(a)}>
                        Delete
                      </ConfirmButton>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        <p className="hint">Service account keys are listed with the other keys on the API keys page.</p>
      </section>
    </div>
  );
}

function ServiceAccountKeyForm({
  slug,
  account,
  onCancel,
  onCreated,
}: {
  slug: string;
  account: ServiceAccount;
  onCancel: () => void;
  onCreated: (k: CreatedKey) => void;
}) {
  const [name, setName] = useState(`${account.name} key`);
  const [expiry, setExpiry] = useState("365");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onCreated(await createServiceAccountKey(slug, account.id, name.trim(), expiryFromChoice(expiry)));
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };
  return (
    <div className="subpanel">
      <h3>New key for {account.name}</h3>
      <form onSubmit={submit} className="form form-inline" aria-label={`Create key for ${account.name}`}>
        <TextField label="Key name" name="name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        <SelectField label="Expires" name="expires" value={expiry} onChange={(e) => setExpiry(e.target.value)}>
          {EXPIRY_CHOICES.map((c) => (
            <option key={c.value} value={c.value}>
              {c.label}
            </option>
          ))}
        </SelectField>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Creating…" : "Create key"}
        </button>
        <button type="button" className="btn btn-ghost" onClick={onCancel}>
          Cancel
        </button>
      </form>
      {error ? <Alert kind="error">{error}</Alert> : null}
    </div>
  );
}

/** A word as the shell reads it: left bare when it is plain, else single-quoted. */
function shellWord(text: string): string {
  return /^[A-Za-z0-9_.,:/@%+=-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A label from the account's name: lower case, letters, digits, dots, dashes and underscores. */
function defaultLabel(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9_.-]+/g, "-").replace(/^-+|-+$/g, "") || "default";
}

/** The "connect a self-hosted agent" step after an Agent-role key is created: the command to run
 * (this server's URL, the key, a label; the variables and options `flowdeck agent start` reads),
 * and a status that turns green when an agent of this account connects (agent.* live events;
 * docs/live-updates.md). */
function ConnectAgentPanel({
  slug,
  account,
  created,
}: {
  slug: string;
  account: ServiceAccount;
  created: CreatedKey;
}) {
  const [label, setLabel] = useState(() => defaultLabel(account.name));
  const agents = useAsync(() => fetchAgents(slug), [slug]);
  useLiveRefresh(["agent."], agents.reload, 200);
  useFallbackPolling(agents.reload, 5000);

  const command =
    `FLOWDECK_API_URL=${shellWord(window.location.origin)} FLOWDECK_API_KEY=${shellWord(created.secret)} ` +
    `flowdeck agent start --label ${shellWord(label.trim() || "default")}`;
  // An agent of this account that called in after the key was made (both times are the server's).
  const since = new Date(created.apiKey.createdAt).getTime();
  const connected = (agents.data ?? []).find(
    (a) =>
      a.serviceAccountId === account.id &&
      a.status === "healthy" &&
      a.lastHeartbeatAt !== null &&
      new Date(a.lastHeartbeatAt).getTime() >= since,
  );

  const { copied, copy, ref: codeRef } = useCopy(command);


  return (
    <section className="connect-agent" aria-labelledby="connect-agent-title">
      <h3 id="connect-agent-title">Connect an agent with this key</h3>
      <p>
        Run this where your flows should run. The agent registers with {account.name}’s key and claims the runs whose
        labels are all among its labels (a flow without labels runs on any agent).
      </p>
      <div className="form form-inline">
        <TextField
          label="Agent label"
          name="label"
          maxLength={100}
          value={label}
          onChange={(e) => setLabel(e.target.value)}
        />
      </div>
      <div className="secret-row">
        <code ref={codeRef} className="secret" aria-label="Agent start command" data-testid="agent-command">
          {command}
        </code>
        <button type="button" className="btn btn-primary btn-small" onClick={copy}>
          {copied === "copied" ? "Copied" : "Copy command"}
        </button>
      </div>
      {copied === "failed" ? <p className="hint">Copying was blocked by the browser; the command is selected, press Ctrl+C.</p> : null}
      <p className="hint">
        It needs the <code>flowdeck</code> command: <code>pip install ./agents_sdk</code> from the Flowdeck repository;
        on the machine that runs <code>scripts/start</code> it is in <code>.venv/bin</code> (put that on your{" "}
        <code>PATH</code>).
      </p>
      <div role="status" aria-live="polite" data-testid="agent-connection">
        {connected ? (
          <p className="connect-agent-ok">
            <AgentStatusBadge status={connected.status} /> Agent <strong>{connected.name}</strong> is connected.{" "}
            <Link to={`/w/${slug}/agents`}>See it on the Agents page</Link>.
          </p>
        ) : (
          <p className="connect-agent-waiting">
            <span className="spinner" aria-hidden="true" /> Waiting for your agent…
          </p>
        )}
      </div>
    </section>
  );
}
