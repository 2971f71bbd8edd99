/** The live-updates socket: one websocket per open workspace (`/ws/v1/workspaces/<slug>/events/`).
 *
 * Framework-free; `src/live.tsx` wraps it in a React context. Same origin, so the session cookie
 * authenticates it (never a key in the URL). It reconnects with backoff and resumes with
 * `?after=<last seq>`, so the server replays what was missed; run subscriptions are re-sent with the
 * same resume point. When the server says the gap is too old (`gap`), listeners get a `resync`
 * and refetch what they show. */

export type LiveStatus = "connecting" | "live" | "reconnecting" | "closed";

/** An event as published by the server (`core/events.py`). */
export interface LiveEvent {
  type: string;
  workspace_id: string;
  data: Record<string, unknown>;
  at: string;
}

/** What listeners receive: a server event, or a request to refetch everything (after a gap, or
 * after (re)connecting without a resume point). */
export type LiveMessage =
  | { kind: "event"; seq: number; event: LiveEvent }
  | { kind: "resync"; reason: "gap" | "connected" }
  | { kind: "logs_dropped"; flowRunId: string; count: number; message: string };

export type LiveListener = (message: LiveMessage) => void;

type ServerFrame =
  | { type: "event"; seq: number; event: LiveEvent }
  | { type: "hello"; seq: number; workspace: string }
  | { type: "gap"; message: string }
  | { type: "pong" }
  | { type: "error"; code: string; message: string }
  | { type: "logs_dropped"; flow_run_id: string; count: number; message: string }
  | { type: "membership"; workspace: string; role: string };

/** The event listeners receive when the server says this person's role here changed (sent to their
 * own sockets only, never replayed: seq 0). */
export const ROLE_CHANGED = "membership.role_changed";

/** Close codes after which reconnecting cannot help (not logged in / not a member). */
export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_FORBIDDEN = 4403;

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000, 15000];
const PING_MS = 25_000;
/** How many recent seqs are remembered to drop duplicates (a replay overlapping live delivery). */
const SEEN_LIMIT = 2000;

export interface LiveOptions {
  /** Called when the socket was closed for good (4401 / 4403), e.g. to re-check the session. */
  onRefused?: (code: number) => void;
  /** For tests and other environments; defaults to the page's origin. */
  url?: string;
}

export function eventsUrl(slug: string, after: number | null, base?: string): string {
  const origin = base ?? `${window.location.protocol === "https:" ? "wss:" : "ws:"}//${window.location.host}`;
  const path = `${origin}/ws/v1/workspaces/${encodeURIComponent(slug)}/events/`;
  return after === null ? path : `${path}?after=${after}`;
}

export class LiveConnection {
  readonly slug: string;
  status: LiveStatus = "connecting";
  /** The newest seq seen (from events or the server's hello); the resume point. */
  lastSeq: number | null = null;

  private socket: WebSocket | null = null;
  private listeners = new Set<LiveListener>();
  private statusListeners = new Set<(status: LiveStatus) => void>();
  /** Open run subscriptions, counted (two components may watch the same run). */
  private runs = new Map<string, number>();
  private seen = new Set<number>();
  private attempt = 0;
  private retryTimer: number | null = null;
  private pingTimer: number | null = null;
  private stopped = false;
  /** The resume point the current socket was opened with (also used for its run subscriptions:
   * the workspace replay advances lastSeq past run events the run replay must still send). */
  private resumeFrom: number | null = null;
  private options: LiveOptions;

  constructor(slug: string, options: LiveOptions = {}) {
    this.slug = slug;
    this.options = options;
    window.addEventListener("online", this.onOnline);
    this.open();
  }

  /** Back online (laptop woke up, network returned): retry now rather than after the backoff. */
  private onOnline = (): void => {
    if (this.retryTimer === null || this.stopped) return;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt = 0;
    this.open();
  };

  subscribe(listener: LiveListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onStatus(listener: (status: LiveStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Receive a run's task states and log lines while the returned function is not called. */
  watchRun(flowRunId: string): () => void {
    const count = this.runs.get(flowRunId) ?? 0;
    this.runs.set(flowRunId, count + 1);
    if (count === 0) this.send({ action: "subscribe_run", flow_run_id: flowRunId, after: this.lastSeq });
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.runs.get(flowRunId) ?? 1) - 1;
      if (left > 0) {
        this.runs.set(flowRunId, left);
        return;
      }
      this.runs.delete(flowRunId);
      this.send({ action: "unsubscribe_run", flow_run_id: flowRunId });
    };
  }

  close(): void {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close(1000);
    }
    this.setStatus("closed");
  }

