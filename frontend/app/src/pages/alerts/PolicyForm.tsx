/** Create or edit an SLA policy: the fields change with the kind, the server's field errors show
 * next to their field, and a live preview lists the flows the policy covers (and, for duration,
 * each flow's p95 and how many runs it is computed from). */

import { useEffect, useId, useMemo, useState, type FormEvent, type ReactNode } from "react";

import {
  BREACH_ACTIONS,
  channelKindLabel,
  fetchPolicyPreview,
  humanSeconds,
  POLICY_KINDS,
  TIMED_KINDS,
  type BreachAction,
  type Channel,
  type PolicyInput,
  type PolicyKind,
  type PolicyPreview,
  type Severity,
  type SlaPolicy,
} from "../../api/alerts";
import { errorMessage, MutationError } from "../../api/graphql";
import type { ProjectWithFlows } from "../../api/orchestration";
import { Alert } from "../../components/ui";
import { splitList } from "./common";

type Unit = "minutes" | "hours" | "days";
const UNIT_SECONDS: Record<Unit, number> = { minutes: 60, hours: 3600, days: 86400 };
type Scope = "workspace" | "project" | "flow";

interface FormState {
  name: string;
  description: string;
  kind: PolicyKind;
  threshold: string;
  unit: Unit;
  consecutiveFailures: string;
  predictive: boolean;
  historySize: string;
  agentLabels: string;
  labels: string;
  scope: Scope;
  projectId: string;
  flowId: string;
  action: BreachAction;
  severity: Severity;
  channelIds: string[];
}

function initialState(policy: SlaPolicy | null): FormState {
  let threshold = "";
  let unit: Unit = "minutes";
  const seconds = policy?.thresholdSeconds;
  if (seconds) {
    unit = seconds % 86400 === 0 ? "days" : seconds % 3600 === 0 ? "hours" : "minutes";
    threshold = String(seconds / UNIT_SECONDS[unit]);
  }
  return {
    name: policy?.name ?? "",
    description: policy?.description ?? "",
    kind: policy?.kind ?? "start",
    threshold,
    unit,
    consecutiveFailures: String(policy?.consecutiveFailures ?? 1),
    predictive: policy?.predictive ?? false,
    historySize: String(policy?.historySize ?? 20),
    agentLabels: (policy?.agentLabels ?? []).join(", "),
    labels: (policy?.labels ?? []).join(", "),
    scope: policy?.flowId ? "flow" : policy?.projectId ? "project" : "workspace",
    projectId: policy?.projectId ?? "",
    flowId: policy?.flowId ?? "",
    action: policy?.action ?? "none",
    severity: policy?.severity ?? "critical",
    channelIds: policy?.channelIds ?? [],
  };
}

