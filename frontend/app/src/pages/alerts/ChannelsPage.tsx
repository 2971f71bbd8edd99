import { Fragment, useEffect, useId, useRef, useState, type FormEvent } from "react";

import {
  CHANNEL_KINDS,
  channelKindLabel,
  createChannel,
  deleteChannel,
  fetchChannels,
  fetchDeliveries,
  revealChannelSecret,
  sendTestNotification,
  setChannelEnabled,
  type Channel,
  type ChannelKind,
  type Delivery,
} from "../../api/alerts";
import { errorMessage, MutationError } from "../../api/graphql";
import { Alert, ConfirmButton, EmptyState, ErrorState, Spinner, Time, useAsync } from "../../components/ui";
import { useFallbackPolling, useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";
import { AlertsNav, canManageChannels, splitList } from "./common";

/** The one config field each kind needs: where the server's error about it is shown. */
const TARGET_FIELD: Record<ChannelKind, { key: string; label: string; hint: string; type: string }> = {
  email: { key: "addresses", label: "E-mail addresses", hint: "Comma-separated.", type: "text" },
  webhook: {
    key: "url",
    label: "Webhook URL",
    hint: "Flowdeck POSTs JSON signed with HMAC-SHA256 (see the docs for verifying it).",
    type: "url",
  },
  slack: { key: "url", label: "Slack webhook URL", hint: "A Slack-compatible incoming webhook.", type: "url" },
  pagerduty: {
    key: "routing_key",
    label: "PagerDuty routing key",
    hint: "The integration key of an Events API v2 service.",
    type: "text",
  },
};

function SecretBox({ name, secret, onDone }: { name: string; secret: string; onDone: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <section className="secret-panel" aria-labelledby="channel-secret-title">
      <h3 id="channel-secret-title">Signing secret of “{name}”</h3>
      <p className="secret-warning">
        <strong>Store it with your receiver now.</strong> It verifies the <code>X-Flowdeck-Signature</code> header of
        every request; only Admins can show it again.
      </p>
      <div className="secret-row">
        <code className="secret" aria-label="Webhook signing secret" data-testid="channel-secret">
          {secret}
        </code>
        <button
          type="button"
          className="btn btn-primary btn-small"
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(secret);
              setCopied(true);
            } catch {
              setCopied(false);
            }
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
      </div>
      <button type="button" className="btn btn-secondary btn-small" onClick={onDone}>
        Done
      </button>
    </section>
  );
}

