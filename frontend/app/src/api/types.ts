export type Role = "owner" | "admin" | "developer" | "viewer" | "agent";
export type HumanRole = Exclude<Role, "agent">;

export const HUMAN_ROLES: HumanRole[] = ["owner", "admin", "developer", "viewer"];
export const ALL_ROLES: Role[] = ["owner", "admin", "developer", "viewer", "agent"];

const RANK: Record<HumanRole, number> = { viewer: 0, developer: 1, admin: 2, owner: 3 };

export function roleLabel(role: string): string {
  return role ? role.charAt(0).toUpperCase() + role.slice(1) : "";
}

export function isManager(role: string | null | undefined): boolean {
  return role === "owner" || role === "admin";
}

/** Mirrors the server's rule (the server still decides): nobody grants above their own role. */
export function canGrant(granter: string | null | undefined, role: Role): boolean {
  if (!granter || granter === "agent") return false;
  if (role === "agent") return isManager(granter);
  return RANK[granter as HumanRole] >= RANK[role];
}

export interface Viewer {
  id: string;
  email: string;
  fullName: string;
}

export interface WorkspaceSummary {
  id: string;
  name: string;
  slug: string;
  viewerRole: Role;
}

export interface WorkspaceDetail extends WorkspaceSummary {
  createdAt: string;
}

export interface Member {
  id: string;
  role: Role;
  createdAt: string;
  user: Viewer;
}

export interface Invitation {
  id: string;
  email: string;
  role: Role;
  status: string;
  invitedBy: string | null;
  createdAt: string;
  expiresAt: string;
  sendCount: number;
}

export interface ServiceAccount {
  id: string;
  name: string;
  description: string;
  role: Role;
  isRestricted: boolean;
  createdAt: string;
}

export interface ApiKey {
  id: string;
  name: string;
  kind: string;
  owner: string | null;
  lookupPrefix: string;
  role: Role | null;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface AuditEntry {
  id: string;
  createdAt: string;
  actor: string | null;
  action: string;
  targetType: string;
  targetLabel: string;
  data: unknown;
  ipAddress: string | null;
}

export interface PageInfo {
  hasNextPage: boolean;
  endCursor: string | null;
}

export interface InvitationPreview {
  workspaceName: string;
  workspaceSlug: string;
  email: string;
  role: Role;
  invitedBy: string | null;
  status: string;
  expiresAt: string;
}
