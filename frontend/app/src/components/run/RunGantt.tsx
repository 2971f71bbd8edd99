/** The run's timeline: one row per task run, a bar from its start to its end made of its attempts
 * (a retried task shows each try), mapped children grouped under their parent. While the run is
 * live the bars of running tasks grow with the clock. */

import { useEffect, useMemo, useState } from "react";
import { Link } from "react-router";

import type { TaskRun } from "../../api/orchestration";
import { STATE_COLORS, stateLabel } from "../orchestration";
import { EmptyState } from "../ui";
import { attemptsOf, outcomeColourType, type Attempt } from "./attempts";

interface Row {
  taskRun: TaskRun;
  attempts: Attempt[];
  child: boolean;
}

function useNow(live: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!live) return;
    const id = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(id);
  }, [live]);
  return now;
}

function shortDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 1) return `${Math.round(ms)}ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** Task keys in the order their first task run was created; each parent before its children. */
function rowsOf(taskRuns: TaskRun[]): Row[] {
  const groups = new Map<string, TaskRun[]>();
  for (const t of taskRuns) groups.set(t.taskKey, [...(groups.get(t.taskKey) ?? []), t]);
  const rows: Row[] = [];
  for (const group of groups.values()) {
    const sorted = [...group].sort((a, b) => a.mapIndex - b.mapIndex);
    const hasChildren = sorted.some((t) => t.mapIndex >= 0);
    for (const t of sorted) rows.push({ taskRun: t, attempts: attemptsOf(t), child: hasChildren && t.mapIndex >= 0 });
  }
  return rows;
}

export function RunGantt({
  slug,
  runId,
  taskRuns,
  live,
}: {
  slug: string;
  runId: string;
  taskRuns: TaskRun[];
  live: boolean;
}) {
  const now = useNow(live);
  const rows = useMemo(() => rowsOf(taskRuns), [taskRuns]);
  if (rows.length === 0) return <EmptyState>No task has started yet.</EmptyState>;

  let t0 = Infinity;
  let t1 = -Infinity;
  for (const r of rows) {
    for (const a of r.attempts) {
      t0 = Math.min(t0, Date.parse(a.start));
      t1 = Math.max(t1, a.end ? Date.parse(a.end) : now);
    }
  }
  if (!Number.isFinite(t0)) return <EmptyState>No task has started yet.</EmptyState>;
  const span = Math.max(t1 - t0, 1000);
  const pct = (t: number) => `${(((t - t0) / span) * 100).toFixed(3)}%`;
  const ticks = [0, 0.25, 0.5, 0.75, 1];

  return (
    <div className="gantt" data-testid="gantt">
      <div className="gantt-axis" aria-hidden="true">
        <span className="gantt-label" />
        <div className="gantt-track">
          {ticks.map((f) => (
            <span key={f} className={`gantt-tick${f === 0.25 || f === 0.75 ? " gantt-tick-minor" : ""}`} style={{ left: `${f * 100}%` }}>
              +{shortDuration(f * span)}
            </span>
          ))}
        </div>
      </div>
      <ul className="gantt-rows">
        {rows.map(({ taskRun: t, attempts, child }) => {
          const first = attempts[0];
          const last = attempts[attempts.length - 1];
          const endOf = (a: Attempt) => (a.end ? Date.parse(a.end) : now);
          const name = t.mapIndex >= 0 ? `${t.taskKey}[${t.mapIndex}]` : t.taskKey;
          const total = first && last ? shortDuration(endOf(last) - Date.parse(first.start)) : "";
          return (
            <li
              key={t.id}
              className={`gantt-row${child ? " gantt-child" : ""}`}
              data-testid="gantt-row"
              data-task-key={t.taskKey}
              data-map-index={t.mapIndex}
            >
              <Link className="gantt-label" to={`/w/${slug}/runs/${runId}/tasks/${t.id}`} title={`${name}: ${stateLabel(t.stateType, t.stateName)}`}>
                <span className="gantt-dot" style={{ background: STATE_COLORS[t.stateType] }} aria-hidden="true" />
                <span className="gantt-name">{child ? `[${t.mapIndex}]` : name}</span>
              </Link>
              <div className="gantt-track">
                {first && last ? (
                  <div
                    className="gantt-bar"
                    data-testid="gantt-bar"
                    data-state={t.stateType}
                    style={{ left: pct(Date.parse(first.start)), width: `max(3px, calc(${pct(endOf(last))} - ${pct(Date.parse(first.start))}))` }}
                    title={`${name}: ${stateLabel(t.stateType, t.stateName)}, ${attempts.length} attempt${attempts.length === 1 ? "" : "s"}, ${total}`}
                  >
                    {attempts.map((a) => {
                      const start = Date.parse(a.start);
                      const width = ((endOf(a) - start) / Math.max(endOf(last) - Date.parse(first.start), 1)) * 100;
                      const left = ((start - Date.parse(first.start)) / Math.max(endOf(last) - Date.parse(first.start), 1)) * 100;
                      const colour = STATE_COLORS[outcomeColourType(a.outcome)];
                      return (
                        <span
                          key={a.number}
                          className={`gantt-attempt${a.end ? "" : " gantt-running"}`}
                          data-testid="gantt-attempt"
                          data-outcome={a.outcome?.name ?? "Running"}
                          style={{ left: `${left}%`, width: `max(2px, ${width}%)`, background: colour }}
                          title={`Attempt ${a.number}: ${a.outcome?.name ?? "running"} (${shortDuration(endOf(a) - start)})`}
                        />
                      );
                    })}
                  </div>
                ) : (
                  <span className="gantt-waiting">{stateLabel(t.stateType, t.stateName)}</span>
                )}
              </div>
              <span className="gantt-total">{total}</span>
            </li>
          );
        })}
      </ul>
    </div>
  );
}
