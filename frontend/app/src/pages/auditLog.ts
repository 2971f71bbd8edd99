/** The audit log page's data: one page of entries (GraphQL `auditLog`, which can read one area at a
 * time) and the words that make an entry readable: what was done, to what, and what changed. */

import { fetchAuditLog } from "../api/operations";
import type { AuditEntry } from "../api/types";

/** The areas of the log, as the API's `area` filter names them (`accounts/selectors.py`). */
export const AUDIT_AREAS: { value: string; label: string }[] = [
  { value: "workspace", label: "Workspace" },
  { value: "members", label: "Members and access" },
  { value: "keys", label: "Keys and service accounts" },
  { value: "projects", label: "Projects" },
  { value: "flows", label: "Flows" },
  { value: "schedules", label: "Schedules" },
  { value: "runs", label: "Bulk actions on runs" },
  { value: "limits", label: "Concurrency limits" },
  { value: "alerts", label: "Alerts" },
];

export interface AuditLogPage {
  entries: AuditEntry[];
  /** The cursor of the next page, or null on the last page. */
  next: string | null;
}

/** The first page of the workspace's log (of one area, or all), or the page after `next`. */
export async function fetchAuditLogPage(slug: string, area: string, next: string | null): Promise<AuditLogPage> {
  const page = await fetchAuditLog(slug, next, area);
  return { entries: page.entries, next: page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null };
}

const ACTIONS: Record<string, string> = {
  "workspace.created": "Created the workspace",
  "workspace.updated": "Changed the workspace",
  "member.role_changed": "Changed a role",
  "member.removed": "Removed a member",
  "member.left": "Left the workspace",
  "invitation.created": "Invited someone",
  "invitation.resent": "Resent an invitation",
  "invitation.revoked": "Revoked an invitation",
  "invitation.accepted": "Accepted an invitation",
  "object_permission.granted": "Shared access",
  "object_permission.revoked": "Removed shared access",
  "api_key.created": "Created an API key",
  "api_key.rotated": "Rotated an API key",
  "api_key.revoked": "Revoked an API key",
  "account.signed_out_everywhere": "Signed out everywhere and revoked their personal API keys",
  "service_account.created": "Created a service account",
  "service_account.updated": "Changed a service account",
  "service_account.deleted": "Deleted a service account",
  "project.created": "Created a project",
  "project.updated": "Changed a project",
  "project.deleted": "Deleted a project",
  "flow.updated": "Changed a flow",
  "flow.deleted": "Deleted a flow",
  "flow.version_archived": "Archived a flow version",
  "flow.version_restored": "Restored a flow version",
  "flow.version_pinned": "Pinned a flow version",
  "flow.version_unpinned": "Unpinned a flow version",
  "schedule.created": "Added a schedule",
  "schedule.updated": "Changed a schedule",
  "schedule.paused": "Paused a schedule",
  "schedule.resumed": "Resumed a schedule",
  "schedule.deleted": "Deleted a schedule",
  "bulk_action.created": "Started a bulk action on runs",
  "concurrency_limit.set": "Set a concurrency limit",
  "concurrency_limit.deleted": "Removed a concurrency limit",
  "sla_policy.created": "Created an SLA policy",
  "sla_policy.updated": "Changed an SLA policy",
  "sla_policy.paused": "Paused an SLA policy",
  "sla_policy.resumed": "Resumed an SLA policy",
  "sla_policy.deleted": "Deleted an SLA policy",
  "notification_channel.created": "Created a notification channel",
  "notification_channel.updated": "Changed a notification channel",
  "notification_channel.deleted": "Deleted a notification channel",
  "notification_channel.tested": "Sent a test notification",
  "incident.acknowledged": "Acknowledged an incident",
  "incident.snoozed": "Snoozed an incident",
  "incident.resolved": "Resolved an incident",
};

/** "Set a concurrency limit" for `concurrency_limit.set`; an action this page does not know yet
 * reads as its name. */
export function actionLabel(action: string): string | null {
  return ACTIONS[action] ?? null;
}

const TARGET_TYPES: Record<string, string> = {
  apikey: "API key",
  serviceaccount: "Service account",
  membership: "Member",
  invitation: "Invitation",
  workspace: "Workspace",
  user: "User",
  project: "Project",
  flow: "Flow",
  flowversion: "Flow version",
  schedule: "Schedule",
  bulkaction: "Bulk action",
  concurrencylimit: "Concurrency limit",
  slapolicy: "SLA policy",
  notificationchannel: "Notification channel",
  incident: "Incident",
};

export function targetTypeLabel(targetType: string): string {
  return TARGET_TYPES[targetType] ?? targetType;
}