  private open(): void {
    if (this.stopped) return;
    this.resumeFrom = this.lastSeq;
    let socket: WebSocket;
    try {
      socket = new WebSocket(eventsUrl(this.slug, this.resumeFrom, this.options.url));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      // Re-subscribe to the runs being watched, resuming from where this socket resumes.
      for (const runId of this.runs.keys()) {
        this.send({ action: "subscribe_run", flow_run_id: runId, after: this.resumeFrom });
      }
      this.pingTimer = window.setInterval(() => this.send({ action: "ping" }), PING_MS);
    };
    socket.onmessage = (e: MessageEvent) => this.receive(e.data);
    socket.onclose = (e: CloseEvent) => {
      this.socket = null;
      this.clearTimers();
      if (this.stopped) return;
      if (e.code === CLOSE_UNAUTHENTICATED || e.code === CLOSE_FORBIDDEN) {
        this.stopped = true;
        this.setStatus("closed");
        this.options.onRefused?.(e.code);
        return;
      }
      this.scheduleReconnect();
    };
    // An error is always followed by close, which handles it.
    socket.onerror = () => undefined;
  }

  private receive(raw: unknown): void {
    if (typeof raw !== "string") return;
    let frame: ServerFrame;
    try {
      frame = JSON.parse(raw) as ServerFrame;
    } catch {
      return;
    }
    switch (frame.type) {
      case "hello": {
        let fresh = this.resumeFrom === null;
        this.attempt = 0;
        if (this.resumeFrom !== null && frame.seq < this.resumeFrom) {
          // The server's sequence went backwards (its event log was reset, e.g. an embedded server
          // restarted): the resume point means nothing there, so start over from its numbering.
          this.seen.clear();
          this.lastSeq = frame.seq;
          fresh = true;
        } else if (this.lastSeq === null || frame.seq > this.lastSeq) {
          this.lastSeq = frame.seq;
        }
        this.setStatus("live");
        // Without a (valid) resume point, whatever happened before this socket was up is unknown.
        if (fresh) this.emit({ kind: "resync", reason: "connected" });
        break;
      }
      case "event": {
        // seq 0: the server could not number it (its event log is down); deliver, never dedupe.
        if (frame.seq > 0) {
          if (this.seen.has(frame.seq)) return;
          this.remember(frame.seq);
          if (this.lastSeq === null || frame.seq > this.lastSeq) this.lastSeq = frame.seq;
        }
        this.emit({ kind: "event", seq: frame.seq, event: frame.event });
        break;
      }
      case "gap":
        this.emit({ kind: "resync", reason: "gap" });
        break;
      case "logs_dropped":
        this.emit({ kind: "logs_dropped", flowRunId: frame.flow_run_id, count: frame.count, message: frame.message });
        break;
      case "membership":
        this.emit({
          kind: "event",
          seq: 0,
          event: { type: ROLE_CHANGED, workspace_id: "", data: { role: frame.role }, at: new Date().toISOString() },
        });
        break;
      default:
        break; // pong, error (e.g. a run that is not ours: the page shows "not found" from GraphQL)
    }
  }

  private remember(seq: number): void {
    this.seen.add(seq);
    if (this.seen.size > SEEN_LIMIT) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private emit(message: LiveMessage): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(message);
      } catch (err) {
        console.error("live listener failed", err);
      }
    }
  }

  private send(message: Record<string, unknown>): void {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.setStatus("reconnecting");
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)]!;
    this.attempt += 1;
    // Jitter, so that many tabs do not reconnect in lockstep after a server restart.
    const delay = base / 2 + Math.random() * base;
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, delay);
  }

  private clearTimers(): void {
    if (this.retryTimer !== null) window.clearTimeout(this.retryTimer);
    if (this.pingTimer !== null) window.clearInterval(this.pingTimer);
    this.retryTimer = this.pingTimer = null;
  }

  private setStatus(status: LiveStatus): void {
    if (status === this.status) return;
    this.status = status;
    for (const listener of [...this.statusListeners]) listener(status);
  }
}
