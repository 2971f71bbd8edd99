/** The tail of a run's logs, read through GraphQL in sequence order and followed with
 * `afterSequence`: `poll()` reads what came since the last line (live events call it). A filter
 * (level, task run, text) is applied by the server, so a filtered view of a long log is exact; a
 * new filter starts the tail over. */

import { useCallback, useEffect, useRef, useState } from "react";

import { fetchLogs, type LogFilter, type LogLine } from "../../api/orchestration";

/** Lines kept in the page; older ones are dropped (the download has them all). */
export const MAX_LOG_LINES = 2000;
const PAGE = 200;

export function useLogTail(slug: string, runId: string, filter: LogFilter = {}) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [denied, setDenied] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const last = useRef<number | null>(null);
  /** Bumped when the tail starts over (another run or filter, or "reload"): a read in flight from
   * before then stops without appending. */
  const generation = useRef(0);
  /** The generation whose read is running, if any. */
  const running = useRef<number | null>(null);
  /** A poll was asked for while one was running (a live event): read once more when it ends, or
   * the lines that event announced would wait for the next one. */
  const again = useRef(false);
  const { levelGte = null, taskRunId = null, search = null } = filter;
  const current = useRef<LogFilter>({ levelGte, taskRunId, search });
  current.current = { levelGte, taskRunId, search };

  const poll = useCallback(async () => {
    const mine = generation.current;
    if (running.current === mine) {
      again.current = true;
      return;
    }
    running.current = mine;
    try {
      do {
        again.current = false;
        // Keep reading while full pages come back, so a long log catches up quickly (in rounds of
        // five pages, so the page stays responsive).
        for (let page = 0; page < 5; page++) {
          const more = await fetchLogs(slug, runId, last.current, current.current);
          if (mine !== generation.current) return;
          if (more === null) {
            setDenied(true);
            return;
          }
          setLoaded(true);
          if (more.length === 0) break;
          last.current = more[more.length - 1]!.sequence;
          setLines((prev) => [...prev, ...more].slice(-MAX_LOG_LINES));
          if (more.length < PAGE) break;
          if (page === 4) again.current = true;
        }
      } while (again.current && mine === generation.current);
    } catch {
      /* the next poll or live event retries */
    } finally {
      if (running.current === mine) running.current = null;
    }
  }, [slug, runId]);

  /** Start over from the first line (another filter, or after the live socket dropped lines). */
  const reload = useCallback(async () => {
    generation.current += 1;
    setLines([]);
    setLoaded(false);
    last.current = null;
    await poll();
  }, [poll]);

  useEffect(() => {
    void reload();
  }, [reload, levelGte, taskRunId, search]);

  return { lines, denied, loaded, poll, reload };
}
