import { useCallback, useEffect, useRef, useState, type Dispatch, type ReactNode, type SetStateAction } from "react";

import { errorMessage } from "../api/graphql";

export function Spinner({ label = "Loading…" }: { label?: string }) {
  return (
    <div className="loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      <span>{label}</span>
    </div>
  );
}

export function Alert({ kind, children, title }: { kind: "error" | "success" | "info"; children: ReactNode; title?: string }) {
  return (
    <div className={`alert alert-${kind}`} role={kind === "error" ? "alert" : "status"}>
      {title ? <strong className="alert-title">{title}</strong> : null}
      <div>{children}</div>
    </div>
  );
}

export function ErrorState({ error, onRetry }: { error: string; onRetry?: () => void }) {
  return (
    <Alert kind="error" title="Something went wrong">
      <p>{error}</p>
      {onRetry ? (
        <button type="button" className="btn btn-secondary btn-small" onClick={onRetry}>
          Try again
        </button>
      ) : null}
    </Alert>
  );
}

export function EmptyState({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

/** A button that asks once more before doing something that cannot be undone. */
export function ConfirmButton({
  children,
  confirmLabel,
  onConfirm,
  label,
  className = "btn btn-danger-ghost btn-small",
  disabled,
}: {
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => Promise<void> | void;
  label?: string;
  className?: string;
  disabled?: boolean;
}) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  if (!asking) {
    return (
      <button type="button" className={className} aria-label={label} onClick={() => setAsking(true)} disabled={disabled}>
        {children}
      </button>
    );
  }
  return (
    <span className="confirm">
      <button
        type="button"
        className="btn btn-danger btn-small"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          try {
            await onConfirm();
          } finally {
            setBusy(false);
            setAsking(false);
          }
        }}
      >
        {busy ? "Working…" : confirmLabel}
      </button>
      <button type="button" className="btn btn-ghost btn-small" onClick={() => setAsking(false)} disabled={busy}>
        Cancel
      </button>
    </span>
  );
}

export interface AsyncState<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  reload: () => Promise<void>;
  /** Replace or patch the data (live updates patch it between reloads). */
  setData: Dispatch<SetStateAction<T | null>>;
}

/** Load something when the inputs change; keeps the last data while reloading. */
export function useAsync<T>(load: () => Promise<T>, deps: unknown[]): AsyncState<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const run = useCallback(load, deps);

  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setLoading(true);
    try {
      const value = await run();
      if (mine === generation.current) {
        setData(value);
        setError(null);
      }
    } catch (e) {
      if (mine === generation.current) setError(errorMessage(e));
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  }, [run]);

  useEffect(() => {
    setData(null);
    void reload();
  }, [reload]);

  return { data, error, loading, reload, setData };
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

export function formatDateTime(value: string | null | undefined): string {
  if (!value) return "—";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : dateTime.format(d);
}

export function formatDate(value: string | null | undefined): string {
  if (!value) return "—";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : dateOnly.format(d);
}

export function Time({ value, empty = "—", dateOnly: onlyDate }: { value: string | null | undefined; empty?: string; dateOnly?: boolean }) {
  if (!value) return <span className="muted">{empty}</span>;
  return (
    <time dateTime={value} title={formatDateTime(value)}>
      {onlyDate ? formatDate(value) : formatDateTime(value)}
    </time>
  );
}

export function RoleBadge({ role }: { role: string | null | undefined }) {
  if (!role) return <span className="muted">—</span>;
  return <span className={`badge badge-role-${role}`}>{role.charAt(0).toUpperCase() + role.slice(1)}</span>;
}

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge badge-status-${status}`}>{status.charAt(0).toUpperCase() + status.slice(1)}</span>;
}

/** Copy `text` to the clipboard; where the browser refuses (no permission, plain http) select the
 * element `ref` shows it in, so that Ctrl+C works. `copied` says how it went, for the button. */
export function useCopy(text: string) {
  const [copied, setCopied] = useState<"idle" | "copied" | "failed">("idle");
  const ref = useRef<HTMLElement>(null);
  useEffect(() => setCopied("idle"), [text]); // "Copied" is about this text, not an earlier one
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied("copied");
    } catch {
      const range = document.createRange();
      if (ref.current) {
        range.selectNodeContents(ref.current);
        const selection = window.getSelection();
        selection?.removeAllRanges();
        selection?.addRange(range);
      }
      setCopied("failed");
    }
  };
  return { copied, copy, ref };
}

/** A freshly created secret: shown once, with a copy button. */
export function SecretPanel({ secret, name, onDone }: { secret: string; name: string; onDone: () => void }) {
  const { copied, copy, ref: codeRef } = useCopy(secret);
  return (
    <section className="secret-panel" aria-labelledby="secret-title">
      <h3 id="secret-title">Your new API key “{name}”</h3>
      <p className="secret-warning">
        <strong>Copy it now: you will not see this key again.</strong> Flowdeck stores only a hash of it. If you lose
        it, revoke it and create a new one.
      </p>
      <div className="secret-row">
        <code ref={codeRef} className="secret" aria-label="API key secret" data-testid="api-key-secret">
          {secret}
        </code>
        <button type="button" className="btn btn-primary btn-small" onClick={copy}>
          {copied === "copied" ? "Copied" : "Copy"}
        </button>
      </div>
      {copied === "failed" ? <p className="hint">Copying was blocked by the browser; the key is selected, press Ctrl+C.</p> : null}
      <button type="button" className="btn btn-secondary btn-small" onClick={onDone}>
        I have copied it
      </button>
    </section>
  );
}
