/** Small pieces shared by the flow, run and agent pages: state names and badges, durations, polling,
 * the runs table and the runs-by-state chart (plain SVG). The schematic is in components/run. */

import { useEffect, useMemo, useRef } from "react";
import { Link } from "react-router";

import type { RunSummary, StateType } from "../api/orchestration";
import { STATE_TYPES } from "../api/orchestration";
import { EmptyState, Time } from "./ui";

export const STATE_COLORS: Record<StateType, string> = {
  SCHEDULED: "#8b93a7",
  PENDING: "#6d6fd8",
  RUNNING: "#1e6fd9",
  COMPLETED: "#1f9d5a",
  FAILED: "#d2372d",
  CANCELLING: "#a0a7b4",
  CANCELLED: "#5f6775",
  CRASHED: "#e07b16",
  PAUSED: "#c9a400",
};

function titleCase(value: string): string {
  return value ? value.charAt(0).toUpperCase() + value.slice(1).toLowerCase() : value;
}

/** What each state type is called everywhere: badges, filters, legends, counts. */
export const STATE_LABELS: Record<StateType, string> = {
  SCHEDULED: "Scheduled",
  PENDING: "Pending",
  RUNNING: "Running",
  COMPLETED: "Completed",
  FAILED: "Failed",
  CANCELLING: "Cancelling",
  CANCELLED: "Cancelled",
  CRASHED: "Crashed",
  PAUSED: "Paused",
};

// State names that only restate their type (Prefect 1's "Success" is a completed run): these show
// as the type does, so a badge reads like the filter option that finds it.
const SAME_AS_TYPE = new Set(["success", "completed", "failed", "running", "pending", "scheduled", "cancelled",
  "cancelling", "crashed", "paused"]);

/** A state's name in words: its type's label, or a name of its own spelt out ("AwaitingRetry" →
 * "Awaiting retry", "TriggerFailed" → "Trigger failed", "Late", "Cached"). */
export function stateLabel(type: StateType | string, name?: string | null): string {
  const typeLabel = STATE_LABELS[type as StateType] ?? titleCase(type);
  if (!name || SAME_AS_TYPE.has(name.toLowerCase())) return typeLabel;
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").split(" ");
  return [words[0], ...words.slice(1).map((w) => w.toLowerCase())].join(" ");
}

/** The run's state: its name in words (e.g. "Late", "Awaiting retry") coloured by its type. */
export function StateBadge({ type, name }: { type: StateType | string; name?: string | null }) {
  const label = stateLabel(type, name);
  const typeLabel = stateLabel(type);
  return (
    <span
      className={`badge badge-state badge-state-${type.toLowerCase()}`}
      data-testid="state-badge"
      data-state-type={type}
      title={label === typeLabel ? typeLabel : `${typeLabel}: ${label}`}
    >
      {label}
    </span>
  );
}

export function AgentStatusBadge({ status }: { status: string }) {
  return (
    <span className={`badge badge-agent-${status}`} data-testid="agent-status">
      {titleCase(status)}
    </span>
  );
}

/** Call `tick` every `ms` milliseconds while the page is visible (pages use `useFallbackPolling`
 * from `live.tsx` to poll only while the live socket is down). */
export function usePolling(tick: () => unknown, ms: number, enabled = true) {
  const saved = useRef(tick);
  saved.current = tick;
  useEffect(() => {
    if (!enabled) return;
    const id = window.setInterval(() => {
      if (document.visibilityState === "visible") void saved.current();
    }, ms);
    return () => window.clearInterval(id);
  }, [ms, enabled]);
}

/** Seconds from `start` to `end` (to now when `end` is null); null without a start, or when the
 * times make no sense (end before start). */
export function elapsedSeconds(start: string | null, end: string | null): number | null {
  if (!start) return null;
  const ms = (end ? new Date(end) : new Date()).getTime() - new Date(start).getTime();
  return Number.isFinite(ms) && ms >= 0 ? Math.round(ms / 1000) : null;
}

