/** One task run of a run (its own URL under the run): its state, attempts, state history and the
 * logs of that task only. Its rows come from the run page's live-updated task runs. */

import { useMemo, useState } from "react";
import { Link } from "react-router";

import type { LogFilter, TaskRun } from "../../api/orchestration";
import { duration, STATE_COLORS, StateBadge } from "../orchestration";
import { EmptyState, Time } from "../ui";
import { attemptsOf, outcomeColourType } from "./attempts";
import { RunLogs } from "./RunLogs";

export function TaskRunDetail({
  slug,
  runId,
  taskRun,
  live,
  backTo,
}: {
  slug: string;
  runId: string;
  taskRun: TaskRun;
  live: boolean;
  backTo: string;
}) {
  const [levelGte, setLevelGte] = useState<number | null>(null);
  const [search, setSearch] = useState<string | null>(null);
  const filter = useMemo<LogFilter>(() => ({ taskRunId: taskRun.id, levelGte, search }), [taskRun.id, levelGte, search]);
  const attempts = attemptsOf(taskRun);
  const name = taskRun.mapIndex >= 0 ? `${taskRun.taskKey}[${taskRun.mapIndex}]` : taskRun.taskKey;

  return (
    <section className="card task-run-detail" aria-labelledby="task-run-title" data-testid="task-run-detail">
      <div className="card-head">
        <h2 id="task-run-title">
          Task run <code>{name}</code>
        </h2>
        <StateBadge type={taskRun.stateType} name={taskRun.stateName} />
        <Link to={backTo} className="btn btn-ghost btn-small card-head-action">
          Back to the run
        </Link>
      </div>
      {taskRun.stateMessage ? <p className="muted">{taskRun.stateMessage}</p> : null}
      <dl className="facts">
        <div>
          <dt>Started</dt>
          <dd>
            <Time value={taskRun.startTime} />
          </dd>
        </div>
        <div>
          <dt>Ended</dt>
          <dd>
            <Time value={taskRun.endTime} />
          </dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{duration(taskRun.startTime, taskRun.endTime)}</dd>
        </div>
        <div>
          <dt>Attempts</dt>
          <dd data-testid="task-run-attempts">{Math.max(attempts.length, taskRun.attempt)}</dd>
        </div>
        <div>
          <dt>Tags</dt>
          <dd>{taskRun.tags.join(", ") || "—"}</dd>
        </div>
      </dl>

      <h3>Attempts</h3>
      {attempts.length === 0 ? (
        <EmptyState>Not started yet.</EmptyState>
      ) : (
        <ol className="attempt-list" data-testid="attempt-list">
          {attempts.map((a) => (
            <li key={a.number} style={{ ["--dot" as string]: STATE_COLORS[outcomeColourType(a.outcome)] }}>
              <strong>Attempt {a.number}</strong> <Time value={a.start} /> · {duration(a.start, a.end)} ·{" "}
              {a.outcome ? <StateBadge type={outcomeColourType(a.outcome)} name={a.outcome.name} /> : "running"}
            </li>
          ))}
        </ol>
      )}

      <h3>States</h3>
      <ol className="timeline" data-testid="task-run-states">
        {taskRun.stateHistory.map((s, i) => (
          <li key={i} style={{ ["--dot" as string]: STATE_COLORS[s.type] }}>
            <div className="cell-main">
              <StateBadge type={s.type} name={s.name} /> <Time value={s.timestamp} />
            </div>
            {s.message ? <div className="cell-sub">{s.message}</div> : null}
          </li>
        ))}
      </ol>

      <h3>Logs of this task</h3>
      <RunLogs
        slug={slug}
        runId={runId}
        taskRuns={[taskRun]}
        filter={filter}
        onFilter={(f) => {
          setLevelGte(f.levelGte ?? null);
          setSearch(f.search ?? null);
        }}
        live={live}
        fixedTask
      />
    </section>
  );
}