function ChannelForm({
  slug,
  onCreated,
  onCancel,
}: {
  slug: string;
  onCreated: (c: Channel, secret: string | null) => void;
  onCancel: () => void;
}) {
  const id = useId();
  const [name, setName] = useState("");
  const [kind, setKind] = useState<ChannelKind>("webhook");
  const [target, setTarget] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const field = TARGET_FIELD[kind];

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const local: Record<string, string> = {};
    if (!name.trim()) local.name = "Give the channel a name.";
    if (!target.trim()) local.target = `Enter the ${field.label.toLowerCase()}.`;
    setErrors(local);
    if (Object.keys(local).length) {
      setError("Check the highlighted fields.");
      return;
    }
    const config = kind === "email" ? { addresses: splitList(target) } : { [field.key]: target.trim() };
    setBusy(true);
    setError(null);
    try {
      const created = await createChannel(slug, { name: name.trim(), kind, config });
      onCreated(created.channel, created.secret);
    } catch (err) {
      if (err instanceof MutationError) {
        const byField: Record<string, string> = {};
        for (const item of err.errors) {
          const f = item.field ?? "";
          if (f === "name") byField.name = item.message;
          else if (f === "kind") byField.kind = item.message;
          else if (f) byField.target = item.message; // config, url, addresses, routingKey…
        }
        setErrors(byField);
      }
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  const err = (slot: string) =>
    errors[slot] ? (
      <p className="field-error" id={`${id}-${slot}-error`} data-testid="field-error">
        {errors[slot]}
      </p>
    ) : null;
  const invalid = (slot: string) => (errors[slot] ? { "aria-invalid": true, "aria-describedby": `${id}-${slot}-error` } : {});

  return (
    <form className="form narrow-form" onSubmit={submit} aria-label="New notification channel" noValidate>
      {error ? <Alert kind="error">{error}</Alert> : null}
      <div className="field">
        <label htmlFor={`${id}-name`}>Name</label>
        <input id={`${id}-name`} value={name} onChange={(e) => setName(e.target.value)} {...invalid("name")} />
        {err("name")}
      </div>
      <div className="field">
        <label htmlFor={`${id}-kind`}>Kind</label>
        <select
          id={`${id}-kind`}
          value={kind}
          onChange={(e) => {
            setKind(e.target.value as ChannelKind);
            setTarget("");
          }}
        >
          {CHANNEL_KINDS.map((k) => (
            <option key={k.value} value={k.value}>
              {k.label}
            </option>
          ))}
        </select>
        {err("kind")}
      </div>
      <div className="field">
        <label htmlFor={`${id}-target`}>{field.label}</label>
        <input
          id={`${id}-target`}
          type={field.type}
          value={target}
          autoComplete="off"
          onChange={(e) => setTarget(e.target.value)}
          {...invalid("target")}
        />
        <p className="hint">{field.hint}</p>
        {err("target")}
      </div>
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Creating…" : "Create channel"}
        </button>
        <button type="button" className="btn btn-ghost" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function deliveryText(d: Delivery): string {
  const code = d.lastStatusCode ? `HTTP ${d.lastStatusCode}` : "";
  if (d.status === "delivered") return `Test notification delivered${code ? ` (${code})` : ""}.`;
  if (d.status === "failed") return `Test notification failed${code ? ` (${code})` : ""}: ${d.lastError || "no answer"}.`;
  if (d.status === "retrying") {
    return `Test notification not delivered yet${code ? ` (${code})` : ""}: ${d.lastError || "retrying"}.`;
  }
  return "Test notification queued; its result appears in the delivery log.";
}

function DeliveryLog({ deliveries, channels }: { deliveries: Delivery[]; channels: boolean }) {
  const [open, setOpen] = useState<Set<string>>(new Set());
  if (deliveries.length === 0) return <EmptyState>Nothing sent yet.</EmptyState>;
  const toggle = (id: string) =>
    setOpen((prev) => {
      const next = new Set(prev);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });
  return (
    <table className="table" data-testid="delivery-log">
      <thead>
        <tr>
          <th scope="col">Status</th>
          {channels ? <th scope="col">Channel</th> : null}
          <th scope="col">Event</th>
          <th scope="col">Attempts</th>
          <th scope="col">Response</th>
          <th scope="col">Error</th>
          <th scope="col">Time</th>
          <th scope="col" className="actions">
            <span className="sr-only">Attempts</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {deliveries.map((d) => (
          <Fragment key={d.id}>
            <tr data-testid="delivery-row" data-status={d.status}>
              <td data-label="Status">
                <span className={`badge badge-delivery-${d.status}`} data-testid="delivery-status">
                  {d.status}
                </span>
              </td>
              {channels ? <td data-label="Channel">{d.channelName}</td> : null}
              <td data-label="Event">
                <div className="cell-main">{d.event}</div>
                {d.incidentTitle ? <div className="cell-sub">{d.incidentTitle}</div> : null}
              </td>
              <td data-label="Attempts">{d.attempts}</td>
              <td data-label="Response" data-testid="delivery-code">
                {d.lastStatusCode ?? <span className="muted">—</span>}
              </td>
              <td data-label="Error" className="cell-wrap">
                {d.lastError || <span className="muted">—</span>}
              </td>
              <td data-label="Time">
                <Time value={d.deliveredAt ?? d.createdAt} />
              </td>
              <td className="actions">
                {d.attemptRows.length > 0 ? (
                  <button
                    type="button"
                    className="btn btn-ghost btn-small"
                    aria-expanded={open.has(d.id)}
                    onClick={() => toggle(d.id)}
                  >
                    {open.has(d.id) ? "Hide attempts" : "Show attempts"}
                  </button>
                ) : null}
              </td>
            </tr>
            {open.has(d.id) ? (
              <tr className="attempts-row">
                <td colSpan={channels ? 8 : 7}>
                  <table className="table table-inner" data-testid="attempt-rows">
                    <thead>
                      <tr>
                        <th scope="col">#</th>
                        <th scope="col">At</th>
                        <th scope="col">Code</th>
                        <th scope="col">Duration</th>
                        <th scope="col">Error</th>
                        <th scope="col">Request</th>
                      </tr>
                    </thead>
                    <tbody>
                      {d.attemptRows.map((a) => (
                        <tr key={a.number} data-testid="attempt-row">
                          <td>{a.number}</td>
                          <td>
                            <Time value={a.at} />
                          </td>
                          <td>{a.statusCode ?? "—"}</td>
                          <td>{a.durationMs} ms</td>
                          <td className="cell-wrap">{a.error || "—"}</td>
                          <td className="cell-wrap">
                            <code>{typeof a.request === "string" ? a.request : JSON.stringify(a.request)}</code>
                          </td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </td>
              </tr>
            ) : null}
          </Fragment>
        ))}
      </tbody>
    </table>
  );
}

export function ChannelsPage() {
  const { workspace } = useWorkspace();
  const slug = workspace.slug;
  const manage = canManageChannels(workspace.viewerRole);
  const channels = useAsync(() => fetchChannels(slug), [slug]);
  const [logChannel, setLogChannel] = useState<string>("");
  const deliveries = useAsync(() => fetchDeliveries(slug, { channelId: logChannel || undefined }), [slug, logChannel]);
  const [creating, setCreating] = useState(false);
  const [secret, setSecret] = useState<{ name: string; secret: string } | null>(null);
  const [notice, setNotice] = useState<{ kind: "success" | "error" | "info"; text: string } | null>(null);
  const [testing, setTesting] = useState<string | null>(null);
  const reloadAll = () => {
    void channels.reload();
    void deliveries.reload();
  };
  // A delivery pending after a test (or an incident's) settles in a worker: poll the log while
  // something is on its way, and refresh when incidents open or resolve (they notify).
  const inFlight = Boolean(deliveries.data?.some((d) => d.status === "pending" || d.status === "retrying"));
  const pollRef = useRef(reloadAll);
  pollRef.current = reloadAll;
  useEffect(() => {
    if (!inFlight) return;
    const t = window.setInterval(() => pollRef.current(), 2000);
    return () => window.clearInterval(t);
  }, [inFlight]);
  useFallbackPolling(reloadAll, 15000);
  useLiveRefresh(["incident."], reloadAll, 1000);

  useEffect(() => {
    document.title = `Notification channels · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  const act = async (fn: () => Promise<void>, text: string) => {
    setNotice(null);
    try {
      await fn();
      setNotice({ kind: "success", text });
    } catch (err) {
      setNotice({ kind: "error", text: errorMessage(err) });
    }
    reloadAll();
  };

  return (
    <div className="stack-lg">
      <AlertsNav slug={slug} />
      <section className="card" aria-labelledby="channels-title">
        <div className="card-head">
          <h2 id="channels-title">Notification channels</h2>
          {channels.data ? <span className="count">{channels.data.length}</span> : null}
          <div className="topbar-spacer" />
          {manage && !creating ? (
            <button
              type="button"
              className="btn btn-primary btn-small"
              onClick={() => {
                setNotice(null);
                setCreating(true);
              }}
            >
              New channel
            </button>
          ) : null}
        </div>
        <p className="muted">
          Where incidents are sent when they open and resolve: e-mail, a signed webhook, Slack or PagerDuty.
          {!manage ? " Your role can see channels and their delivery log; Admins manage them." : ""}
        </p>
        {notice ? (
          <div data-testid="channel-notice">
            <Alert kind={notice.kind}>{notice.text}</Alert>
          </div>
        ) : null}
        {secret ? <SecretBox name={secret.name} secret={secret.secret} onDone={() => setSecret(null)} /> : null}
        {creating ? (
          <section className="subpanel" aria-labelledby="channel-form-title">
            <h3 id="channel-form-title">New notification channel</h3>
            <ChannelForm
              slug={slug}
              onCancel={() => setCreating(false)}
              onCreated={(c, s) => {
                setCreating(false);
                setNotice({ kind: "success", text: `Channel “${c.name}” created.` });
                if (s) setSecret({ name: c.name, secret: s });
                reloadAll();
              }}
            />
          </section>
        ) : null}
        {channels.error && !channels.data ? <ErrorState error={channels.error} onRetry={() => void channels.reload()} /> : null}
        {!channels.data && channels.loading ? <Spinner label="Loading channels…" /> : null}
        {channels.data && channels.data.length === 0 ? <EmptyState>No notification channels yet.</EmptyState> : null}
        {channels.data && channels.data.length > 0 ? (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Kind</th>
                <th scope="col">Target</th>
                <th scope="col">Status</th>
                <th scope="col">Last delivery</th>
                {manage ? (
                  <th scope="col" className="actions">
                    <span className="sr-only">Actions</span>
                  </th>
                ) : null}
              </tr>
            </thead>
            <tbody>
              {channels.data.map((c) => (
                <tr key={c.id} data-testid="channel-row" className={c.isEnabled ? undefined : "row-dim"}>
                  <td data-label="Name">
                    <div className="cell-main">{c.name}</div>
                  </td>
                  <td data-label="Kind">{channelKindLabel(c.kind)}</td>
                  <td data-label="Target" className="cell-wrap">
                    <code>{c.target}</code>
                  </td>
                  <td data-label="Status" data-testid="channel-status">
                    {c.isEnabled ? (
                      <span className="badge badge-status-active">Enabled</span>
                    ) : (
                      <span className="badge">Disabled</span>
                    )}
                  </td>
                  <td data-label="Last delivery">
                    {c.lastDeliveryStatus ? (
                      <span className={`badge badge-delivery-${c.lastDeliveryStatus}`}>{c.lastDeliveryStatus}</span>
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                  {manage ? (
                    <td className="actions">
                      <button
                        type="button"
                        className="btn btn-secondary btn-small"
                        disabled={testing !== null}
                        aria-label={`Send test notification to ${c.name}`}
                        onClick={async () => {
                          setTesting(c.id);
                          setNotice(null);
                          try {
                            const d = await sendTestNotification(slug, c.id);
                            const kind = !d || d.status === "pending" ? "info" : d.status === "delivered" ? "success" : "error";
                            setNotice({ kind, text: d ? deliveryText(d) : "Test notification sent." });
                          } catch (err) {
                            setNotice({ kind: "error", text: errorMessage(err) });
                          }
                          setTesting(null);
                          reloadAll();
                        }}
                      >
                        {testing === c.id ? "Sending…" : "Send test notification"}
                      </button>
                      {c.kind === "webhook" ? (
                        <button
                          type="button"
                          className="btn btn-ghost btn-small"
                          aria-label={`Show signing secret of ${c.name}`}
                          onClick={async () => {
                            setNotice(null);
                            try {
                              setSecret({ name: c.name, secret: await revealChannelSecret(slug, c.id) });
                            } catch (err) {
                              setNotice({ kind: "error", text: errorMessage(err) });
                            }
                          }}
                        >
                          Show secret
                        </button>
                      ) : null}
                      <button
                        type="button"
                        className="btn btn-ghost btn-small"
                        aria-label={`${c.isEnabled ? "Disable" : "Enable"} ${c.name}`}
                        onClick={() =>
                          void act(
                            () => setChannelEnabled(slug, c.id, !c.isEnabled),
                            `Channel “${c.name}” ${c.isEnabled ? "disabled" : "enabled"}.`,
                          )
                        }
                      >
                        {c.isEnabled ? "Disable" : "Enable"}
                      </button>
                      <ConfirmButton
                        label={`Delete ${c.name}`}
                        confirmLabel="Delete channel"
                        onConfirm={() => act(() => deleteChannel(slug, c.id), `Channel “${c.name}” deleted.`)}
                      >
                        Delete
                      </ConfirmButton>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </section>

      <section className="card" aria-labelledby="deliveries-title">
        <div className="card-head">
          <h2 id="deliveries-title">Delivery log</h2>
          <div className="topbar-spacer" />
          <select
            className="select-inline"
            aria-label="Delivery log channel"
            value={logChannel}
            onChange={(e) => setLogChannel(e.target.value)}
          >
            <option value="">All channels</option>
            {(channels.data ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                {c.name}
              </option>
            ))}
          </select>
        </div>
        {deliveries.error && !deliveries.data ? (
          <ErrorState error={deliveries.error} onRetry={() => void deliveries.reload()} />
        ) : null}
        {!deliveries.data && deliveries.loading ? <Spinner label="Loading deliveries…" /> : null}
        {deliveries.data ? <DeliveryLog deliveries={deliveries.data} channels={!logChannel} /> : null}
      </section>
    </div>
  );
}
