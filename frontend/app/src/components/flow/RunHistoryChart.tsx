/** A flow's run history: one bar per recent run, oldest on the left; its height is the run's
 * duration and its colour the run's state. Each bar links to its run. */

import { Link } from "react-router";

import type { RunSummary, StateType } from "../../api/orchestration";
import { runDuration, runSeconds, STATE_COLORS, stateLabel } from "../orchestration";

export function RunHistoryChart({ slug, runs }: { slug: string; runs: RunSummary[] }) {
  const bars = [...runs].reverse().map((r) => {
    return { run: r, took: runDuration(r), seconds: runSeconds(r) ?? 0, label: stateLabel(r.stateType, r.stateName) };
  });
  const longest = Math.max(1, ...bars.map((b) => b.seconds));
  const counts = new Map<string, number>();
  for (const b of bars) counts.set(stateLabel(b.run.stateType), (counts.get(stateLabel(b.run.stateType)) ?? 0) + 1);
  const summary = [...counts].map(([label, n]) => `${n} ${label.toLowerCase()}`).join(", ");
  const legend = [...new Set(bars.map((b) => b.run.stateType))] as StateType[];

  return (
    <figure className="history" aria-labelledby="history-caption">
      <figcaption id="history-caption" className="sr-only">
        {`The last ${bars.length} ${bars.length === 1 ? "run" : "runs"}, oldest first: ${summary}. The longest took ${
          bars.find((b) => b.seconds === longest)?.took ?? "—"
        }. Each bar is a link to its run.`}
      </figcaption>
      <div className="history-scale" aria-hidden="true">
        <span>{bars.find((b) => b.seconds === longest)?.took ?? "—"}</span>
        <span>0s</span>
      </div>
      <ol className="history-bars" data-testid="run-history">
        {bars.map((b) => (
          <li key={b.run.id} className="history-slot">
            <Link
              to={`/w/${slug}/runs/${b.run.id}`}
              className="history-bar"
              data-testid="history-bar"
              data-state-type={b.run.stateType}
              style={{ height: `${Math.max(4, (b.seconds / longest) * 100)}%`, background: STATE_COLORS[b.run.stateType] }}
              aria-label={`${b.run.name}: ${b.label}, ${b.took}`}
              title={`${b.run.name}: ${b.label}, ${b.took}`}
            />
          </li>
        ))}
      </ol>
      <div className="legend" aria-hidden="true">
        {legend.map((s) => (
          <span key={s} className="legend-item">
            <span className="legend-swatch" style={{ background: STATE_COLORS[s] }} />
            {stateLabel(s)}
          </span>
        ))}
      </div>
    </figure>
  );
}
