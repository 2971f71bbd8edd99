/** A run's logs: filtered by level, task run and text on the server, followed live (the view keeps
 * to the newest line until the reader scrolls up), and downloadable whole as text or JSON lines.
 * Used by the run's Logs tab (filters kept in the URL) and by a task run's detail (one task). */

import { useEffect, useLayoutEffect, useRef, useState } from "react";

import { logDownloadUrl, type LogFilter, type TaskRun } from "../../api/orchestration";
import type { LiveMessage } from "../../api/live";
import { useCoalesced, useFallbackPolling, useLiveEvents } from "../../live";
import { EmptyState } from "../ui";
import { MAX_LOG_LINES, useLogTail } from "./useLogTail";

export const LEVELS: Record<number, string> = { 10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL" };
const POLL_MS = 3000;
/** How close to the bottom (px) still counts as "at the newest line". */
const BOTTOM_SLACK = 24;

function taskLabel(t: TaskRun): string {
  return t.mapIndex >= 0 ? `${t.taskKey}[${t.mapIndex}]` : t.taskKey;
}

export function RunLogs({
  slug,
  runId,
  taskRuns,
  filter,
  onFilter,
  live,
  fixedTask = false,
}: {
  slug: string;
  runId: string;
  taskRuns: TaskRun[];
  filter: LogFilter;
  onFilter?: (filter: LogFilter) => void;
  /** The run is still going: follow new lines. */
  live: boolean;
  /** A task run's own logs: no task filter to choose. */
  fixedTask?: boolean;
}) {
  const logs = useLogTail(slug, runId, filter);
  const [searchText, setSearchText] = useState(filter.search ?? "");
  const [follow, setFollow] = useState(true);
  const [droppedLines, setDroppedLines] = useState(0);
  const box = useRef<HTMLPreElement | null>(null);

  useEffect(() => setSearchText(filter.search ?? ""), [filter.search]);
  // Search as the reader types, once they pause.
  useEffect(() => {
    if ((filter.search ?? "") === searchText || !onFilter) return;
    const id = window.setTimeout(() => onFilter({ ...filter, search: searchText || null }), 300);
    return () => window.clearTimeout(id);
  }, [searchText, filter, onFilter]);

  useFallbackPolling(() => void logs.poll(), POLL_MS);
  const fetchMore = useCoalesced(logs.poll, 150);
  useEffect(() => setDroppedLines(0), [runId]);
  useLiveEvents(["logs.", "logs_dropped"], (message: LiveMessage) => {
    if (message.kind === "resync") {
      fetchMore();
    } else if (message.kind === "logs_dropped") {
      if (message.flowRunId === runId) setDroppedLines((n) => n + message.count);
    } else if (message.event.data.flow_run_id === runId || message.event.data.id === runId) {
      fetchMore();
    }
  });

  // Follow: keep the newest line in view as lines arrive.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el || !follow) return;
    el.scrollTop = el.scrollHeight;
  }, [logs.lines, follow]);

  // The view's own scrolling lands at the bottom and keeps following; the reader scrolling up
  // stops it, and scrolling back down to the newest line resumes it.
  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    setFollow(el.scrollHeight - el.scrollTop - el.clientHeight <= BOTTOM_SLACK);
  };

  const byId = new Map(taskRuns.map((t) => [t.id, t]));
  const set = (patch: LogFilter) => onFilter?.({ ...filter, ...patch });
  const filtered = Boolean(filter.levelGte || filter.search || (!fixedTask && filter.taskRunId));

  return (
    <div className="run-logs">
      <div className="log-toolbar" role="search" aria-label="Filter the logs">
        <label className="log-field">
          <span>Level</span>
          <select
            aria-label="Level"
            value={filter.levelGte ?? ""}
            onChange={(e) => set({ levelGte: e.target.value ? Number(e.target.value) : null })}
          >
            <option value="">All levels</option>
            {[10, 20, 30, 40, 50].map((l) => (
              <option key={l} value={l}>
                {LEVELS[l]} and above
              </option>
            ))}
          </select>
        </label>
        {fixedTask ? null : (
          <label className="log-field">
            <span>Task</span>
            <select
              aria-label="Task"
              value={filter.taskRunId ?? ""}
              onChange={(e) => set({ taskRunId: e.target.value || null })}
            >
              <option value="">All tasks</option>
              {taskRuns.map((t) => (
                <option key={t.id} value={t.id}>
                  {taskLabel(t)}
                </option>
              ))}
            </select>
          </label>
        )}
        <label className="log-field log-search">
          <span>Search</span>
          <input
            type="search"
            aria-label="Search the logs"
            placeholder="Text in the message"
            value={searchText}
            onChange={(e) => setSearchText(e.target.value)}
          />
        </label>
        <div className="log-actions">
          <button
            type="button"
            className={`btn btn-small ${follow ? "btn-primary" : "btn-secondary"}`}
            aria-pressed={follow}
            data-testid="log-follow"
            onClick={() => setFollow((f) => !f)}
            title={live ? "Keep the newest line in view" : "Scroll to the last line"}
          >
            {follow ? "Following" : "Follow"}
          </button>
          <a className="btn btn-secondary btn-small" href={logDownloadUrl(slug, runId, "text", filter)} download>
            Download .log
          </a>
          <a className="btn btn-ghost btn-small" href={logDownloadUrl(slug, runId, "jsonl", filter)} download>
            JSON lines
          </a>
        </div>
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
        <EmptyState>{!logs.loaded ? "Loading logs…" : filtered ? "No log line matches these filters." : "No log lines yet."}</EmptyState>
      ) : (
        <>
          <pre className="logs" data-testid="logs" ref={box} onScroll={onScroll} tabIndex={0} role="log" aria-label="Log lines">
            {logs.lines.map((l) => {
              const task = l.taskRunId ? byId.get(l.taskRunId) : undefined;
              return (
                <div key={l.sequence} className={`log-line log-level-${l.level}`} data-level={l.level}>
                  <span className="log-time">{new Date(l.timestamp).toLocaleTimeString()}</span>{" "}
                  <span className="log-level">{LEVELS[l.level] ?? l.level}</span>{" "}
                  {task && !fixedTask ? <span className="log-task">[{taskLabel(task)}] </span> : null}
                  {l.logger ? `${l.logger}: ` : ""}
                  {l.message}
                </div>
              );
            })}
          </pre>
          {logs.lines.length >= MAX_LOG_LINES ? (
            <p className="muted small">The newest {MAX_LOG_LINES} lines are shown; download the file for all of them.</p>
          ) : null}
        </>
      )}
    </div>
  );
}
