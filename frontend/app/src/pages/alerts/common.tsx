/** Pieces shared by the alerts pages and the alert badges on flow and run pages. */

import { Link, NavLink } from "react-router";

import type { AlertBadge, IncidentStatus, Severity } from "../../api/alerts";

/** Developers and up manage policies and act on incidents (`sla:manage`, `incident:update`). */
export function canManageAlerts(role: string): boolean {
  return role === "owner" || role === "admin" || role === "developer";
}

/** Admins and up manage notification channels (`notification_channel:manage`). */
export function canManageChannels(role: string): boolean {
  return role === "owner" || role === "admin";
}

export function AlertsNav({ slug }: { slug: string }) {
  const links = [
    { to: "incidents", label: "Incidents" },
    { to: "policies", label: "SLA policies" },
    { to: "channels", label: "Channels" },
  ];
  return (
    <nav className="subnav" aria-label="Alerts">
      {links.map((l) => (
        <NavLink
          key={l.to}
          to={`/w/${slug}/alerts/${l.to}`}
          end={l.to !== "incidents"}
          className={({ isActive }) => (isActive ? "subnav-link active" : "subnav-link")}
        >
          {l.label}
        </NavLink>
      ))}
    </nav>
  );
}

export function SeverityBadge({ severity }: { severity: Severity | string }) {
  return (
    <span className={`badge badge-severity-${severity}`} data-testid="severity">
      {severity === "critical" ? "Critical" : severity === "warning" ? "Warning" : severity}
    </span>
  );
}

const STATUS_LABELS: Record<IncidentStatus, string> = {
  open: "Open",
  acknowledged: "Acknowledged",
  resolved: "Resolved",
};

export function IncidentStatusBadge({ status, snoozedUntil }: { status: IncidentStatus | string; snoozedUntil?: string | null }) {
  const snoozed = snoozedUntil && status !== "resolved" && new Date(snoozedUntil).getTime() > Date.now();
  return (
    <span className={`badge badge-incident-${status}`} data-testid="incident-status" title={snoozed ? `Snoozed until ${new Date(snoozedUntil).toLocaleString()}` : undefined}>
      {STATUS_LABELS[status as IncidentStatus] ?? status}
      {snoozed ? " · snoozed" : ""}
    </span>
  );
}

/** "2 alerts" coloured by the worst severity, for a flow with active incidents. */
export function FlowAlertBadge({ slug, badge }: { slug: string; badge: AlertBadge | undefined }) {
  if (!badge || badge.activeCount <= 0) return null;
  const n = badge.activeCount;
  return (
    <Link
      to={`/w/${slug}/alerts/incidents?flow=${badge.flowId}`}
      className={`badge badge-alert badge-severity-${badge.severity}`}
      data-testid="flow-alert-badge"
      data-severity={badge.severity}
      title={`${n} active incident${n === 1 ? "" : "s"} (worst: ${badge.severity})`}
    >
      {n} {n === 1 ? "alert" : "alerts"}
    </Link>
  );
}

/** Parse "a, b ,c" into ["a", "b", "c"]. */
export function splitList(value: string): string[] {
  return value
    .split(/[,\n]/)
    .map((v) => v.trim())
    .filter(Boolean);
}
