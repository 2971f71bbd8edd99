/** Pieces shared by the alerts pages and the alert badges on flow and run pages. */

import { useCallback, useEffect, useState } from "react";
import { Link, NavLink } from "react-router";

import {
  fetchBadges,
  fetchIncidents,
  type AlertBadge,
  type IncidentStatus,
  type IncidentSummary,
  type Severity,
} from "../../api/alerts";
import { useLiveRefresh } from "../../live";

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

export function IncidentStatusBadge({
  status,
  snoozedUntil,
}: {
  status: IncidentStatus | string;
  snoozedUntil?: string | null;
}) {
  const until = snoozedUntil && status !== "resolved" ? new Date(snoozedUntil) : null;
  const snoozed = until !== null && until.getTime() > Date.now();
  return (
    <span
      className={`badge badge-incident-${status}`}
      data-testid="incident-status"
      title={snoozed ? `Snoozed until ${until.toLocaleString()}` : undefined}
    >
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

/** Active-incident badges by flow id, refetched when incidents open, change or resolve. A failure
 * leaves the page without badges rather than broken. */
export function useAlertBadges(slug: string): Map<string, AlertBadge> {
  const [badges, setBadges] = useState<Map<string, AlertBadge>>(new Map());
  const load = useCallback(async () => {
    try {
      const list = await fetchBadges(slug);
      setBadges(new Map(list.map((b) => [b.flowId, b])));
    } catch {
      /* no badges: the next event retries */
    }
  }, [slug]);
  useEffect(() => {
    void load();
  }, [load]);
  useLiveRefresh(["incident."], load, 500);
  return badges;
}

/** The active incidents covering one run, refetched on incident events. */
export function useRunIncidents(slug: string, runId: string): IncidentSummary[] {
  const [incidents, setIncidents] = useState<IncidentSummary[]>([]);
  const load = useCallback(async () => {
    try {
      setIncidents(await fetchIncidents(slug, { status: "active", flowRunId: runId }, 20));
    } catch {
      /* no badge: the next event retries */
    }
  }, [slug, runId]);
  useEffect(() => {
    setIncidents([]);
    void load();
  }, [load]);
  useLiveRefresh(["incident."], load, 500);
  return incidents;
}

/** A badge per active incident covering a run, linking to the incident. */
export function RunAlertBadges({ slug, incidents }: { slug: string; incidents: IncidentSummary[] }) {
  if (incidents.length === 0) return null;
  return (
    <>
      {incidents.map((i) => (
        <Link
          key={i.id}
          to={`/w/${slug}/alerts/incidents/${i.id}`}
          className={`badge badge-alert badge-severity-${i.severity}`}
          data-testid="run-alert-badge"
          data-severity={i.severity}
          title={i.cause || i.title}
        >
          Alert: {i.title}
        </Link>
      ))}
    </>
  );
}
