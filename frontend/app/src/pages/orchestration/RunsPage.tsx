import { useCallback, useEffect, useRef, useState } from "react";

import { errorMessage } from "../../api/graphql";
import { fetchRuns, STATE_TYPES, type RunSummary, type StateType } from "../../api/orchestration";
import { RunTable } from "../../components/orchestration";
import { ErrorState, Spinner } from "../../components/ui";
import { useLiveRefresh } from "../../live";
import { useWorkspace } from "../WorkspaceLayout";

const PAGE = 25;
const MAX_PAGE = 100;

export function RunsPage() {
  const { workspace } = useWorkspace();
  const [state, setState] = useState<StateType | "">("");
  const [runs, setRuns] = useState<RunSummary[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(
    async (after: string | null) => {
      setLoading(true);
      setError(null);
      try {
        const page = await fetchRuns(workspace.slug, state ? { stateTypes: [state] } : {}, after);
        setRuns((prev) => (after ? [...prev, ...page.runs] : page.runs));
        setCursor(page.pageInfo.endCursor);
        setHasMore(page.pageInfo.hasNextPage);
      } catch (err) {
        setError(errorMessage(err));
      }
      setLoading(false);
    },
    [workspace.slug, state],
  );

  useEffect(() => {
    document.title = `Runs · ${workspace.name} · Flowdeck`;
    void load(null);
  }, [load, workspace.name]);

  // Live: a run created, changing state or deleted refreshes the rows loaded so far (as many as
  // are shown, up to the page limit), without resetting "Load more" or showing a spinner.
  const shown = useRef(0);
  shown.current = runs.length;
  const refresh = useCallback(async () => {
    try {
      const page = await fetchRuns(
        workspace.slug,
        state ? { stateTypes: [state] } : {},
        null,
        Math.min(MAX_PAGE, Math.max(PAGE, shown.current)),
      );
      setRuns(page.runs);
      setCursor(page.pageInfo.endCursor);
      setHasMore(page.pageInfo.hasNextPage);
      setError(null);
    } catch {
      /* the next event or a reload retries */
    }
  }, [workspace.slug, state]);
  useLiveRefresh(["flow_run."], refresh, 500);

  return (
    <section className="card" aria-labelledby="runs-title">
      <div className="card-head">
        <h2 id="runs-title">Flow runs</h2>
        <div className="topbar-spacer" />
        <select
          className="select-inline"
          aria-label="Filter by state"
          value={state}
          onChange={(e) => setState(e.target.value as StateType | "")}
        >
          <option value="">All states</option>
          {STATE_TYPES.map((s) => (
            <option key={s} value={s}>
              {s.charAt(0) + s.slice(1).toLowerCase()}
            </option>
          ))}
        </select>
      </div>
      {!loading || runs.length ? (
        <RunTable slug={workspace.slug} runs={runs} when="started" empty="No runs match." />
      ) : null}
      {error ? <ErrorState error={error} onRetry={() => void load(null)} /> : null}
      {loading ? <Spinner label="Loading runs…" /> : null}
      {hasMore && !loading ? (
        <div className="load-more">
          <button type="button" className="btn btn-secondary" onClick={() => void load(cursor)}>
            Load more
          </button>
        </div>
      ) : null}
    </section>
  );
}
