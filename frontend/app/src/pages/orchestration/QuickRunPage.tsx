import { useEffect, useId, useMemo, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";

import { isQuotaExceeded } from "../../api/billing";
import { errorMessage, MutationError } from "../../api/graphql";
import { fetchFlow, quickRun, type ParameterSpec } from "../../api/orchestration";
import { ActionError } from "../../components/billing";
import { Alert, EmptyState, ErrorState, Spinner, useAsync } from "../../components/ui";
import { useWorkspace } from "../WorkspaceLayout";
import { canRunFlows } from "./FlowPage";

type Values = Record<string, string | boolean>;

function initialValue(p: ParameterSpec): string | boolean {
  const d = p.default;
  if (p.type === "bool") return d === true;
  if (d === null || d === undefined) return "";
  if (p.type === "str" && typeof d === "string") return d;
  if ((p.type === "int" || p.type === "float") && typeof d === "number") return String(d);
  return JSON.stringify(d, null, 2);
}

/** The value to send, `undefined` to leave it out (the server fills the default), or an error. */
function convert(p: ParameterSpec, raw: string | boolean): { value?: unknown; error?: string } {
  if (p.type === "bool") return { value: raw === true };
  const text = String(raw);
  if (text.trim() === "") return p.required ? { error: "This parameter is required." } : {};
  switch (p.type) {
    case "str":
      return { value: text };
    case "int": {
      const n = Number(text);
      return Number.isInteger(n) ? { value: n } : { error: "Enter a whole number." };
    }
    case "float": {
      const n = Number(text);
      return Number.isFinite(n) ? { value: n } : { error: "Enter a number." };
    }
    default:
      try {
        const value: unknown = JSON.parse(text);
        if (p.type === "list" && !Array.isArray(value)) return { error: "Enter a JSON list, e.g. [1, 2]." };
        if (p.type === "dict" && (typeof value !== "object" || value === null || Array.isArray(value))) {
          return { error: 'Enter a JSON object, e.g. {"a": 1}.' };
        }
        return { value };
      } catch {
        return { error: "Enter valid JSON." };
      }
  }
}

function ParameterField({
  spec,
  value,
  error,
  onChange,
}: {
  spec: ParameterSpec;
  value: string | boolean;
  error?: string;
  onChange: (value: string | boolean) => void;
}) {
  const id = useId();
  const type = spec.type ?? "any";
  const label = (
    <>
      {spec.name}
      {spec.required ? (
        <span className="required" aria-hidden="true">
          *
        </span>
      ) : null}
      {" "}
      <span className="param-type">({type})</span>
    </>
  );
  const describedBy = error ? `${id}-error` : undefined;
  let input;
  if (type === "bool") {
    return (
      <div className="field checkbox">
        <input id={id} type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />
        <label htmlFor={id}>{label}</label>
      </div>
    );
  } else if (type === "str" || type === "int" || type === "float") {
    input = (
      <input
        id={id}
        name={spec.name}
        type={type === "str" ? "text" : "number"}
        step={type === "int" ? 1 : "any"}
        required={Boolean(spec.required)}
        aria-required={Boolean(spec.required)}
        aria-invalid={Boolean(error)}
        aria-describedby={describedBy}
        value={String(value)}
        onChange={(e) => onChange(e.target.value)}
      />
    );
  } else {
    input = (
      <textarea
        id={id}
        name={spec.name}
        required={Boolean(spec.required)}
        aria-invalid={Boolean(error)}
        aria-describedby={describedBy}
        value={String(value)}
        placeholder="JSON"
        onChange={(e) => onChange(e.target.value)}
      />
    );
  }
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {input}
      {error ? (
        <p className="hint" id={`${id}-error`} style={{ color: "var(--danger)" }}>
          {error}
        </p>
      ) : null}
    </div>
  );
}

