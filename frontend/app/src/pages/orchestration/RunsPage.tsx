import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { useSearchParams } from "react-router";

import { errorMessage } from "../../api/graphql";
import {
  fetchProjects,
  fetchRuns,
  STATE_TYPES,
  type ProjectWithFlows,
  type RunFilter,
  type RunPage,
  type StateType,
} from "../../api/orchestration";
import { RunTable, stateLabel } from "../../components/orchestration";
import { ErrorState, Spinner } from "../../components/ui";
import { useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";

const PAGE = 25;
const MAX_OFFSET = 10_000; // the API's limit: narrow the filter to reach older runs

// The filter lives in the URL (a reload, a shared link or Back keeps it): flow, state (a type),
// name (a state name such as Late), waiting=no-agent, tags and labels (comma-separated), from and
// to (dates, inclusive), page.
const KEYS = ["flow", "state", "name", "waiting", "tags", "labels", "from", "to"] as const;

// Named states worth finding on their own, offered under the state types.
const NAMED_STATES = ["Late", "AwaitingRetry", "TriggerFailed", "Cached", "Skipped"];

function list(value: string | null): string[] | undefined {
  const items = (value ?? "").split(",").map((v) => v.trim()).filter(Boolean);
  return items.length ? items : undefined;
}

function dayStart(value: string | null, plusDays = 0): string | undefined {
  if (!value || !/^\d{4}-\d{2}-\d{2}$/.test(value)) return undefined;
  const d = new Date(`${value}T00:00:00`);
  if (Number.isNaN(d.getTime())) return undefined;
  d.setDate(d.getDate() + plusDays);
  return d.toISOString();
}

function filterOf(params: URLSearchParams): RunFilter {
  const state = params.get("state");
  return {
    flowId: params.get("flow") || undefined,
    stateTypes: state && STATE_TYPES.includes(state as StateType) ? [state as StateType] : undefined,
    stateName: params.get("name") || undefined,
    withoutLiveAgent: params.get("waiting") === "no-agent" || undefined,
    tags: list(params.get("tags")),
    labels: list(params.get("labels")),
    scheduledAfter: dayStart(params.get("from")),
    scheduledBefore: dayStart(params.get("to"), 1),
  };
}

// The state select's value: one of a type, a state name or "waiting for an agent".
function stateChoice(params: URLSearchParams): string {
  if (params.get("waiting") === "no-agent") return "waiting:no-agent";
  if (params.get("name")) return `name:${params.get("name")}`;
  return params.get("state") ? `type:${params.get("state")}` : "";
}

export function RunsPage() {
  const { workspace } = useWorkspace();
  const [params, setParams] = useSearchParams();
  const query = params.toString();
  const filter = useMemo(() => filterOf(new URLSearchParams(query)), [query]);
  const page = Math.max(1, Math.floor(Number(params.get("page"))) || 1);
  const offset = (page - 1) * PAGE;

  const [data, setData] = useState<RunPage | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [projects, setProjects] = useState<ProjectWithFlows[]>([]);
  const [tags, setTags] = useState(params.get("tags") ?? "");
  const [labels, setLabels] = useState(params.get("labels") ?? "");

  // Each text box follows its own URL value when that changes (Back, a link, "Clear filters"), and
  // only then: applying one box must not wipe what is being typed into the other.
  const urlTags = params.get("tags") ?? "";
  const urlLabels = params.get("labels") ?? "";
  useEffect(() => setTags(urlTags), [urlTags]);
  useEffect(() => setLabels(urlLabels), [urlLabels]);

  useEffect(() => {
    fetchProjects(workspace.slug).then(setProjects, () => setProjects([]));
  }, [workspace.slug]);

  // Answers can arrive out of order (a filter changed while the previous page was loading): only
  // the newest request's answer is shown.
  const latest = useRef(0);
  const load = useCallback(
    async (quiet: boolean) => {
      const request = ++latest.current;
      if (offset > MAX_OFFSET) {
        setError(`Only the newest ${MAX_OFFSET.toLocaleString()} runs can be paged through: narrow the filter.`);
        setLoading(false);
        return;
      }
      if (!quiet) setLoading(true);
      try {
        const page = await fetchRuns(workspace.slug, filter, { offset }, PAGE);
        if (request !== latest.current) return;
        setData(page);
        setError(null);
      } catch (err) {
        if (request !== latest.current) return;
        if (!quiet) setError(errorMessage(err)); // a live refresh that fails waits for the next event
      }
      setLoading(false);
    },
    [workspace.slug, filter, offset],
  );

  useEffect(() => {
    document.title = `Runs · ${workspace.name} · Flowdeck`;
    void load(false);
  }, [load, workspace.name]);

  // Live: a run created, changing state or deleted refreshes the page shown, without a spinner.
  const refresh = useCallback(() => load(true), [load]);
  useLiveRefresh(["flow_run."], refresh, 500);

  const update = (changes: Partial<Record<(typeof KEYS)[number] | "page", string | null>>) => {
    const next = new URLSearchParams(params);
    for (const [key, value] of Object.entries(changes)) {
      if (value) next.set(key, value);
      else next.delete(key);
    }
    if (!("page" in changes)) next.delete("page"); // a new filter starts at its first page
    setParams(next);
  };

  const chooseState = (value: string) => {
    const [kind, rest] = [value.split(":")[0], value.split(":").slice(1).join(":")];
    update({
      state: kind === "type" ? rest : null,
      name: kind === "name" ? rest : null,
      waiting: kind === "waiting" ? rest : null,
    });
  };

  const applyText = (event: FormEvent) => {
    event.preventDefault();
    update({ tags: list(tags)?.join(",") ?? null, labels: list(labels)?.join(",") ?? null });
  };

  const filtered = KEYS.some((k) => params.get(k));
  const total = data?.totalCount ?? 0;
  const pages = Math.max(1, Math.ceil(total / PAGE));
  const shown = data?.runs.length ?? 0;

  return (
    <section className="card" aria-labelledby="runs-title">
      <div className="card-head">
        <h2 id="runs-title">Flow runs</h2>
        <div className="topbar-spacer" />
        {data ? (
          <span className="muted" data-testid="runs-count">
            {total === 0 ? "No runs" : `${offset + 1}–${offset + shown} of ${total.toLocaleString()}`}
          </span>
        ) : null}
      </div>
      <form className="filters" onSubmit={applyText} aria-label="Filter runs" data-testid="run-filters">
        <label className="filter">
          <span>Flow</span>
          <select className="select-inline" aria-label="Flow" value={params.get("flow") ?? ""} onChange={(e) => update({ flow: e.target.value })}>
            <option value="">All flows</option>
            {projects.map((p) => (
              <optgroup key={p.id} label={p.name}>
                {p.flows.map((f) => (
                  <option key={f.id} value={f.id}>
                    {f.name}
                  </option>
                ))}
              </optgroup>
            ))}
          </select>
        </label>
        <label className="filter">
          <span>State</span>
          <select className="select-inline" aria-label="State" value={stateChoice(params)} onChange={(e) => chooseState(e.target.value)}>
            <option value="">All states</option>
            {STATE_TYPES.map((s) => (
              <option key={s} value={`type:${s}`}>
                {stateLabel(s)}
              </option>
            ))}
            <optgroup label="Named states">
              {NAMED_STATES.map((n) => (
                <option key={n} value={`name:${n}`}>
                  {stateLabel("SCHEDULED", n)}
                </option>
              ))}
            </optgroup>
            <option value="waiting:no-agent">Waiting: no live agent can take it</option>
          </select>
        </label>
        <label className="filter">
          <span>Task tags</span>
          <input className="input-inline" aria-label="Task tags" value={tags} placeholder="e.g. db, heavy" onChange={(e) => setTags(e.target.value)}
            onBlur={applyText} />
        </label>
        <label className="filter">
          <span>Labels</span>
          <input className="input-inline" aria-label="Labels" value={labels} placeholder="e.g. gpu" onChange={(e) => setLabels(e.target.value)}
            onBlur={applyText} />
        </label>
        <label className="filter">
          <span>Scheduled from</span>
          <input type="date" className="input-inline" aria-label="Scheduled from" value={params.get("from") ?? ""} onChange={(e) => update({ from: e.target.value })} />
        </label>
        <label className="filter">
          <span aria-hidden="true">to</span>
          <input type="date" className="input-inline" aria-label="Scheduled to" value={params.get("to") ?? ""} onChange={(e) => update({ to: e.target.value })} />
        </label>
        <button type="submit" className="sr-only">
          Apply filters
        </button>
        {filtered ? (
          <button type="button" className="btn btn-secondary btn-small" onClick={() => setParams(new URLSearchParams())}>
            Clear filters
          </button>
        ) : null}
      </form>
      {data && (!loading || data.runs.length) ? (
        <RunTable slug={workspace.slug} runs={data.runs} when="started" empty={filtered ? "No runs match these filters." : "No runs yet."} />
      ) : null}
      {error ? <ErrorState error={error} onRetry={() => void load(false)} /> : null}
      {loading ? <Spinner label="Loading runs…" /> : null}
      {data && pages > 1 ? (
        <nav className="pager" aria-label="Pages of runs">
          <button type="button" className="btn btn-secondary" disabled={page <= 1} onClick={() => update({ page: String(page - 1) })}>
            Newer
          </button>
          <span data-testid="runs-page">
            Page {page} of {pages.toLocaleString()}
          </span>
          <button type="button" className="btn btn-secondary" disabled={!data.pageInfo.hasNextPage}
            onClick={() => update({ page: String(page + 1) })}>
            Older
          </button>
        </nav>
      ) : null}
    </section>
  );
}