const FIELDS: Record<string, string> = {
  is_restricted: "restricted",
  is_active: "active",
  max_lateness_seconds: "max lateness (s)",
  max_crash_retries: "crash retries",
  concurrency_limit: "concurrency limit",
  interval_seconds: "interval (s)",
  anchor_date: "anchor",
  start_date: "starts",
  end_date: "ends",
  pinned_version: "pinned version",
  state_types: "states",
  state_type: "state",
  flow_id: "flow",
  scheduled_before: "scheduled before",
  scheduled_after: "scheduled after",
  threshold_seconds: "threshold (s)",
  consecutive_failures: "consecutive failures",
  history_size: "history size",
  agent_labels: "agent labels",
  is_paused: "paused",
  is_enabled: "enabled",
  channel_ids: "channels",
  project_id: "project",
  snoozed_until: "snoozed until",
};

function field(name: string): string {
  return FIELDS[name] ?? name.replace(/_/g, " ");
}

function value(v: unknown): string {
  if (v === null || v === undefined || v === "") return "none";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) return v.length ? v.map(value).join(", ") : "none";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function asObject(data: unknown): Record<string, unknown> | null {
  let parsed = data;
  if (typeof parsed === "string") {
    try {
      parsed = JSON.parse(parsed);
    } catch {
      return null;
    }
  }
  return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)
    ? (parsed as Record<string, unknown>)
    : null;
}

/** "restricted: no → yes; name: etl → billing": changes written as {field: [old, new]}. */
function changes(data: Record<string, unknown>): string {
  return Object.entries(data)
    .map(([k, v]) =>
      Array.isArray(v) && v.length === 2 ? `${field(k)}: ${value(v[0])} → ${value(v[1])}` : `${field(k)}: ${value(v)}`,
    )
    .join("; ");
}

function fields(data: Record<string, unknown>): string {
  return Object.entries(data)
    .map(([k, v]) => `${field(k)}: ${value(v)}`)
    .join("; ");
}

function removedRuns(data: Record<string, unknown>): string {
  const n = Number(data.future_runs_removed ?? 0);
  return n ? `${n} future run${n === 1 ? "" : "s"} removed` : "";
}

function bulkAction(data: Record<string, unknown>): string {
  const verb =
    data.action === "mark" && data.state_type
      ? `mark as ${value(data.state_type)}`
      : data.action === "clear_late"
        ? "clear late"
        : value(data.action);
  const matched = Number(data.matched ?? 0);
  const filters = asObject(data.filters);
  const filterText = filters && Object.keys(filters).length ? `; filter ${fields(filters)}` : "";
  return `${verb}: ${matched} run${matched === 1 ? "" : "s"} matched${filterText}`;
}

/** The details of an entry in words, e.g. "limit 3 → 5" for a changed concurrency limit. */
export function describeEntry(action: string, raw: unknown): string {
  const data = asObject(raw);
  if (data === null) return raw === null || raw === undefined ? "" : String(raw);
  if (Object.keys(data).length === 0) return "";
  switch (action) {
    case "concurrency_limit.set":
      return data.previous === null || data.previous === undefined
        ? `limit ${value(data.limit)} (new)`
        : `limit ${value(data.previous)} → ${value(data.limit)}`;
    case "concurrency_limit.deleted":
      return `was limit ${value(data.limit)}`;
    case "bulk_action.created":
      return bulkAction(data);
    case "schedule.paused":
    case "schedule.resumed":
      return removedRuns(data);
    case "schedule.created":
    case "schedule.deleted": {
      const { future_runs_removed: _removed, ...settings } = data;
      return [fields(settings), removedRuns(data)].filter(Boolean).join("; ");
    }
    case "flow.version_archived":
      return `version ${value(data.version)}${data.unpinned ? "; its pin was lifted" : ""}`;
    case "flow.version_restored":
      return `version ${value(data.version)}`;
    case "flow.version_pinned":
      return data.previous === null || data.previous === undefined
        ? `version ${value(data.version)}`
        : `version ${value(data.previous)} → ${value(data.version)}`;
    case "flow.version_unpinned":
      return `was version ${value(data.previous)}`;
    case "member.role_changed":
      return `role ${value(data.from)} → ${value(data.to)}`;
    case "account.signed_out_everywhere": {
      const keys = Number(data.revoked_api_keys ?? 0);
      const prefixes = Array.isArray(data.prefixes) && data.prefixes.length ? ` (${data.prefixes.map(value).join(", ")})` : "";
      return `${keys} personal API key${keys === 1 ? "" : "s"} revoked here${prefixes}`;
    }
    default:
      // Every "*.updated" action keeps the changed fields as {field: [old, new]}.
      return action.endsWith(".updated") ? changes(data) : fields(data);
  }
}
