/** Every GraphQL operation the web app sends, with its typed wrapper. */

import { graphql, mutate, type UserError } from "./graphql";
import type {
  ApiKey,
  AuditEntry,
  Invitation,
  InvitationPreview,
  Member,
  PageInfo,
  Role,
  ServiceAccount,

  WorkspaceDetail,
  WorkspaceSummary,
} from "./types";

interface Payload {
  errors?: UserError[] | null;
}

const INVITATION_FIELDS = "id email role status invitedBy createdAt expiresAt sendCount";
const SERVICE_ACCOUNT_FIELDS = "id name description role isRestricted createdAt";
const API_KEY_FIELDS = "id name kind owner lookupPrefix role createdAt expiresAt lastUsedAt revokedAt";
const ERRORS = "errors { code message field }";

export async function fetchWorkspaces(): Promise<WorkspaceSummary[]> {
  const { data } = await graphql<{ workspaces: WorkspaceSummary[] }>("query Workspaces { workspaces { id name slug viewerRole } }");
  return data.workspaces ?? [];
}


export async function fetchWorkspace(slug: string): Promise<WorkspaceDetail | null> {
  const { data } = await graphql<{ workspace: WorkspaceDetail | null }>(
    "query Workspace($slug: String!) { workspace(slug: $slug) { id name slug createdAt viewerRole } }",
    { slug },
  );
  return data.workspace;
}

export interface TeamData {
  members: Member[];
  invitations: Invitation[] | null;
}

export async function fetchTeam(slug: string, withInvitations: boolean): Promise<TeamData> {
  // Invitations only for those who manage them (others may not read them: the field would error).
  const { data } = await graphql<{ workspace: (TeamData & { id: string }) | null }>(
    `query Team($slug: String!, $withInvitations: Boolean!) { workspace(slug: $slug) { id
      members { id role createdAt user { id email fullName } }
      invitations @include(if: $withInvitations) { ${INVITATION_FIELDS} } } }`,
    { slug, withInvitations },
  );
  if (!data.workspace) throw new Error("This workspace does not exist, or you are not a member of it.");
  return { members: data.workspace.members ?? [], invitations: data.workspace.invitations ?? null };
}

export async function fetchServiceAccounts(slug: string): Promise<ServiceAccount[]> {
  const { data } = await graphql<{ workspace: { serviceAccounts: ServiceAccount[] } | null }>(
    `query ServiceAccounts($slug: String!) { workspace(slug: $slug) { id serviceAccounts { ${SERVICE_ACCOUNT_FIELDS} } } }`,
    { slug },
  );
  if (!data.workspace) throw new Error("This workspace does not exist, or you are not a member of it.");
  return data.workspace.serviceAccounts ?? [];
}

export async function fetchApiKeys(slug: string): Promise<ApiKey[]> {
  const { data } = await graphql<{ workspace: { apiKeys: ApiKey[] } | null }>(
    `query ApiKeys($slug: String!) { workspace(slug: $slug) { id apiKeys { ${API_KEY_FIELDS} } } }`,
    { slug },
  );
  if (!data.workspace) throw new Error("This workspace does not exist, or you are not a member of it.");
  return data.workspace.apiKeys ?? [];
}

export interface AuditPage {
  entries: AuditEntry[];
  pageInfo: PageInfo;
}

/** One page of the workspace's audit log, newest first: all of it, or one area (`area`, as
 * `accounts/selectors.py` names them; "" for all). */
export async function fetchAuditLog(slug: string, cursor: string | null, area = ""): Promise<AuditPage> {
  const { data, errors } = await graphql<{
    workspace: { auditLog: { edges: { node: AuditEntry }[]; pageInfo: PageInfo } | null } | null;
  }>(
    `query AuditLog($slug: String!, $cursor: String, $area: String) { workspace(slug: $slug) { id
      auditLog(first: 50, after: $cursor, area: $area) {
        edges { node { id createdAt actor action targetType targetLabel data ipAddress } }
        pageInfo { hasNextPage endCursor } } } }`,
    { slug, cursor, area: area || null },
  );
  const log = data.workspace?.auditLog;
  if (!log) throw new Error(errors.map((e) => e.message).join(" ") || "The audit log could not be loaded.");
  return { entries: log.edges.map((e) => e.node), pageInfo: log.pageInfo };
}

