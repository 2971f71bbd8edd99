import { useCallback, useEffect, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";

import { errorMessage } from "../../api/graphql";
import {
  cancelRun,
  deleteRun,
  fetchLogs,
  fetchRun,
  restartRun,
  RESTARTABLE_STATES,
  TERMINAL_STATES,
  type LogLine,
  type RunDetail,
  type StateType,
  type TaskRun,
} from "../../api/orchestration";
import { DagView, duration, STATE_COLORS, StateBadge } from "../../components/orchestration";
import { Alert, ConfirmButton, EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useCoalesced, useFallbackPolling, useLiveEvents, useWatchRun } from "../../live";
import type { LiveMessage } from "../../api/live";
import { RunAlertBadges, useRunIncidents } from "../alerts/common";
import { useWorkspace } from "../WorkspaceLayout";
import { canRunFlows } from "./FlowPage";

/** Polling only while the live socket is down; live events refresh the page otherwise. */
const POLL_MS = 3000;
const MAX_LOG_LINES = 2000;
const LEVELS: Record<number, string> = { 10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL" };

function useLogTail(slug: string, runId: string) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [denied, setDenied] = useState(false);
  const last = useRef<number | null>(null);
  /** Bumped when the tail starts over (another run, or "reload"): a read in flight from before
   * then stops without appending. */
  const generation = useRef(0);
  /** The generation whose read is running, if any. */
  const running = useRef<number | null>(null);
  /** A poll was asked for while one was running (a live event): read once more when it ends, or
   * the lines that event announced would wait for the next one. */
  const again = useRef(false);

  useEffect(() => {
    generation.current += 1;
    setLines([]);
    last.current = null;
  }, [slug, runId]);

  const poll = useCallback(async () => {
    const mine = generation.current;
    if (running.current === mine) {
      again.current = true;
      return;
    }
    running.current = mine;
    try {
      do {
        again.current = false;
        // Keep reading while full pages come back, so a long log catches up quickly (in rounds of
        // five pages, so the page stays responsive).
        for (let page = 0; page < 5; page++) {
          const more = await fetchLogs(slug, runId, last.current);
          if (mine !== generation.current) return;
          if (more === null) {
            setDenied(true);
            return;
          }
          if (more.length === 0) break;
          last.current = more[more.length - 1]!.sequence;
          setLines((prev) => [...prev, ...more].slice(-MAX_LOG_LINES));
          if (more.length < 200) break;
          if (page === 4) again.current = true;
        }
      } while (again.current && mine === generation.current);
    } catch {
      /* the next poll or live event retries */
    } finally {
      if (running.current === mine) running.current = null;
    }
  }, [slug, runId]);

  useEffect(() => {
    void poll();
  }, [poll]);

  /** Start over from the first line (after the live socket dropped lines). */
  const reload = useCallback(async () => {
    generation.current += 1;
    setLines([]);
    last.current = null;
    await poll();
  }, [poll]);
  return { lines, denied, poll, reload };
}

interface TaskRunChange {
  id: string;
  state_type: StateType;
  state_name: string;
}

/** Apply task-run state changes from a live event to the rows already shown (new task runs come
 * with the refetch that follows). */
function patchTaskRuns(run: RunDetail, changes: TaskRunChange[]): RunDetail {
  const byId = new Map(changes.map((c) => [c.id, c]));
  const taskRuns: TaskRun[] = run.taskRuns.map((t) => {
    const change = byId.get(t.id);
    return change ? { ...t, stateType: change.state_type, stateName: change.state_name } : t;
  });
  return { ...run, taskRuns };
}

export function RunPage() {
  const { workspace } = useWorkspace();
  const { runId = "" } = useParams();
  const navigate = useNavigate();
  const run = useAsync(() => fetchRun(workspace.slug, runId), [workspace.slug, runId]);
  const logs = useLogTail(workspace.slug, runId);
  const runIncidents = useRunIncidents(workspace.slug, runId);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  const [droppedLines, setDroppedLines] = useState(0);
  const finished = run.data ? TERMINAL_STATES.includes(run.data.stateType) : false;
  useFallbackPolling(
    () => {
      void run.reload();
      void logs.poll();
    },
    POLL_MS,
    Boolean(run.data),
  );

  // Live: the socket hears this run's task states and log lines while the page is open. States are
  // patched at once; a coalesced refetch then brings the rest (timeline, times, new task runs).
  useWatchRun(runId);
  useEffect(() => setDroppedLines(0), [runId]);
  const refetchRun = useCoalesced(run.reload, 250);
  const fetchLogs = useCoalesced(logs.poll, 150);
  useLiveEvents(["flow_run.", "task_run.", "logs.", "logs_dropped"], (message: LiveMessage) => {
    if (message.kind === "resync") {
      refetchRun();
      fetchLogs();
      return;
    }
    if (message.kind === "logs_dropped") {
      if (message.flowRunId === runId) setDroppedLines((n) => n + message.count);
      return;
    }
    const { type, data } = message.event;
    const ofThisRun = data.id === runId || data.flow_run_id === runId;
    if (!ofThisRun) return;
    if (type === "flow_run.state_changed") {
      const version = typeof data.state_version === "number" ? data.state_version : null;
      run.setData((prev) =>
        prev && (version === null || version > prev.stateVersion)
          ? {
              ...prev,
              stateType: data.state_type as StateType,
              stateName: String(data.state_name ?? ""),
              stateVersion: version ?? prev.stateVersion,
            }
          : prev,
      );
      refetchRun();
    } else if (type === "task_run.state_changed" || type === "task_run.states_changed") {
      const changes = (type === "task_run.states_changed" ? data.task_runs : [data]) as TaskRunChange[];
      run.setData((prev) => (prev ? patchTaskRuns(prev, changes) : prev));
      refetchRun();
    } else if (type === "logs.appended") {
      fetchLogs();
    } else {
      refetchRun(); // deleted, restarted…
    }
  });

  useEffect(() => {
    if (run.data) document.title = `${run.data.name} · Flowdeck`;
  }, [run.data]);

  if (run.error && !run.data) return <ErrorState error={run.error} onRetry={() => void run.reload()} />;
  if (!run.data && run.loading) return <Spinner label="Loading run…" />;
  const r = run.data;
  if (!r) {
    return (
      <div className="card not-found">
        <h2>Run not found</h2>
        <p>This run does not exist in this workspace (it may have been deleted), or you cannot see it.</p>
        <Link to={`/w/${workspace.slug}/dashboard`} className="btn btn-secondary">
          Dashboard
        </Link>
      </div>
    );
  }

  const mayAct = canRunFlows(workspace.viewerRole);
  const canCancel = mayAct && !finished && r.stateType !== "CANCELLING";
  const canRestart = mayAct && RESTARTABLE_STATES.includes(r.stateType);
  const act = async (fn: () => Promise<void>, text: string) => {
    setNotice(null);
    try {
      await fn();
      setNotice({ kind: "success", text });
      await run.reload();
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
  };
  const taskStates: Record<string, StateType> = {};
  for (const t of r.taskRuns) if (t.mapIndex < 0 || !taskStates[t.taskKey]) taskStates[t.taskKey] = t.stateType;

  return (
    <div className="stack-lg">
      <div>
        <p className="breadcrumbs">
          <Link to={`/w/${workspace.slug}/flows/${r.flow.id}`}>{r.flow.name}</Link> / run
        </p>
        <div className="run-head">
          <h2>{r.name}</h2>
          <span data-testid="run-state" aria-live="polite">
            <StateBadge type={r.stateType} name={r.stateName} />
          </span>
          <RunAlertBadges slug={workspace.slug} incidents={runIncidents} />
          <div className="form-actions">
            {canCancel ? (
              <ConfirmButton
                className="btn btn-danger-outline btn-small"
                confirmLabel="Cancel run"
                onConfirm={() => act(() => cancelRun(workspace.slug, r.id), "Cancellation requested.")}
              >
                Cancel
              </ConfirmButton>
            ) : null}
            {canRestart ? (
              <button
                type="button"
                className="btn btn-secondary btn-small"
                onClick={() => void act(() => restartRun(workspace.slug, r.id), "The run was restarted.")}
              >
                Restart
              </button>
            ) : null}
            {mayAct && finished ? (
              <ConfirmButton
                confirmLabel="Delete run"
                onConfirm={async () => {
                  try {
                    await deleteRun(workspace.slug, r.id);
                    navigate(`/w/${workspace.slug}/flows/${r.flow.id}`, { replace: true });
                  } catch (err) {
                    setNotice({ kind: "error", text: errorMessage(err) });
                  }
                }}
              >
                Delete
              </ConfirmButton>
            ) : null}
          </div>
        </div>
        {r.stateMessage ? <p className="muted">{r.stateMessage}</p> : null}
      </div>
      {notice ? <Alert kind={notice.kind}>{notice.text}</Alert> : null}

      <div className="grid-2">
        <section className="card" aria-labelledby="run-facts-title">
          <div className="card-head">
            <h2 id="run-facts-title">Details</h2>
          </div>
          <dl className="facts">
            <div>
              <dt>Scheduled</dt>
              <dd>
                <Time value={r.scheduledStart} />
              </dd>
            </div>
            <div>
              <dt>Started</dt>
              <dd>
                <Time value={r.startTime} />
              </dd>
            </div>
            <div>
              <dt>Ended</dt>
              <dd>
                <Time value={r.endTime} />
              </dd>
            </div>
            <div>
              <dt>Duration</dt>
              <dd>{duration(r.startTime, r.endTime)}</dd>
            </div>
            <div>
              <dt>Attempt</dt>
              <dd>{r.attempt}</dd>
            </div>
            <div>
              <dt>Agent</dt>
              <dd>{r.agent?.name ?? "—"}</dd>
            </div>
            <div>
              <dt>Version</dt>
              <dd>v{r.flowVersion.version}</dd>
            </div>
            <div>
              <dt>Labels</dt>
              <dd>{r.labels.join(", ") || "—"}</dd>
            </div>
            <div>
              <dt>Parameters</dt>
              <dd>
                <code>{JSON.stringify(r.parameters)}</code>
              </dd>
            </div>
          </dl>
        </section>
        <section className="card" aria-labelledby="timeline-title">
          <div className="card-head">
            <h2 id="timeline-title">State timeline</h2>
          </div>
          {r.stateHistory.length === 0 ? <EmptyState>No state changes recorded.</EmptyState> : null}
          <ol className="timeline" data-testid="state-timeline">
            {r.stateHistory.map((s, i) => (
              <li key={i} style={{ ["--dot" as string]: STATE_COLORS[s.type] }}>
                <div className="cell-main">
                  <StateBadge type={s.type} name={s.name} /> <Time value={s.timestamp} />
                </div>
                {s.message ? <div className="cell-sub">{s.message}</div> : null}
              </li>
            ))}
          </ol>
        </section>
      </div>

      <section className="card" aria-labelledby="tasks-title">
        <div className="card-head">
          <h2 id="tasks-title">Task runs</h2>
          <span className="count">{r.taskRuns.length}</span>
        </div>
        {r.flowVersion.tasks.length > 0 ? (
          <DagView tasks={r.flowVersion.tasks} edges={r.flowVersion.edges} states={taskStates} />
        ) : null}
        {r.taskRuns.length === 0 ? (
          <EmptyState>No task has started yet.</EmptyState>
        ) : (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Task</th>
                <th scope="col">State</th>
                <th scope="col">Attempt</th>
                <th scope="col">Started</th>
                <th scope="col">Duration</th>
              </tr>
            </thead>
            <tbody>
              {r.taskRuns.map((t) => (
                <tr key={t.id} data-testid="task-run-row" style={{ boxShadow: `inset 3px 0 0 ${STATE_COLORS[t.stateType]}` }}>
                  <td data-label="Task">
                    <div className="cell-main">
                      {t.taskKey}
                      {t.mapIndex >= 0 ? <span className="muted">[{t.mapIndex}]</span> : null}
                    </div>
                  </td>
                  <td data-label="State">
                    <StateBadge type={t.stateType} name={t.stateName} />
                  </td>
                  <td data-label="Attempt">{t.attempt}</td>
                  <td data-label="Started">
                    <Time value={t.startTime} />
                  </td>
                  <td data-label="Duration">{duration(t.startTime, t.endTime)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section className="card" aria-labelledby="logs-title">
        <div className="card-head">
          <h2 id="logs-title">Logs</h2>
        </div>
        {droppedLines > 0 && !logs.denied ? (
          <p className="logs-dropped" aria-live="polite" data-testid="logs-dropped">
            {droppedLines} log lines dropped — reload to see all.
            <button
              type="button"
              className="btn btn-ghost btn-small"
              onClick={() => {
                setDroppedLines(0);
                void logs.reload();
              }}
            >
              Reload logs
            </button>
          </p>
        ) : null}
        {logs.denied ? (
          <p className="muted">Your role cannot read logs.</p>
        ) : logs.lines.length === 0 ? (
          <EmptyState>No log lines yet.</EmptyState>
        ) : (
          <pre className="logs" data-testid="logs">
            {logs.lines.map((l) => (
              <div key={l.sequence} className={`log-level-${l.level}`}>
                {new Date(l.timestamp).toLocaleTimeString()} {LEVELS[l.level] ?? l.level} {l.logger ? `${l.logger}: ` : ""}
                {l.message}
              </div>
            ))}
          </pre>
        )}
      </section>
    </div>
  );
}
