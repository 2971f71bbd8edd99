import { useState, type FormEvent } from "react";
import { useNavigate } from "react-router";

import { isQuotaExceeded } from "../api/billing";
import { errorMessage } from "../api/graphql";
import {
  changeMemberRole,
  fetchTeam,
  inviteMember,
  leaveWorkspace,
  removeMember,
  resendInvitation,
  revokeInvitation,
} from "../api/operations";
import { canGrant, HUMAN_ROLES, roleLabel, type HumanRole, type Invitation, type Member, type Role } from "../api/types";
import { ActionError } from "../components/billing";
import { SelectField, TextField } from "../components/Field";
import { Alert, ConfirmButton, EmptyState, ErrorState, RoleBadge, Spinner, StatusBadge, Time, useAsync } from "../components/ui";
import { useSession } from "../session";
import { useWorkspace } from "./WorkspaceLayout";

type Notice = { kind: "success" | "error"; text: string } | null;

function memberLabel(m: Member): string {
  return m.user.fullName ? `${m.user.fullName} (${m.user.email})` : m.user.email;
}

export function TeamPage() {
  const { workspace, manager, reloadWorkspace } = useWorkspace();
  const { user, reloadWorkspaces } = useSession();
  const navigate = useNavigate();
  const team = useAsync(() => fetchTeam(workspace.slug, manager), [workspace.slug, manager]);
  const [notice, setNotice] = useState<Notice>(null);

  const act = async (fn: () => Promise<void>, success: string) => {
    setNotice(null);
    try {
      await fn();
      setNotice({ kind: "success", text: success });
      await team.reload();
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
  };

  const viewerRole = workspace.viewerRole;
  const canEditMember = (m: Member) => manager && !(m.role === "owner" && viewerRole !== "owner");

  return (
    <div className="stack-lg">
      {notice ? <Alert kind={notice.kind}>{notice.text}</Alert> : null}
      <section className="card" aria-labelledby="members-title">
        <div className="card-head">
          <h2 id="members-title">Members</h2>
          {team.data ? <span className="count">{team.data.members.length}</span> : null}
        </div>
        {team.error ? <ErrorState error={team.error} onRetry={() => void team.reload()} /> : null}
        {!team.data && team.loading ? <Spinner label="Loading members…" /> : null}
        {team.data ? (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Member</th>
                <th scope="col">Role</th>
                <th scope="col">Joined</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {team.data.members.map((m) => {
                const isMe = user && m.user.email.toLowerCase() === user.email.toLowerCase();
                return (
                  <tr key={m.id} data-testid="member-row">
                    <td data-label="Member">
                      <div className="cell-main">
                        {m.user.fullName || m.user.email}
                        {isMe ? <span className="you">you</span> : null}
                      </div>
                      {m.user.fullName ? <div className="cell-sub">{m.user.email}</div> : null}
                    </td>
                    <td data-label="Role">
                      {canEditMember(m) ? (
                        <select
                          className="select-inline"
                          aria-label={`Role for ${m.user.email}`}
                          value={m.role}
                          onChange={(e) => {
                            const role = e.target.value as Role;
                            const previous = m.role;
                            const showRole = (shown: Role) =>
                              team.setData((current) =>
                                current
                                  ? { ...current, members: current.members.map((x) => (x.id === m.id ? { ...x, role: shown } : x)) }
                                  : current,
                              );
                            showRole(role);
                            setNotice(null);
                            void (async () => {
                              try {
                                await changeMemberRole(workspace.slug, m.id, role);
                                setNotice({ kind: "success", text: `${memberLabel(m)} is now ${roleLabel(role)}.` });
                                if (isMe) await Promise.all([reloadWorkspaces(), reloadWorkspace()]);
                              } catch (err) {
                                // Refused (the last Owner, a role above yours…): the menu shows the real role again.
                                showRole(previous);
                                setNotice({ kind: "error", text: errorMessage(err) });
                              }
                              await team.reload();
                            })();
                          }}
                        >
                          {HUMAN_ROLES.filter((r) => r === m.role || canGrant(viewerRole, r)).map((r) => (
                            <option key={r} value={r}>
                              {roleLabel(r)}
                            </option>
                          ))}
                        </select>
                      ) : (
                        <RoleBadge role={m.role} />
                      )}
                    </td>
                    <td data-label="Joined">
                      <Time value={m.createdAt} dateOnly />
                    </td>
                    <td className="actions">
                      {isMe ? (
                        <ConfirmButton
                          confirmLabel="Leave workspace"
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
                          Leave
                        </ConfirmButton>
                      ) : canEditMember(m) ? (
                        <ConfirmButton
                          label={`Remove ${m.user.email}`}
                          confirmLabel="Remove member"
                          onConfirm={() => act(() => removeMember(workspace.slug, m.id), `${memberLabel(m)} was removed.`)}
                        >
                          Remove
                        </ConfirmButton>
                      ) : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        ) : null}
      </section>

      {manager ? (
        <InvitationsSection
          slug={workspace.slug}
          viewerRole={viewerRole}
          invitations={team.data?.invitations ?? null}
          loading={!team.data && team.loading}
          onChanged={async (text) => {
            setNotice({ kind: "success", text });
            await team.reload();
          }}
          onError={(text) => setNotice({ kind: "error", text })}
        />
      ) : (
        <p className="muted">Only Owners and Admins can invite people or change roles.</p>
      )}
    </div>
  );
}

function InvitationsSection({
  slug,
  viewerRole,
  invitations,
  loading,
  onChanged,
  onError,
}: {
  slug: string;
  viewerRole: Role;
  invitations: Invitation[] | null;
  loading: boolean;
  onChanged: (message: string) => Promise<void>;
  onError: (message: string) => void;
}) {
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<HumanRole>("developer");
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<{ message: string; quota: boolean } | null>(null);
  const { reloadUsage } = useWorkspace();

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setFormError(null);
    try {
      await inviteMember(slug, email.trim(), role);
      const sent = email.trim();
      setEmail("");
      void reloadUsage(); // an invitation holds a seat
      await onChanged(`Invitation sent to ${sent}.`);
    } catch (err) {
      setFormError({ message: errorMessage(err), quota: isQuotaExceeded(err) });
      if (isQuotaExceeded(err)) void reloadUsage();
    }
    setBusy(false);
  };

  const run = async (fn: () => Promise<void>, text: string) => {
    try {
      await fn();
      void reloadUsage(); // revoking frees a seat
      await onChanged(text);
    } catch (err) {
      onError(errorMessage(err));
    }
  };

  const visible = (invitations ?? []).filter((i) => i.status === "pending" || i.status === "expired");
  return (
    <section className="card" aria-labelledby="invitations-title">
      <div className="card-head">
        <h2 id="invitations-title">Invitations</h2>
      </div>
      <form onSubmit={submit} className="form form-inline" aria-label="Invite a member">
        <TextField
          label="Email address"
          type="email"
          name="email"
          required
          placeholder="colleague@example.com"
          value={email}
          onChange={(e) => setEmail(e.target.value)}
        />
        <SelectField label="Role" name="role" value={role} onChange={(e) => setRole(e.target.value as HumanRole)}>
          {HUMAN_ROLES.filter((r) => canGrant(viewerRole, r)).map((r) => (
            <option key={r} value={r}>
              {roleLabel(r)}
            </option>
          ))}
        </SelectField>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Sending…" : "Send invitation"}
        </button>
      </form>
      {formError ? (
        <ActionError message={formError.message} quota={formError.quota} slug={slug} owner={viewerRole === "owner"} />
      ) : null}
      {loading ? <Spinner label="Loading invitations…" /> : null}
      {invitations && visible.length === 0 ? <EmptyState>No pending invitations.</EmptyState> : null}
      {visible.length > 0 ? (
        <table className="table">
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Status</th>
              <th scope="col">Invited by</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {visible.map((i) => (
              <tr key={i.id} data-testid="invitation-row">
                <td data-label="Email">
                  <div className="cell-main">{i.email}</div>
                  {i.sendCount > 1 ? <div className="cell-sub">Sent {i.sendCount} times</div> : null}
                </td>
                <td data-label="Role">
                  <RoleBadge role={i.role} />
                </td>
                <td data-label="Status">
                  <StatusBadge status={i.status} />
                </td>
                <td data-label="Invited by">{i.invitedBy ?? "—"}</td>
                <td data-label="Expires">
                  <Time value={i.expiresAt} />
                </td>
                <td className="actions">
                  <button
                    type="button"
                    className="btn btn-ghost btn-small"
                    aria-label={`Resend invitation to ${i.email}`}
                    onClick={() => void run(() => resendInvitation(slug, i.id), `Invitation to ${i.email} sent again.`)}
                  >
                    Resend
                  </button>
                  <ConfirmButton
                    label={`Revoke invitation to ${i.email}`}
                    confirmLabel="Revoke"
                    onConfirm={() => run(() => revokeInvitation(slug, i.id), `Invitation to ${i.email} revoked.`)}
                  >
                    Revoke
                  </ConfirmButton>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}
