/** Billing pieces used across the workspace: the quota banner, the 402 message where a person hits
 * a limit, usage bars and the runs-by-day chart. */

import { useState } from "react";
import { Link } from "react-router";

import { formatCount, quotaLevels, type QuotaLevel, type Usage } from "../api/billing";
import { Alert, formatDate } from "./ui";

function bannerText(q: QuotaLevel, usage: Usage): string {
  const until = formatDate(usage.periodEnd);
  // "all 3" when exactly used up; "4 of its 3" when past it (a plan changed to a smaller one).
  const share = q.used === q.allowed ? `all ${formatCount(q.allowed)} of its` : `${formatCount(q.used)} of its ${formatCount(q.allowed)}`;
  if (q.limit === "runs") {
    return q.level === "exhausted"
      ? `This workspace has used ${share} flow runs this period: new runs, scheduled ones included, are refused until ${until}.`
      : `This workspace has used ${share} flow runs this period (${Math.floor((q.used / q.allowed) * 100)} %).`;
  }
  return q.level === "exhausted"
    ? `This workspace uses ${share} seats (members and pending invitations): no one else can be invited.`
    : `This workspace uses ${share} seats.`;
}

const DISMISSED = "flowdeck.quotaBanner.dismissed";

function dismissedKeys(): string[] {
  try {
    return JSON.parse(sessionStorage.getItem(DISMISSED) ?? "[]") as string[];
  } catch {
    return [];
  }
}

/** At 80 % and 100 % of the runs (unless overage is billed) or the seats: a banner linking to
 * Billing. Dismissed for the browser session; a worse level shows again. */
export function QuotaBanner({ slug, usage, owner }: { slug: string; usage: Usage | null; owner: boolean }) {
  const [dismissed, setDismissed] = useState<string[]>(dismissedKeys);
  if (!usage) return null;
  const key = (q: QuotaLevel) => `${slug}:${usage.periodStart}:${q.limit}:${q.level}`;
  const shown = quotaLevels(usage).filter((q) => !dismissed.includes(key(q)));
  if (shown.length === 0) return null;
  const dismiss = () => {
    const next = [...dismissed, ...shown.map(key)];
    setDismissed(next);
    try {
      sessionStorage.setItem(DISMISSED, JSON.stringify(next));
    } catch {
      // storage refused (private mode): dismissed for this page only
    }
  };
  const exhausted = shown.some((q) => q.level === "exhausted");
  return (
    <div className={`quota-banner ${exhausted ? "quota-banner-exhausted" : ""}`} role="status" data-testid="quota-banner">
      <div className="quota-banner-text">
        {shown.map((q) => (
          <p key={q.limit}>{bannerText(q, usage)}</p>
        ))}
      </div>
      <div className="quota-banner-actions">
        <Link to={`/w/${slug}/billing`} className="btn btn-secondary btn-small">
          {owner ? "Upgrade in Billing" : "See Billing"}
        </Link>
        <button type="button" className="btn btn-ghost btn-small" onClick={dismiss}>
          Dismiss
        </button>
      </div>
    </div>
  );
}

/** An error alert; for a plan limit (402 quota_exceeded) the server's message as it is plus the way
 * out: Billing (Owners: Upgrade). */
export function ActionError({
  message,
  quota,
  slug,
  owner,
}: {
  message: string;
  quota: boolean;
  slug: string;
  owner: boolean;
}) {
  if (!quota) return <Alert kind="error">{message}</Alert>;
  return (
    <Alert kind="error" title="Plan limit reached">
      <p data-testid="quota-message">{message}</p>
      <p>
        <Link to={`/w/${slug}/billing`} className="btn btn-secondary btn-small">
          {owner ? "Upgrade" : "See Billing"}
        </Link>
      </p>
    </Alert>
  );
}

