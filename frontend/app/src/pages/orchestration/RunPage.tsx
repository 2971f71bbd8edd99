import { lazy, Suspense, useCallback, useEffect, useMemo, useState } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router";

import { errorMessage } from "../../api/graphql";
import {
  cancelRun,
  CHILD_RUNS_SHOWN,
  deleteRun,
  fetchRun,
  restartRun,
  RESTARTABLE_STATES,
  TERMINAL_STATES,
  type LinkedRun,
  type LogFilter,
  type RunDetail,
  type StateType,
  type TaskRun,
} from "../../api/orchestration";
import { NoLiveAgent, runDuration, STATE_COLORS, StateBadge } from "../../components/orchestration";
import { RunGantt } from "../../components/run/RunGantt";
import { RunLogs } from "../../components/run/RunLogs";
import { TaskRunDetail } from "../../components/run/TaskRunDetail";
import { Alert, ConfirmButton, EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useCoalesced, useFallbackPolling, useLiveEvents, useWatchRun } from "../../live";
import type { LiveMessage } from "../../api/live";
import { RunAlertBadges, useRunIncidents } from "../alerts/common";
import { useWorkspace } from "../WorkspaceLayout";
import { canRunFlows } from "./FlowPage";

// The schematic brings React Flow and ELK: loaded when its tab is first opened.
const RunSchematic = lazy(() => import("../../components/run/RunSchematic").then((m) => ({ default: m.RunSchematic })));

/** Polling only while the live socket is down; live events refresh the page otherwise. */
const POLL_MS = 3000;

/** The run page's views, one tab each; the open tab is kept in the URL (`?tab=`). */
const TABS = [
  { id: "overview", label: "Overview" },
  { id: "schematic", label: "Schematic" },
  { id: "timeline", label: "Timeline" },
  { id: "logs", label: "Logs" },
  { id: "tasks", label: "Task runs" },
] as const;
type TabId = (typeof TABS)[number]["id"];

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

function taskName(t: TaskRun): string {
  return t.mapIndex >= 0 ? `${t.taskKey}[${t.mapIndex}]` : t.taskKey;
}