export async function fetchInvitationPreview(token: string): Promise<InvitationPreview | null> {
  const { data } = await graphql<{ invitation: InvitationPreview | null }>(
    `query InvitationPreview($token: String!) {
      invitation(token: $token) { workspaceName workspaceSlug email role invitedBy status expiresAt } }`,
    { token },
  );
  return data.invitation;
}

// --- Mutations --------------------------------------------------------------------------------

export async function createWorkspace(name: string, slug: string | null): Promise<string> {
  const payload = await mutate<Payload & { workspace: { slug: string } | null }>(
    `mutation CreateWorkspace($name: String!, $slug: String) {
      createWorkspace(name: $name, slug: $slug) { workspace { slug } ${ERRORS} } }`,
    { name, slug },
    "createWorkspace",
  );
  return payload.workspace?.slug ?? "";
}

export async function updateWorkspace(workspace: string, name: string, slug: string): Promise<string> {
  const payload = await mutate<Payload & { workspace: { slug: string } | null }>(
    `mutation UpdateWorkspace($workspace: String!, $name: String, $slug: String) {
      updateWorkspace(workspace: $workspace, name: $name, slug: $slug) { workspace { slug } ${ERRORS} } }`,
    { workspace, name, slug },
    "updateWorkspace",
  );
  return payload.workspace?.slug ?? slug;
}

export async function inviteMember(workspace: string, email: string, role: Role): Promise<void> {
  await mutate(
    `mutation InviteMember($workspace: String!, $email: String!, $role: String!) {
      inviteMember(workspace: $workspace, email: $email, role: $role) { invitation { ${INVITATION_FIELDS} } ${ERRORS} } }`,
    { workspace, email, role },
    "inviteMember",
  );
}

export async function revokeInvitation(workspace: string, id: string): Promise<void> {
  await mutate(
    `mutation RevokeInvitation($workspace: String!, $id: ID!) {
      revokeInvitation(workspace: $workspace, id: $id) { ${ERRORS} } }`,
    { workspace, id },
    "revokeInvitation",
  );
}

export async function resendInvitation(workspace: string, id: string): Promise<void> {
  await mutate(
    `mutation ResendInvitation($workspace: String!, $id: ID!) {
      resendInvitation(workspace: $workspace, id: $id) { ${ERRORS} } }`,
    { workspace, id },
    "resendInvitation",
  );
}

export async function acceptInvitation(token: string): Promise<{ slug: string; name: string }> {
  const payload = await mutate<Payload & { workspace: { slug: string; name: string } | null }>(
    `mutation AcceptInvitation($token: String!) {
      acceptInvitation(token: $token) { workspace { slug name } ${ERRORS} } }`,
    { token },
    "acceptInvitation",
  );
  if (!payload.workspace) throw new Error("The invitation could not be accepted.");
  return payload.workspace;
}

export async function changeMemberRole(workspace: string, memberId: string, role: Role): Promise<Role> {
  const payload = await mutate<Payload & { member: { id: string; role: Role } | null }>(
    `mutation ChangeMemberRole($workspace: String!, $memberId: ID!, $role: String!) {
      changeMemberRole(workspace: $workspace, memberId: $memberId, role: $role) { member { id role } ${ERRORS} } }`,
    { workspace, memberId, role },
    "changeMemberRole",
  );
  return payload.member?.role ?? role;
}

export async function removeMember(workspace: string, memberId: string): Promise<void> {
  await mutate(
    `mutation RemoveMember($workspace: String!, $memberId: ID!) {
      removeMember(workspace: $workspace, memberId: $memberId) { ok ${ERRORS} } }`,
    { workspace, memberId },
    "removeMember",
  );
}

export async function leaveWorkspace(workspace: string): Promise<void> {
  await mutate(
    `mutation LeaveWorkspace($workspace: String!) { leaveWorkspace(workspace: $workspace) { ok ${ERRORS} } }`,
    { workspace },
    "leaveWorkspace",
  );
}

