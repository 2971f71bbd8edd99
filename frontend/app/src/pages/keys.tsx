import { useState, type FormEvent } from "react";

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
} from "../components/ui";
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
        {keys.error ? <ErrorState error={keys.error} onRetry={() => void keys.reload()} /> : null}
        {!keys.data && keys.loading ? <Spinner label="Loading keys…" /> : null}
        {keys.data && keys.data.length === 0 ? <EmptyState>No API keys yet.</EmptyState> : null}
        {keys.data && keys.data.length > 0 ? <KeyTable keys={keys.data} onRevoke={revoke} /> : null}
      </section>
    </div>
  );
}

function KeyTable({ keys, onRevoke }: { keys: ApiKey[]; onRevoke: (k: ApiKey) => Promise<void> }) {
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
                  <ConfirmButton label={`Revoke key ${k.name}`} confirmLabel="Revoke key" onConfirm={() => onRevoke(k)}>
                    Revoke
                  </ConfirmButton>
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
  const [created, setCreated] = useState<CreatedKey | null>(null);

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
        {keyFor ? (
          <ServiceAccountKeyForm
            slug={workspace.slug}
            account={keyFor}
            onCancel={() => setKeyFor(null)}
            onCreated={(k) => {
              setKeyFor(null);
              setCreated(k);
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
