/** Small pieces shared by the flow, run and agent pages: state badges, polling, the runs-by-state
 * chart and the schematic DAG (both plain SVG). */

import { useEffect, useMemo, useRef } from "react";
import { Link } from "react-router";

import type { EdgeSpec, RunSummary, StateType, TaskSpec } from "../api/orchestration";
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

/** The run's state: the name (e.g. "Late", "AwaitingRetry") coloured by its type. */
export function StateBadge({ type, name }: { type: StateType | string; name?: string }) {
  const label = name || titleCase(type);
  return (
    <span className={`badge badge-state badge-state-${type.toLowerCase()}`} data-testid="state-badge" title={type}>
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

export function duration(start: string | null, end: string | null): string {
  if (!start) return "—";
  const ms = (end ? new Date(end) : new Date()).getTime() - new Date(start).getTime();
  if (!Number.isFinite(ms) || ms < 0) return "—";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
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
            </td>
            <td data-label={when === "scheduled" ? "Scheduled" : "Started"}>
              <Time value={when === "scheduled" ? r.scheduledStart : r.startTime} />
            </td>
            <td data-label="Duration">{duration(r.startTime, r.endTime)}</td>
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

  const width = 720;
  const height = 160;
  const pad = { top: 8, bottom: 22, left: 28, right: 4 };
  const inner = { w: width - pad.left - pad.right, h: height - pad.top - pad.bottom };
  const slot = inner.w / columns.length;
  const barW = Math.max(2, slot * 0.72);
  const total = columns.reduce((n, c) => n + c.total, 0);

  return (
    <figure className="chart" aria-label={`Runs by state over the last ${hours} hours`}>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" data-testid="runs-chart" preserveAspectRatio="none">
        <title>{`${total} runs scheduled in the last ${hours} hours`}</title>
        <line x1={pad.left} x2={width - pad.right} y1={pad.top + inner.h} y2={pad.top + inner.h} className="chart-axis" />
        <text x={pad.left - 6} y={pad.top + 8} className="chart-label" textAnchor="end">
          {max}
        </text>
        <text x={pad.left - 6} y={pad.top + inner.h} className="chart-label" textAnchor="end">
          0
        </text>
        {columns.map((c, i) => {
          let y = pad.top + inner.h;
          const x = pad.left + i * slot + (slot - barW) / 2;
          return (
            <g key={c.start.toISOString()}>
              <title>{`${c.start.toLocaleString()}: ${c.total} runs`}</title>
              {STATE_TYPES.filter((s) => c.counts[s]).map((s) => {
                const h = ((c.counts[s] ?? 0) / max) * inner.h;
                y -= h;
                return <rect key={s} x={x} y={y} width={barW} height={h} fill={STATE_COLORS[s]} rx={1} />;
              })}
              {i % Math.max(1, Math.ceil(columns.length / 8)) === 0 ? (
                <text x={x + barW / 2} y={height - 6} className="chart-label" textAnchor="middle">
                  {c.start.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}
                </text>
              ) : null}
            </g>
          );
        })}
      </svg>
      <figcaption className="legend">
        {present.length === 0 ? <span className="muted">No runs in this period.</span> : null}
        {present.map((s) => (
          <span key={s} className="legend-item">
            <span className="legend-swatch" style={{ background: STATE_COLORS[s] }} />
            {titleCase(s)}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}

// --- The schematic DAG ------------------------------------------------------------------------

interface Placed {
  key: string;
  label: string;
  layer: number;
  row: number;
}

/** Longest-path layering (each task one column right of its furthest upstream), rows ordered by
 * the average row of their upstream tasks to reduce crossings. Cycles cannot be registered. */
export function layoutDag(tasks: TaskSpec[], edges: EdgeSpec[]): { nodes: Placed[]; layers: number; rows: number } {
  const keys = tasks.map((t) => t.key);
  const known = new Set(keys);
  const ups = new Map<string, string[]>(keys.map((k) => [k, []]));
  const downs = new Map<string, string[]>(keys.map((k) => [k, []]));
  for (const e of edges) {
    if (!known.has(e.upstream) || !known.has(e.downstream)) continue;
    ups.get(e.downstream)!.push(e.upstream);
    downs.get(e.upstream)!.push(e.downstream);
  }
  const layer = new Map<string, number>();
  const indegree = new Map(keys.map((k) => [k, ups.get(k)!.length]));
  const queue = keys.filter((k) => indegree.get(k) === 0);
  for (const k of queue) layer.set(k, 0);
  while (queue.length) {
    const k = queue.shift()!;
    for (const d of downs.get(k)!) {
      layer.set(d, Math.max(layer.get(d) ?? 0, (layer.get(k) ?? 0) + 1));
      indegree.set(d, indegree.get(d)! - 1);
      if (indegree.get(d) === 0) queue.push(d);
    }
  }
  for (const k of keys) if (!layer.has(k)) layer.set(k, 0); // only on a malformed graph
  const layers = Math.max(0, ...keys.map((k) => layer.get(k)!)) + 1;
  const rowOf = new Map<string, number>();
  const byLayer: string[][] = Array.from({ length: layers }, () => []);
  for (const k of keys) byLayer[layer.get(k)!]!.push(k);
  byLayer.forEach((column, i) => {
    if (i > 0) {
      const weight = (k: string) => {
        const parents = ups.get(k)!.filter((p) => rowOf.has(p));
        return parents.length ? parents.reduce((n, p) => n + rowOf.get(p)!, 0) / parents.length : 0;
      };
      column.sort((a, b) => weight(a) - weight(b));
    }
    column.forEach((k, row) => rowOf.set(k, row));
  });
  const names = new Map(tasks.map((t) => [t.key, t.name || t.key]));
  return {
    nodes: keys.map((k) => ({ key: k, label: names.get(k) ?? k, layer: layer.get(k)!, row: rowOf.get(k)! })),
    layers,
    rows: Math.max(1, ...byLayer.map((c) => c.length)),
  };
}

export function DagView({
  tasks,
  edges,
  states,
}: {
  tasks: TaskSpec[];
  edges: EdgeSpec[];
  /** Task key → state type, to colour the nodes on a run's page. */
  states?: Record<string, StateType>;
}) {
  const layout = useMemo(() => layoutDag(tasks, edges), [tasks, edges]);
  if (tasks.length === 0) return <EmptyState>This version registered no tasks.</EmptyState>;
  const nodeW = 150;
  const nodeH = 38;
  const gapX = 60;
  const gapY = 18;
  const margin = 8;
  const width = margin * 2 + layout.layers * nodeW + (layout.layers - 1) * gapX;
  const height = margin * 2 + layout.rows * nodeH + (layout.rows - 1) * gapY;
  const pos = new Map(
    layout.nodes.map((n) => [n.key, { x: margin + n.layer * (nodeW + gapX), y: margin + n.row * (nodeH + gapY) }]),
  );
  return (
    <div className="dag-scroll">
      <svg
        width={width}
        height={height}
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label={`Schematic: ${tasks.length} tasks, ${edges.length} dependencies`}
        data-testid="dag"
        className="dag"
      >
        <defs>
          <marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
            <path d="M0 0L10 5L0 10z" fill="#9aa3b2" />
          </marker>
        </defs>
        {edges.map((e, i) => {
          const a = pos.get(e.upstream);
          const b = pos.get(e.downstream);
          if (!a || !b) return null;
          const x1 = a.x + nodeW;
          const y1 = a.y + nodeH / 2;
          const x2 = b.x;
          const y2 = b.y + nodeH / 2;
          const mid = (x1 + x2) / 2;
          return (
            <path
              key={`${e.upstream}-${e.downstream}-${i}`}
              d={`M${x1} ${y1} C${mid} ${y1}, ${mid} ${y2}, ${x2 - 2} ${y2}`}
              className="dag-edge"
              markerEnd="url(#dag-arrow)"
              data-testid="dag-edge"
            >
              <title>{`${e.upstream} → ${e.downstream}${e.key ? ` (${e.key})` : ""}`}</title>
            </path>
          );
        })}
        {layout.nodes.map((n) => {
          const p = pos.get(n.key)!;
          const state = states?.[n.key];
          const label = n.label.length > 20 ? `${n.label.slice(0, 19)}…` : n.label;
          return (
            <g key={n.key} transform={`translate(${p.x},${p.y})`} data-testid="dag-node" aria-label={n.key} data-state={state}>
              <title>{state ? `${n.label}: ${state}` : n.label}</title>
              <rect
                width={nodeW}
                height={nodeH}
                rx={7}
                className="dag-node"
                style={state ? { stroke: STATE_COLORS[state], strokeWidth: 2 } : undefined}
              />
              {state ? <rect width={6} height={nodeH} rx={3} fill={STATE_COLORS[state]} /> : null}
              <text x={nodeW / 2} y={nodeH / 2 + 5} textAnchor="middle" className="dag-label">
                {label}
              </text>
            </g>
          );
        })}
      </svg>
    </div>
  );
}
