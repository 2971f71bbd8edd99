/** Live updates for the pages of one workspace: the React side of `api/live.ts`.
 *
 * `<LiveProvider slug>` (in the workspace layout) keeps one socket open while a workspace is shown.
 * Pages use `useLiveEvents(filter, handler)` to patch their state, or `useLiveRefresh(filter, reload)`
 * to refetch their query (coalesced: at most one reload per delay however many events arrive);
 * both also receive `resync` (after a gap in the replay) so the page refetches what it shows.
 * `useWatchRun(id)` subscribes the socket to a run's task states and log lines while a run page is
 * open. Pages keep polling only while the socket is not live (`useFallbackPolling`). */

import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";

import { LiveConnection, type LiveMessage, type LiveStatus } from "./api/live";
import { usePolling } from "./components/orchestration";
import { useSession } from "./session";

const LiveContext = createContext<LiveConnection | null>(null);

export function LiveProvider({ slug, children }: { slug: string; children: ReactNode }) {
  const { refresh } = useSession();
  const refreshRef = useRef(refresh);
  refreshRef.current = refresh;
  const [connection, setConnection] = useState<LiveConnection | null>(null);

  useEffect(() => {
    if (typeof WebSocket === "undefined") return;
    // Refused (logged out, or no longer a member): re-check the session; the layouts then show the
    // login page or "workspace not found".
    const live = new LiveConnection(slug, { onRefused: () => void refreshRef.current() });
    setConnection(live);
    return () => {
      live.close();
      setConnection(null);
    };
  }, [slug]);

  return <LiveContext.Provider value={connection}>{children}</LiveContext.Provider>;
}

export function useLiveConnection(): LiveConnection | null {
  return useContext(LiveContext);
}

/** The socket's status, or null outside a workspace (or before it was opened). */
export function useLiveStatus(): LiveStatus | null {
  const live = useLiveConnection();
  const [status, setStatus] = useState<LiveStatus | null>(live?.status ?? null);
  useEffect(() => {
    setStatus(live?.status ?? null);
    if (!live) return;
    return live.onStatus(setStatus);
  }, [live]);
  return status;
}

/** Event types a page cares about: exact types or prefixes ending in "." (e.g. "flow_run."). */
export type LiveFilter = string[] | ((message: LiveMessage) => boolean);

function matches(filter: LiveFilter, message: LiveMessage): boolean {
  if (typeof filter === "function") return filter(message);
  if (message.kind === "resync") return true;
  if (message.kind === "logs_dropped") return filter.includes("logs_dropped");
  const type = message.event.type;
  return filter.some((f) => (f.endsWith(".") ? type.startsWith(f) : type === f));
}

/** Call `handler` for each live message passing `filter` (resync messages always pass a list filter). */
export function useLiveEvents(filter: LiveFilter, handler: (message: LiveMessage) => void): void {
  const live = useLiveConnection();
  const saved = useRef({ filter, handler });
  saved.current = { filter, handler };
  useEffect(() => {
    if (!live) return;
    return live.subscribe((message) => {
      if (matches(saved.current.filter, message)) saved.current.handler(message);
    });
  }, [live]);
}

/** Returns `schedule()`: calls `fn` once `delayMs` after the first call since the last run, so a
 * burst of events costs one refetch, and a steady stream one per delay (never starved). */
export function useCoalesced(fn: () => unknown, delayMs: number): () => void {
  const saved = useRef(fn);
  saved.current = fn;
  const timer = useRef<number | null>(null);
  useEffect(
    () => () => {
      if (timer.current !== null) window.clearTimeout(timer.current);
      timer.current = null;
    },
    [],
  );
  const schedule = useRef(() => {
    if (timer.current !== null) return;
    timer.current = window.setTimeout(() => {
      timer.current = null;
      void saved.current();
    }, delayMs);
  });
  return schedule.current;
}

/** Refetch (`reload`) when a live message passes `filter`; coalesced over `delayMs`. */
export function useLiveRefresh(filter: LiveFilter, reload: () => unknown, delayMs = 300): void {
  const schedule = useCoalesced(reload, delayMs);
  useLiveEvents(filter, schedule);
}

/** Subscribe the socket to one run's task states and log lines while mounted. */
export function useWatchRun(flowRunId: string | null): void {
  const live = useLiveConnection();
  useEffect(() => {
    if (!live || !flowRunId) return;
    return live.watchRun(flowRunId);
  }, [live, flowRunId]);
}

/** Poll every `ms` only while the socket is not live (never connected, reconnecting, refused). */
export function useFallbackPolling(tick: () => unknown, ms: number, enabled = true): void {
  const status = useLiveStatus();
  usePolling(tick, ms, enabled && status !== "live");
}

const LABELS: Record<LiveStatus, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  closed: "Offline",
};

const TITLES: Record<LiveStatus, string> = {
  connecting: "Connecting to live updates.",
  live: "Pages update as things happen.",
  reconnecting: "The live connection dropped; reconnecting. Pages refresh every few seconds meanwhile.",
  closed: "Live updates are off; pages refresh every few seconds.",
};

/** A small "Live" / "Reconnecting…" pill for the workspace header. */
export function LiveIndicator() {
  const status = useLiveStatus();
  if (!status) return null;
  return (
    // aria-live without role="status": that role means "still loading" to the rest of the app.
    <span className={`live-indicator live-${status}`} data-testid="live-status" aria-live="polite" title={TITLES[status]}>
      <span className="live-dot" aria-hidden="true" />
      {LABELS[status]}
    </span>
  );
}