export async function createServiceAccount(
  workspace: string,
  name: string,
  role: Role,
  description: string,
): Promise<ServiceAccount | null> {
  const payload = await mutate<Payload & { serviceAccount: ServiceAccount | null }>(
    `mutation CreateServiceAccount($workspace: String!, $name: String!, $role: String!, $description: String) {
      createServiceAccount(workspace: $workspace, name: $name, role: $role, description: $description) {
        serviceAccount { ${SERVICE_ACCOUNT_FIELDS} } ${ERRORS} } }`,
    { workspace, name, role, description },
    "createServiceAccount",
  );
  return payload.serviceAccount;
}

export async function deleteServiceAccount(workspace: string, id: string): Promise<void> {
  await mutate(
    `mutation DeleteServiceAccount($workspace: String!, $id: ID!) {
      deleteServiceAccount(workspace: $workspace, id: $id) { ok ${ERRORS} } }`,
    { workspace, id },
    "deleteServiceAccount",
  );
}

export interface CreatedKey {
  apiKey: ApiKey;
  secret: string;
}

export async function createApiKey(
  workspace: string,
  name: string,
  expiresAt: string | null,
  role: Role | null,
): Promise<CreatedKey> {
  const payload = await mutate<Payload & { apiKey: ApiKey | null; secret: string | null }>(
    `mutation CreateApiKey($workspace: String!, $name: String!, $expiresAt: DateTime, $role: String) {
      createApiKey(workspace: $workspace, name: $name, expiresAt: $expiresAt, role: $role) {
        apiKey { ${API_KEY_FIELDS} } secret ${ERRORS} } }`,
    { workspace, name, expiresAt, role },
    "createApiKey",
  );
  if (!payload.apiKey || !payload.secret) throw new Error("The key was not created.");
  return { apiKey: payload.apiKey, secret: payload.secret };
}

export async function createServiceAccountKey(
  workspace: string,
  serviceAccountId: string,
  name: string,
  expiresAt: string | null,
): Promise<CreatedKey> {
  const payload = await mutate<Payload & { apiKey: ApiKey | null; secret: string | null }>(
    `mutation CreateServiceAccountKey($workspace: String!, $serviceAccountId: ID!, $name: String!, $expiresAt: DateTime) {
      createServiceAccountKey(workspace: $workspace, serviceAccountId: $serviceAccountId, name: $name, expiresAt: $expiresAt) {
        apiKey { ${API_KEY_FIELDS} } secret ${ERRORS} } }`,
    { workspace, serviceAccountId, name, expiresAt },
    "createServiceAccountKey",
  );
  if (!payload.apiKey || !payload.secret) throw new Error("The key was not created.");
  return { apiKey: payload.apiKey, secret: payload.secret };
}

export async function revokeApiKey(workspace: string, id: string): Promise<void> {
  await mutate(
    `mutation RevokeApiKey($workspace: String!, $id: ID!) {
      revokeApiKey(workspace: $workspace, id: $id) { apiKey { id revokedAt } ${ERRORS} } }`,
    { workspace, id },
    "revokeApiKey",
  );
}

/** How many of your personal API keys still work, per workspace (workspaces without any left out). */
export interface PersonalKeyCount {
  workspaceSlug: string;
  workspaceName: string;
  count: number;
}

export async function fetchPersonalApiKeys(): Promise<PersonalKeyCount[]> {
  const { data } = await graphql<{ personalApiKeys: PersonalKeyCount[] }>(
    "query PersonalApiKeys { personalApiKeys { workspaceSlug workspaceName count } }",
  );
  return data.personalApiKeys ?? [];
}

export interface SignedOutEverywhere {
  sessionsEnded: number;
  revokedApiKeys: number;
  workspaces: PersonalKeyCount[];
}

/** End every session of yours (this one too) and revoke all your personal API keys; needs your password. */
export async function signOutEverywhere(password: string): Promise<SignedOutEverywhere> {
  const payload = await mutate<Payload & Partial<SignedOutEverywhere>>(
    `mutation SignOutEverywhere($password: String!) {
      signOutEverywhere(password: $password) {
        ok sessionsEnded revokedApiKeys workspaces { workspaceSlug workspaceName count } ${ERRORS} } }`,
    { password },
    "signOutEverywhere",
  );
  return {
    sessionsEnded: payload.sessionsEnded ?? 0,
    revokedApiKeys: payload.revokedApiKeys ?? 0,
    workspaces: payload.workspaces ?? [],
  };
}