export function QuickRunPage() {
  const { workspace, reloadUsage } = useWorkspace();
  const { flowId = "" } = useParams();
  const navigate = useNavigate();
  const flow = useAsync(() => fetchFlow(workspace.slug, flowId), [workspace.slug, flowId]);
  const parameters = useMemo(() => flow.data?.activeVersion?.parameters ?? [], [flow.data]);
  const [values, setValues] = useState<Values>({});
  const [labels, setLabels] = useState("");
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [quota, setQuota] = useState(false);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    setValues(Object.fromEntries(parameters.map((p) => [p.name, initialValue(p)])));
  }, [parameters]);

  useEffect(() => {
    if (flow.data) document.title = `Run ${flow.data.name} · Flowdeck`;
  }, [flow.data]);

  if (flow.error) return <ErrorState error={flow.error} onRetry={() => void flow.reload()} />;
  if (!flow.data && flow.loading) return <Spinner label="Loading flow…" />;
  const f = flow.data;
  if (!f || !f.activeVersion) {
    return (
      <div className="card not-found">
        <h2>Nothing to run</h2>
        <p>This flow does not exist, or it has no active version.</p>
      </div>
    );
  }

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const errors: Record<string, string> = {};
    const payload: Record<string, unknown> = {};
    for (const p of parameters) {
      const converted = convert(p, values[p.name] ?? "");
      if (converted.error) errors[p.name] = converted.error;
      else if (converted.value !== undefined) payload[p.name] = converted.value;
    }
    setFieldErrors(errors);
    if (Object.keys(errors).length) return;
    const labelList = labels
      .split(",")
      .map((l) => l.trim())
      .filter(Boolean);
    setBusy(true);
    setError(null);
    try {
      const id = await quickRun(workspace.slug, f.id, payload, labelList.length ? labelList : null);
      void reloadUsage(); // the run counts: the quota banner may have to appear
      navigate(`/w/${workspace.slug}/runs/${id}`);
    } catch (err) {
      if (err instanceof MutationError) {
        const byField: Record<string, string> = {};
        for (const item of err.errors) {
          const name = item.field?.startsWith("parameters.") ? item.field.slice("parameters.".length) : null;
          if (name) byField[name] = item.message.replace(/^parameters\.[^:]+: /, "");
        }
        setFieldErrors(byField);
      }
      setError(errorMessage(err));
      setQuota(isQuotaExceeded(err));
      if (isQuotaExceeded(err)) void reloadUsage();
      setBusy(false);
    }
  };

  return (
    <section className="card" aria-labelledby="quick-run-title">
      <p className="breadcrumbs">
        <Link to={`/w/${workspace.slug}/flows/${f.id}`}>{f.name}</Link> / Quick run
      </p>
      <h2 id="quick-run-title">Run {f.name}</h2>
      <p className="muted">
        Version {f.activeVersion.version}. The run is scheduled now and picked up by an agent whose labels cover the
        run's labels.
      </p>
      {!canRunFlows(workspace.viewerRole) ? (
        <Alert kind="info">Your role can see flows but not start runs.</Alert>
      ) : null}
      {error ? (
        <ActionError message={error} quota={quota} slug={workspace.slug} owner={workspace.viewerRole === "owner"} />
      ) : null}
      <form className="form narrow-form" onSubmit={submit} aria-label="Quick run" noValidate>
        {parameters.length === 0 ? <EmptyState>This flow takes no parameters.</EmptyState> : null}
        {parameters.map((p) => (
          <ParameterField
            key={p.name}
            spec={p}
            value={values[p.name] ?? ""}
            error={fieldErrors[p.name]}
            onChange={(v) => setValues((prev) => ({ ...prev, [p.name]: v }))}
          />
        ))}
        <div className="field">
          <label htmlFor="run-labels">Labels</label>
          <input
            id="run-labels"
            value={labels}
            placeholder={f.activeVersion.labels.join(", ") || "none"}
            onChange={(e) => setLabels(e.target.value)}
          />
          <p className="hint">Comma-separated. Leave empty to use the version's labels.</p>
        </div>
        {parameters.some((p) => p.required) ? (
          <p className="hint" data-testid="required-legend">
            <span className="required">*</span> required
          </p>
        ) : null}
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={busy || !canRunFlows(workspace.viewerRole)}>
            {busy ? "Starting…" : "Start run"}
          </button>
          <Link to={`/w/${workspace.slug}/flows/${f.id}`} className="btn btn-ghost">
            Back
          </Link>
        </div>
      </form>
    </section>
  );
}
