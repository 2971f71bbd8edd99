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
  type StateType,
} from "../../api/orchestration";
import { DagView, duration, STATE_COLORS, StateBadge, usePolling } from "../../components/orchestration";
import { Alert, ConfirmButton, EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useWorkspace } from "../WorkspaceLayout";
import { canRunFlows } from "./FlowPage";

const POLL_MS = 3000;
const MAX_LOG_LINES = 2000;
const LEVELS: Record<number, string> = { 10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL" };

function useLogTail(slug: string, runId: string) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [denied, setDenied] = useState(false);
  const last = useRef<number | null>(null);
  const busy = useRef(false);

  useEffect(() => {
    setLines([]);
    last.current = null;
  }, [slug, runId]);

  const poll = useCallback(async () => {
    if (busy.current) return;
    busy.current = true;
    try {
      // Keep reading while full pages come back, so a long log catches up quickly.
      for (let page = 0; page < 5; page++) {
        const more = await fetchLogs(slug, runId, last.current);
        if (more === null) {
          setDenied(true);
          return;
        }
        if (more.length === 0) return;
        last.current = more[more.length - 1]!.sequence;
        setLines((prev) => [...prev, ...more].slice(-MAX_LOG_LINES));
        if (more.length < 200) return;
      }
    } catch {
      /* the next poll retries */
    } finally {
      busy.current = false;
    }
  }, [slug, runId]);

  useEffect(() => {
    void poll();
  }, [poll]);
  return { lines, denied, poll };
}

export function RunPage() {
  const { workspace } = useWorkspace();
  const { runId = "" } = useParams();
  const navigate = useNavigate();
  const run = useAsync(() => fetchRun(workspace.slug, runId), [workspace.slug, runId]);
  const logs = useLogTail(workspace.slug, runId);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  const finished = run.data ? TERMINAL_STATES.includes(run.data.stateType) : false;
  usePolling(
    () => {
      void run.reload();
      void logs.poll();
    },
    POLL_MS,
    Boolean(run.data),
  );

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