/** "5s", "3m 4s", "1h 2m"; "—" for no duration. */
export function formatSeconds(s: number | null): string {
  if (s === null) return "—";
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function duration(start: string | null, end: string | null): string {
  return formatSeconds(elapsedSeconds(start, end));
}

// States in which a run's clock runs; one waiting for a retry, paused or scheduled has stopped it.
const CLOCK_RUNNING = new Set<string>(["PENDING", "RUNNING", "CANCELLING"]);

type Clock = Pick<RunSummary, "stateType" | "stateTimestamp" | "startTime" | "endTime">;

/** Seconds the run has run: to its end, to now while it runs, or to the moment it began to wait
 * (an AwaitingRetry or paused run's clock does not keep counting); null before it started. */
export function runSeconds(r: Clock): number | null {
  const running = r.endTime || CLOCK_RUNNING.has(r.stateType);
  return elapsedSeconds(r.startTime, running ? r.endTime : (r.stateTimestamp ?? null));
}

/** {@link runSeconds} in words. */
export function runDuration(r: Clock): string {
  return formatSeconds(runSeconds(r));
}

/** Why no agent takes a waiting run, where the run is listed or shown. */
export function NoLiveAgent({ reason, short = false }: { reason: string | null | undefined; short?: boolean }) {
  if (!reason) return null;
  return (
    <span className="no-agent" data-testid="no-live-agent" title={reason} role="note">
      {short ? "No live agent can take it" : reason}
    </span>
  );
}

/** A compact table of runs (dashboard lists, a flow's recent runs). */
export function RunTable({
  slug,
  runs,
  empty,
  when = "scheduled",
  showFlow = true,
  testId = "run-row",
}: {
  slug: string;
  runs: RunSummary[];
  empty: string;
  when?: "scheduled" | "started";
  showFlow?: boolean;
  testId?: string;
}) {
  if (runs.length === 0) return <EmptyState>{empty}</EmptyState>;
  return (
    <table className="table">
      <thead>
        <tr>
          <th scope="col">Run</th>
          {showFlow ? <th scope="col">Flow</th> : null}
          <th scope="col">State</th>
          <th scope="col">{when === "scheduled" ? "Scheduled" : "Started"}</th>
          <th scope="col">Duration</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr key={r.id} data-testid={testId}>
            <td data-label="Run">
              <Link to={`/w/${slug}/runs/${r.id}`} className="cell-main">
                {r.name}
              </Link>
            </td>
            {showFlow ? (
              <td data-label="Flow">
                <Link to={`/w/${slug}/flows/${r.flow.id}`}>{r.flow.name}</Link>
              </td>
            ) : null}
            <td data-label="State">
              <StateBadge type={r.stateType} name={r.stateName} />
              <NoLiveAgent reason={r.noLiveAgentReason} short />
            </td>
            <td data-label={when === "scheduled" ? "Scheduled" : "Started"}>
              <Time value={when === "scheduled" ? r.scheduledStart : r.startTime} />
            </td>
            <td data-label="Duration">{runDuration(r)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// --- Runs by state over time ------------------------------------------------------------------

export function RunsChart({
  buckets,
  now,
  hours,
}: {
  buckets: { bucket: string; stateType: StateType; count: number }[];
  now: string;
  hours: number;
}) {
  const { columns, max, present } = useMemo(() => {
    const end = new Date(now);
    end.setUTCMinutes(0, 0, 0);
    const cols: { start: Date; counts: Partial<Record<StateType, number>>; total: number }[] = [];
    for (let i = hours - 1; i >= 0; i--) {
      cols.push({ start: new Date(end.getTime() - i * 3600_000), counts: {}, total: 0 });
    }
    const index = new Map(cols.map((c, i) => [c.start.getTime(), i]));
    const seen = new Set<StateType>();
    for (const b of buckets) {
      const i = index.get(new Date(b.bucket).getTime());
      if (i === undefined) continue;
      const col = cols[i]!;
      col.counts[b.stateType] = (col.counts[b.stateType] ?? 0) + b.count;
      col.total += b.count;
      seen.add(b.stateType);
    }
    return { columns: cols, max: Math.max(1, ...cols.map((c) => c.total)), present: STATE_TYPES.filter((s) => seen.has(s)) };
  }, [buckets, now, hours]);

  // Bars are drawn in an SVG stretched to the card's width; the axis labels are HTML beside and
  // under it, so they keep their size on a phone instead of being squeezed with the bars.
  const width = 720;
  const height = 138;
  const top = 8;
  const inner = height - top;
  const slot = width / columns.length;
  const barW = Math.max(2, slot * 0.72);
  const total = columns.reduce((n, c) => n + c.total, 0);
  const every = Math.max(1, Math.ceil(columns.length / 8));

  return (
    <figure className="chart" aria-label={`Runs by state over the last ${hours} hours`}>
      <div className="chart-body">
        <div className="chart-yaxis" aria-hidden="true">
          <span className="chart-label">{max}</span>
          <span className="chart-label">0</span>
        </div>
        <div className="chart-plot">
          <svg viewBox={`0 0 ${width} ${height}`} role="img" data-testid="runs-chart" preserveAspectRatio="none">
            <title>{`${total} runs scheduled in the last ${hours} hours`}</title>
            <line x1={0} x2={width} y1={height} y2={height} className="chart-axis" />
            {columns.map((c, i) => {
              let y = height;
              const x = i * slot + (slot - barW) / 2;
              return (
                <g key={c.start.toISOString()}>
                  <title>{`${c.start.toLocaleString()}: ${c.total} runs`}</title>
                  {STATE_TYPES.filter((s) => c.counts[s]).map((s) => {
                    const h = ((c.counts[s] ?? 0) / max) * inner;
                    y -= h;
                    return <rect key={s} x={x} y={y} width={barW} height={h} fill={STATE_COLORS[s]} rx={1} />;
                  })}
                </g>
              );
            })}
          </svg>
          <div className="chart-xaxis" aria-hidden="true">
            {columns.map((c, i) =>
              i % every === 0 ? (
                <span
                  key={c.start.toISOString()}
                  className={`chart-label${(i / every) % 2 === 1 ? " chart-label-minor" : ""}`}
                  data-testid="chart-time-label"
                  style={{ left: `${((i + 0.5) * 100) / columns.length}%` }}
                >
                  {c.start.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}
                </span>
              ) : null,
            )}
          </div>
        </div>
      </div>
      <figcaption className="legend">
        {present.length === 0 ? <span className="muted">No runs in this period.</span> : null}
        {present.map((s) => (
          <span key={s} className="legend-item">
            <span className="legend-swatch" style={{ background: STATE_COLORS[s] }} />
            {stateLabel(s)}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