/** One limit as a bar: "used of limit (n %)"; without a limit just the figure. */
export function UsageMeter({
  label,
  used,
  limit,
  unit,
  note,
  testId,
}: {
  label: string;
  used: number;
  limit: number | null;
  unit: string;
  note?: string;
  testId?: string;
}) {
  const share = limit ? used / limit : null;
  const percent = share === null ? null : Math.floor(share * 100);
  const level = share === null ? "" : share >= 1 ? "meter-full" : share >= 0.8 ? "meter-high" : "";
  return (
    <div className="meter" data-testid={testId}>
      <div className="meter-head">
        <span className="meter-label">{label}</span>
        <span className="meter-figure">
          {limit === null
            ? `${formatCount(used)} ${unit}, no limit`
            : `${formatCount(used)} of ${formatCount(limit)} ${unit} (${percent} %)`}
        </span>
      </div>
      {limit !== null ? (
        <div
          className={`meter-track ${level}`}
          role="meter"
          aria-label={label}
          aria-valuemin={0}
          aria-valuemax={limit}
          aria-valuenow={Math.min(used, limit)}
          aria-valuetext={`${formatCount(used)} of ${formatCount(limit)} ${unit}`}
        >
          <div className="meter-fill" style={{ width: `${Math.min(100, (share ?? 0) * 100)}%` }} />
        </div>
      ) : null}
      {note ? <p className="hint">{note}</p> : null}
    </div>
  );
}

/** Runs per day of the billing period so far (days without runs included), in the dashboard
 * chart's style: bars in a stretched SVG, axis labels in HTML so they keep their size. */
export function RunsByDayChart({ usage }: { usage: Usage }) {
  const counts = new Map(usage.runsByDay.map((d) => [d.day, d.runs]));
  const days: { day: string; runs: number }[] = [];
  const start = new Date(usage.periodStart);
  const end = new Date(Math.min(Date.now(), new Date(usage.periodEnd).getTime() - 1));
  const cursor = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()));
  while (cursor <= end && days.length < 62) {
    const day = cursor.toISOString().slice(0, 10);
    days.push({ day, runs: counts.get(day) ?? 0 });
    cursor.setUTCDate(cursor.getUTCDate() + 1);
  }
  for (const d of usage.runsByDay) if (!days.some((x) => x.day === d.day)) days.push(d);
  days.sort((a, b) => a.day.localeCompare(b.day));
  const max = Math.max(1, ...days.map((d) => d.runs));
  const total = days.reduce((n, d) => n + d.runs, 0);
  const width = 720;
  const height = 138;
  const inner = height - 8;
  const slot = width / Math.max(1, days.length);
  const barW = Math.max(2, slot * 0.72);
  const every = Math.max(1, Math.ceil(days.length / 8));
  const label = (day: string) =>
    new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  const busiest = days.reduce((a, b) => (b.runs > a.runs ? b : a), days[0] ?? { day: "", runs: 0 });

  return (
    <figure className="chart" data-testid="runs-by-day">
      <div className="chart-body">
        <div className="chart-yaxis" aria-hidden="true">
          <span className="chart-label">{formatCount(max)}</span>
          <span className="chart-label">0</span>
        </div>
        <div className="chart-plot">
          <svg viewBox={`0 0 ${width} ${height}`} role="img" preserveAspectRatio="none" aria-labelledby="runs-by-day-caption">
            <line x1={0} x2={width} y1={height} y2={height} className="chart-axis" />
            {days.map((d, i) => {
              const h = (d.runs / max) * inner;
              return (
                <rect key={d.day} x={i * slot + (slot - barW) / 2} y={height - h} width={barW} height={h} rx={1}
                  className="chart-bar">
                  <title>{`${label(d.day)}: ${formatCount(d.runs)} runs`}</title>
                </rect>
              );
            })}
          </svg>
          <div className="chart-xaxis" aria-hidden="true">
            {days.map((d, i) =>
              i % every === 0 ? (
                <span key={d.day} className={`chart-label${(i / every) % 2 === 1 ? " chart-label-minor" : ""}`}
                  style={{ left: `${((i + 0.5) * 100) / days.length}%` }}>
                  {label(d.day)}
                </span>
              ) : null,
            )}
          </div>
        </div>
      </div>
      <figcaption id="runs-by-day-caption" className="hint">
        {total === 0
          ? "No runs this period yet."
          : `${formatCount(total)} runs over ${days.length} ${days.length === 1 ? "day" : "days"} (UTC); the busiest day, ${label(busiest.day)}, had ${formatCount(busiest.runs)}.`}
      </figcaption>
    </figure>
  );
}