export function RunPage() {
  const { workspace } = useWorkspace();
  const { runId = "", taskRunId } = useParams();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const run = useAsync(() => fetchRun(workspace.slug, runId), [workspace.slug, runId]);
  const runIncidents = useRunIncidents(workspace.slug, runId);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string } | null>(null);
  const finished = run.data ? TERMINAL_STATES.includes(run.data.stateType) : false;
  useFallbackPolling(() => void run.reload(), POLL_MS, Boolean(run.data));

  const requested = params.get("tab");
  const tab: TabId = TABS.some((t) => t.id === requested) ? (requested as TabId) : "overview";
  const runPath = `/w/${workspace.slug}/runs/${runId}`;
  const tabHref = (id: TabId) => (id === "overview" ? runPath : `${runPath}?tab=${id}`);

  // The Logs tab's filters live in the URL too, so a filtered view can be shared and survives a reload.
  const levelParam = params.get("level");
  const logFilter = useMemo<LogFilter>(
    () => ({
      levelGte: levelParam && /^\d+$/.test(levelParam) ? Number(levelParam) : null,
      taskRunId: params.get("task"),
      search: params.get("q"),
    }),
    [levelParam, params],
  );
  const setLogFilter = useCallback(
    (f: LogFilter) => {
      const next = new URLSearchParams({ tab: "logs" });
      if (f.levelGte != null) next.set("level", String(f.levelGte));
      if (f.taskRunId) next.set("task", f.taskRunId);
      if (f.search) next.set("q", f.search);
      setParams(next, { replace: true });
    },
    [setParams],
  );
  const openTaskRun = useCallback(
    (id: string) => navigate(`/w/${workspace.slug}/runs/${runId}/tasks/${id}`),
    [navigate, workspace.slug, runId],
  );

  // Live: the socket hears this run's task states and log lines while the page is open. States are
  // patched at once; a coalesced refetch then brings the rest (history, times, new task runs).
  useWatchRun(runId);
  const refetchRun = useCoalesced(run.reload, 250);
  useLiveEvents(["flow_run.", "task_run."], (message: LiveMessage) => {
    if (message.kind === "resync") {
      refetchRun();
      return;
    }
    if (message.kind !== "event") return;
    const { type, data } = message.event;
    // Flow of flows: a child this run started, or a state change of a linked run (a listed child,
    // the parent), refreshes what the page shows of them.
    const linked = new Set(run.data?.childFlowRuns.map((c) => c.id) ?? []);
    if (run.data?.parentFlowRun) linked.add(run.data.parentFlowRun.id);
    const newChild =
      type === "flow_run.created" &&
      Array.isArray(data.runs) &&
      (data.runs as { parent_flow_run_id?: string | null }[]).some((c) => c.parent_flow_run_id === runId);
    if (newChild || (type === "flow_run.state_changed" && linked.has(String(data.id)))) {
      refetchRun();
      return;
    }
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
    } else {
      refetchRun(); // deleted, restarted…
    }
  });
  // An agent coming or going changes whether a waiting run has one that can take it.
  useLiveEvents(["agent."], () => {
    if (run.data?.stateType === "SCHEDULED") refetchRun();
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
  const selectedTaskRun = taskRunId ? r.taskRuns.find((t) => t.id === taskRunId) : undefined;
  const stateCounts = new Map<string, { type: StateType; name: string; count: number }>();
  for (const t of r.taskRuns) {
    const c = stateCounts.get(t.stateName) ?? { type: t.stateType, name: t.stateName, count: 0 };
    c.count += 1;
    stateCounts.set(t.stateName, c);
  }

  return (
    <div className="stack-lg run-page">
      <div>
        <p className="breadcrumbs">
          <Link to={`/w/${workspace.slug}/flows/${r.flow.id}`}>{r.flow.name}</Link> / run
        </p>
        <div className="run-head">
          <h2>{r.name}</h2>
          <span data-testid="run-state" aria-live="polite">
            <StateBadge type={r.stateType} name={r.stateName} />
          </span>
          {r.stateType === "SCHEDULED" ? <NoLiveAgent reason={r.noLiveAgentReason} /> : null}
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

      <nav className="tabs run-tabs" aria-label="Run views">
        <div role="tablist" className="run-tablist">
          {TABS.map((t) => {
            const selected = !taskRunId && t.id === tab;
            return (
              <Link
                key={t.id}
                to={tabHref(t.id)}
                role="tab"
                id={`run-tab-${t.id}`}
                aria-selected={selected}
                aria-controls={selected ? "run-tabpanel" : undefined}
                className={`tab${selected ? " active" : ""}`}
              >
                {t.label}
                {t.id === "tasks" ? <span className="count">{r.taskRuns.length}</span> : null}
              </Link>
            );
          })}
        </div>
      </nav>

      {taskRunId ? (
        selectedTaskRun ? (
          <TaskRunDetail
            slug={workspace.slug}
            runId={r.id}
            taskRun={selectedTaskRun}
            live={!finished}
            backTo={`${runPath}?tab=tasks`}
          />
        ) : (
          <div className="card not-found">
            <h2>Task run not found</h2>
            <p>This run has no such task run.</p>
            <Link to={`${runPath}?tab=tasks`} className="btn btn-secondary">
              Task runs
            </Link>
          </div>
        )
      ) : (
        <div role="tabpanel" id="run-tabpanel" aria-labelledby={`run-tab-${tab}`} data-testid={`run-tab-${tab}`}>
          {tab === "overview" ? (
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
                    <dd>{runDuration(r)}</dd>
                  </div>
                  <div>
                    <dt>Attempt</dt>
                    <dd>{r.attempt}</dd>
                  </div>
                  <div>
                    <dt>Agent</dt>
                    <dd>{r.agent?.name ?? "—"}</dd>
                  </div>
                  {r.parentFlowRun ? (
                    <div>
                      <dt>Parent run</dt>
                      <dd data-testid="parent-run">
                        <Link to={`/w/${workspace.slug}/runs/${r.parentFlowRun.id}`}>{r.parentFlowRun.name}</Link>{" "}
                        <StateBadge type={r.parentFlowRun.stateType} name={r.parentFlowRun.stateName} />
                        {r.parentTaskRunId ? (
                          <>
                            {" "}
                            <Link
                              className="muted"
                              to={`/w/${workspace.slug}/runs/${r.parentFlowRun.id}/tasks/${r.parentTaskRunId}`}
                            >
                              from its task run
                            </Link>
                          </>
                        ) : null}
                        <div className="cell-sub">{r.parentFlowRun.flow.name}</div>
                      </dd>
                    </div>
                  ) : null}
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
                  <div>
                    <dt>Tasks</dt>
                    <dd data-testid="task-state-counts">
                      {r.taskRuns.length === 0 ? (
                        <span className="muted">No task has started yet.</span>
                      ) : (
                        [...stateCounts.values()].map((c) => (
                          <span key={c.name} className="task-count">
                            <StateBadge type={c.type} name={c.name} /> {c.count}
                          </span>
                        ))
                      )}
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
              {r.childFlowRuns.length > 0 ? (
                <ChildRuns slug={workspace.slug} runs={r.childFlowRuns} />
              ) : null}
            </div>
          ) : null}

          {tab === "schematic" ? (
            <section className="card" aria-label="Schematic">
              <Suspense fallback={<Spinner label="Loading the schematic…" />}>
                <RunSchematic
                  tasks={r.flowVersion.tasks}
                  edges={r.flowVersion.edges}
                  parameters={r.flowVersion.parameters}
                  taskRuns={r.taskRuns}
                  onOpenTaskRun={openTaskRun}
                />
              </Suspense>
            </section>
          ) : null}

          {tab === "timeline" ? (
            <section className="card" aria-label="Timeline of the task runs">
              <RunGantt slug={workspace.slug} runId={r.id} taskRuns={r.taskRuns} live={!finished} />
            </section>
          ) : null}

          {tab === "logs" ? (
            <section className="card" aria-label="Logs">
              <RunLogs
                slug={workspace.slug}
                runId={r.id}
                taskRuns={r.taskRuns}
                filter={logFilter}
                onFilter={setLogFilter}
                live={!finished}
              />
            </section>
          ) : null}

          {tab === "tasks" ? (
            <section className="card" aria-label="Task runs">
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
                      <tr
                        key={t.id}
                        data-testid="task-run-row"
                        style={{ boxShadow: `inset 3px 0 0 ${STATE_COLORS[t.stateType]}` }}
                      >
                        <td data-label="Task">
                          <Link className="cell-main" to={`${runPath}/tasks/${t.id}`}>
                            {taskName(t)}
                          </Link>
                        </td>
                        <td data-label="State">
                          <StateBadge type={t.stateType} name={t.stateName} />
                        </td>
                        <td data-label="Attempt">{t.attempt}</td>
                        <td data-label="Started">
                          <Time value={t.startTime} />
                        </td>
                        <td data-label="Duration">{runDuration(t)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </section>
          ) : null}
        </div>
      )}
    </div>
  );
}

/** The runs this run started (flow of flows), newest first. */
function ChildRuns({ slug, runs }: { slug: string; runs: LinkedRun[] }) {
  return (
    <section
      className="card"
      aria-labelledby="child-runs-title"
      data-testid="child-runs"
      style={{ gridColumn: "1 / -1" }}
    >
      <div className="card-head">
        <h2 id="child-runs-title">
          Child runs <span className="count">{runs.length}</span>
        </h2>
      </div>
      {runs.length >= CHILD_RUNS_SHOWN ? (
        <p className="muted">The newest {CHILD_RUNS_SHOWN} runs this run started.</p>
      ) : null}
      <table className="table">
        <thead>
          <tr>
            <th scope="col">Run</th>
            <th scope="col">State</th>
            <th scope="col">Started</th>
            <th scope="col">Duration</th>
          </tr>
        </thead>
        <tbody>
          {runs.map((c) => (
            <tr
              key={c.id}
              data-testid="child-run-row"
              style={{ boxShadow: `inset 3px 0 0 ${STATE_COLORS[c.stateType]}` }}
            >
              <td data-label="Run">
                <Link className="cell-main" to={`/w/${slug}/runs/${c.id}`}>
                  {c.name}
                </Link>
                <div className="cell-sub">{c.flow.name}</div>
              </td>
              <td data-label="State">
                <StateBadge type={c.stateType} name={c.stateName} />
              </td>
              <td data-label="Started">
                <Time value={c.startTime} />
              </td>
              <td data-label="Duration">{runDuration(c)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