function toNumber(value: string): number | null {
  if (value.trim() === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : NaN;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function wholeNumber(value: string, empty: number): number {
  const n = toNumber(value);
  return n === null || Number.isNaN(n) ? empty : Math.trunc(n);
}

/** The form's state as the API's input. Numbers the person typed are sent as typed (rounded to
 * whole seconds) so the server's own validation speaks for bad values. */
function toInput(s: FormState): PolicyInput {
  const threshold = toNumber(s.threshold);
  const timed = TIMED_KINDS.includes(s.kind);
  return {
    name: s.name.trim(),
    description: s.description.trim(),
    kind: s.kind,
    projectId: s.scope === "project" && s.projectId ? s.projectId : null,
    flowId: s.scope === "flow" && s.flowId ? s.flowId : null,
    labels: splitList(s.labels),
    // The fields another kind uses go back to their defaults: the server refuses them otherwise.
    thresholdSeconds:
      timed && threshold !== null && !Number.isNaN(threshold) ? Math.round(threshold * UNIT_SECONDS[s.unit]) : null,
    consecutiveFailures: s.kind === "failure" ? wholeNumber(s.consecutiveFailures, 1) : 1,
    predictive: s.kind === "duration" && s.predictive,
    historySize: s.kind === "duration" ? wholeNumber(s.historySize, 20) : 20,
    agentLabels: s.kind === "agent" ? splitList(s.agentLabels) : [],
    action: s.action,
    severity: s.severity,
    channelIds: s.channelIds,
  };
}

/** Where a server error about `field` (camelCase, maybe "field.sub") is shown. */
const FIELD_SLOTS: Record<string, keyof FormState | "scope"> = {
  name: "name",
  description: "description",
  kind: "kind",
  thresholdSeconds: "threshold",
  consecutiveFailures: "consecutiveFailures",
  predictive: "predictive",
  historySize: "historySize",
  agentLabels: "agentLabels",
  labels: "labels",
  projectId: "scope",
  project: "scope",
  flowId: "scope",
  flow: "scope",
  action: "action",
  severity: "severity",
  channelIds: "channelIds",
  channels: "channelIds",
};

/** "The SLA policy is invalid. threshold_seconds: At least 60 seconds." → "At least 60 seconds." */
function fieldMessage(message: string): string {
  const match = /^(?:[^:]*?\.\s+)?[a-z_]+: (.+)$/s.exec(message);
  return match ? match[1]! : message;
}

function FieldError({ id, message }: { id: string; message: string | undefined }) {
  if (!message) return null;
  return (
    <p className="field-error" id={id} data-testid="field-error">
      {message}
    </p>
  );
}

function Row({
  label,
  htmlFor,
  error,
  hint,
  children,
}: {
  label: string;
  htmlFor: string;
  error?: string;
  hint?: ReactNode;
  children: ReactNode;
}) {
  return (
    <div className="field">
      <label htmlFor={htmlFor}>{label}</label>
      {children}
      {hint ? <p className="hint">{hint}</p> : null}
      <FieldError id={`${htmlFor}-error`} message={error} />
    </div>
  );
}

export function PolicyForm({
  slug,
  policy,
  projects,
  channels,
  onSubmit,
  onCancel,
}: {
  slug: string;
  policy: SlaPolicy | null;
  projects: ProjectWithFlows[];
  channels: Channel[];
  onSubmit: (input: PolicyInput) => Promise<void>;
  onCancel: () => void;
}) {
  const id = useId();
  const [state, setState] = useState<FormState>(() => initialState(policy));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const set = <K extends keyof FormState>(key: K, value: FormState[K]) => setState((prev) => ({ ...prev, [key]: value }));
  const timed = TIMED_KINDS.includes(state.kind);
  const declared = Boolean(policy?.fromRegistration);
  const scopeChosen = !((state.scope === "project" && !state.projectId) || (state.scope === "flow" && !state.flowId));

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const local: Record<string, string> = {};
    if (!state.name.trim()) local.name = "Give the policy a name.";
    if (timed && state.threshold.trim() !== "" && Number.isNaN(Number(state.threshold))) local.threshold = "Enter a number.";
    if (state.scope === "project" && !state.projectId) local.scope = "Choose a project.";
    if (state.scope === "flow" && !state.flowId) local.scope = "Choose a flow.";
    setErrors(local);
    if (Object.keys(local).length) {
      setError("Check the highlighted fields.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await onSubmit(toInput(state));
    } catch (err) {
      if (err instanceof MutationError) {
        const byField: Record<string, string> = {};
        for (const item of err.errors) {
          const key = item.field ? FIELD_SLOTS[item.field.split(".")[0]!] : undefined;
          if (key && !byField[key]) byField[key] = fieldMessage(item.message);
        }
        setErrors(byField);
      }
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  const f = (name: string) => `${id}-${name}`;
  const invalid = (slot: string) => (errors[slot] ? { "aria-invalid": true, "aria-describedby": `${f(slot)}-error` } : {});
  const previewInput = useMemo(() => toInput(state), [state]);

  return (
    <form className="form policy-form" onSubmit={submit} aria-label={policy ? "Edit SLA policy" : "New SLA policy"} noValidate>
      {error ? <Alert kind="error">{error}</Alert> : null}
      <div className="policy-form-grid">
        <div className="stack">
          <Row
            label="Name"
            htmlFor={f("name")}
            error={errors.name}
            hint={declared ? "Declared in code next to its flow: its name and scope change there." : undefined}
          >
            <input
              id={f("name")}
              value={state.name}
              disabled={declared}
              onChange={(e) => set("name", e.target.value)}
              {...invalid("name")}
            />
          </Row>
          <Row label="Description" htmlFor={f("description")} error={errors.description}>
            <input id={f("description")} value={state.description} onChange={(e) => set("description", e.target.value)} />
          </Row>
          <Row
            label="Kind"
            htmlFor={f("kind")}
            error={errors.kind}
            hint={POLICY_KINDS.find((k) => k.value === state.kind)?.hint}
          >
            <select id={f("kind")} value={state.kind} onChange={(e) => set("kind", e.target.value as PolicyKind)}>
              {POLICY_KINDS.map((k) => (
                <option key={k.value} value={k.value}>
                  {k.label}
                </option>
              ))}
            </select>
          </Row>

          {timed ? (
            <div className="field">
              <label htmlFor={f("threshold")}>Threshold</label>
              <div className="input-pair">
                <input
                  id={f("threshold")}
                  type="number"
                  inputMode="decimal"
                  value={state.threshold}
                  onChange={(e) => set("threshold", e.target.value)}
                  {...invalid("threshold")}
                />
                <select aria-label="Threshold unit" value={state.unit} onChange={(e) => set("unit", e.target.value as Unit)}>
                  <option value="minutes">minutes</option>
                  <option value="hours">hours</option>
                  <option value="days">days</option>
                </select>
              </div>
              <FieldError id={`${f("threshold")}-error`} message={errors.threshold} />
            </div>
          ) : null}

          {state.kind === "failure" ? (
            <Row
              label="Consecutive failures"
              htmlFor={f("consecutiveFailures")}
              error={errors.consecutiveFailures}
              hint="1 alerts on every failed run; N alerts when N runs of a flow fail in a row."
            >
              <input
                id={f("consecutiveFailures")}
                type="number"
                min={1}
                value={state.consecutiveFailures}
                onChange={(e) => set("consecutiveFailures", e.target.value)}
                {...invalid("consecutiveFailures")}
              />
            </Row>
          ) : null}

          {state.kind === "duration" ? (
            <>
              <div className="field checkbox">
                <input
                  id={f("predictive")}
                  type="checkbox"
                  checked={state.predictive}
                  onChange={(e) => set("predictive", e.target.checked)}
                />
                <label htmlFor={f("predictive")}>Predictive warning</label>
              </div>
              <p className="hint">
                Warn when a running run passes the flow's p95 of its last successful runs, before the limit is hit.
              </p>
              <Row
                label="History size"
                htmlFor={f("historySize")}
                error={errors.historySize}
                hint="Successful runs the p95 is computed from."
              >
                <input
                  id={f("historySize")}
                  type="number"
                  min={1}
                  value={state.historySize}
                  onChange={(e) => set("historySize", e.target.value)}
                  {...invalid("historySize")}
                />
              </Row>
            </>
          ) : null}

          {state.kind === "agent" ? (
            <Row
              label="Agent labels"
              htmlFor={f("agentLabels")}
              error={errors.agentLabels}
              hint="Comma-separated: some healthy agent must cover all of them."
            >
              <input
                id={f("agentLabels")}
                value={state.agentLabels}
                onChange={(e) => set("agentLabels", e.target.value)}
                {...invalid("agentLabels")}
              />
            </Row>
          ) : null}

          <div className="field">
            <label htmlFor={f("scope")}>Scope</label>
            <select
              id={f("scope")}
              value={state.scope}
              disabled={declared}
              onChange={(e) => set("scope", e.target.value as Scope)}
              {...invalid("scope")}
            >
              <option value="workspace">Every flow of the workspace</option>
              <option value="project">The flows of one project</option>
              <option value="flow">One flow</option>
            </select>
            {state.scope === "project" ? (
              <select
                aria-label="Project"
                value={state.projectId}
                disabled={declared}
                onChange={(e) => set("projectId", e.target.value)}
              >
                <option value="">Choose a project…</option>
                {projects.map((p) => (
                  <option key={p.id} value={p.id}>
                    {p.name}
                  </option>
                ))}
              </select>
            ) : null}
            {state.scope === "flow" ? (
              <select
                aria-label="Flow"
                value={state.flowId}
                disabled={declared}
                onChange={(e) => set("flowId", e.target.value)}
              >
                <option value="">Choose a flow…</option>
                {projects.map((p) => (
                  <optgroup key={p.id} label={p.name}>
                    {p.flows.map((fl) => (
                      <option key={fl.id} value={fl.id}>
                        {fl.name}
                      </option>
                    ))}
                  </optgroup>
                ))}
              </select>
            ) : null}
            <FieldError id={`${f("scope")}-error`} message={errors.scope} />
          </div>

          <Row
            label="Run labels"
            htmlFor={f("labels")}
            error={errors.labels}
            hint="Optional, comma-separated: only runs carrying all of these labels."
          >
            <input
              id={f("labels")}
              value={state.labels}
              onChange={(e) => set("labels", e.target.value)}
              {...invalid("labels")}
            />
          </Row>

          <div className="grid-2 tight">
            <Row label="Action on breach" htmlFor={f("action")} error={errors.action}>
              <select id={f("action")} value={state.action} onChange={(e) => set("action", e.target.value as BreachAction)}>
                {BREACH_ACTIONS.map((a) => (
                  <option key={a.value} value={a.value}>
                    {a.label}
                  </option>
                ))}
              </select>
            </Row>
            <Row label="Severity" htmlFor={f("severity")} error={errors.severity}>
              <select id={f("severity")} value={state.severity} onChange={(e) => set("severity", e.target.value as Severity)}>
                <option value="critical">Critical</option>
                <option value="warning">Warning</option>
              </select>
            </Row>
          </div>

          <fieldset className="field channel-picker">
            <legend>Notify channels</legend>
            {channels.length === 0 ? (
              <p className="hint">No notification channels yet: an Admin adds them under Channels.</p>
            ) : null}
            {channels.map((c) => (
              <label key={c.id} className="checkbox-row">
                <input
                  type="checkbox"
                  checked={state.channelIds.includes(c.id)}
                  onChange={(e) =>
                    set(
                      "channelIds",
                      e.target.checked ? [...state.channelIds, c.id] : state.channelIds.filter((x) => x !== c.id),
                    )
                  }
                />
                {c.name} <span className="muted">({channelKindLabel(c.kind)})</span>
                {!c.isEnabled ? <span className="badge">Disabled</span> : null}
              </label>
            ))}
            <FieldError id={`${f("channelIds")}-error`} message={errors.channelIds} />
          </fieldset>
        </div>
        <PreviewPanel slug={slug} input={previewInput} scopeChosen={scopeChosen} />
      </div>
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Saving…" : policy ? "Save policy" : "Create policy"}
        </button>
        <button type="button" className="btn btn-ghost" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/** The flows the policy would cover, refreshed shortly after the scope, labels or kind change. */
function PreviewPanel({ slug, input, scopeChosen }: { slug: string; input: PolicyInput; scopeChosen: boolean }) {
  const [preview, setPreview] = useState<PolicyPreview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  // The server previews 5 to 1000 runs of history; a value being typed falls back to the default.
  const historySize = input.historySize >= 5 && input.historySize <= 1000 ? input.historySize : 20;
  const key = JSON.stringify([input.kind, input.projectId, input.flowId, historySize]);

  useEffect(() => {
    if (!scopeChosen) return;
    let current = true;
    setLoading(true);
    const timer = window.setTimeout(async () => {
      try {
        const result = await fetchPolicyPreview(slug, {
          kind: input.kind,
          projectId: input.projectId,
          flowId: input.flowId,
          historySize,
        });
        if (current) {
          setPreview(result);
          setError(null);
        }
      } catch (err) {
        if (current) setError(errorMessage(err));
      } finally {
        if (current) setLoading(false);
      }
    }, 300);
    return () => {
      current = false;
      window.clearTimeout(timer);
    };
    // `key` stands for the inputs the preview depends on.
  }, [slug, key, scopeChosen]);

  const p95 = new Map((preview?.p95 ?? []).map((p) => [p.flowId, p]));
  return (
    <aside className="subpanel preview" aria-labelledby="preview-title" data-testid="policy-preview" aria-busy={loading}>
      <h3 id="preview-title">Covered flows</h3>
      {!scopeChosen ? <p className="muted">Choose the project or flow to see what the policy covers.</p> : null}
      {scopeChosen && error ? <p className="field-error">{error}</p> : null}
      {scopeChosen && !preview && !error ? <p className="muted">Computing…</p> : null}
      {scopeChosen && preview ? (
        <>
          <p className="muted" data-testid="preview-count">
            {preview.flowCount === 0
              ? "No flow falls under this scope yet."
              : `${preview.flowCount} flow${preview.flowCount === 1 ? "" : "s"} covered${
                  preview.flowCount > preview.flows.length ? ` (first ${preview.flows.length} shown)` : ""
                }.`}
          </p>
          <ul className="preview-list">
            {preview.flows.map((fl) => {
              const stat = p95.get(fl.id);
              return (
                <li key={fl.id} data-testid="preview-flow">
                  <span className="cell-main">{fl.name}</span>
                  {input.kind === "duration" ? (
                    <span className="cell-sub" data-testid="preview-p95">
                      {stat && stat.p95Seconds !== null
                        ? `p95 ${humanSeconds(Math.round(stat.p95Seconds))} over ${plural(stat.sampleSize, "successful run")}`
                        : "p95: no successful runs yet"}
                    </span>
                  ) : null}
                </li>
              );
            })}
          </ul>
        </>
      ) : null}
    </aside>
  );
}
