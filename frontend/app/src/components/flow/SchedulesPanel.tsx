/** A flow's schedules: when each fires next, and (Developers and up) pausing or resuming it; and
 * why they create no runs while the plan's runs for the period are used up. */

import { useState } from "react";
import { Link } from "react-router";

import { formatCount, runsExhausted, type Usage } from "../../api/billing";
import { errorMessage } from "../../api/graphql";
import { setSchedulePaused, type Schedule } from "../../api/orchestration";
import { Alert, EmptyState, formatDate, Time } from "../ui";

export function describeSchedule(s: Schedule): string {
  if (s.kind === "cron") return `cron ${s.cron}`;
  if (s.kind === "interval" && s.intervalSeconds) {
    const n = s.intervalSeconds;
    if (n % 86400 === 0) return `every ${n / 86400} day(s)`;
    if (n % 3600 === 0) return `every ${n / 3600} hour(s)`;
    if (n % 60 === 0) return `every ${n / 60} minute(s)`;
    return `every ${n} seconds`;
  }
  return s.rrule ? `rrule ${s.rrule}` : s.kind;
}

export function SchedulesPanel({
  slug,
  flowId,
  schedules,
  canEdit,
  onChanged,
  usage = null,
}: {
  slug: string;
  flowId: string;
  schedules: Schedule[];
  canEdit: boolean;
  onChanged: () => Promise<void>;
  usage?: Usage | null;
}) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (schedules.length === 0) return <EmptyState>No schedule: this flow runs when started.</EmptyState>;

  const toggle = async (s: Schedule) => {
    setBusy(s.id);
    setError(null);
    try {
      await setSchedulePaused(slug, flowId, s.id, s.isActive);
      await onChanged();
    } catch (err) {
      setError(errorMessage(err));
    }
    setBusy(null);
  };

  const stopped = runsExhausted(usage) && schedules.some((s) => s.isActive);
  return (
    <>
      {error ? <Alert kind="error">{error}</Alert> : null}
      {stopped && usage ? (
        <div className="alert alert-warning" role="status" data-testid="schedules-quota-note">
          <p>
            <strong>Schedules are not creating runs:</strong> the {usage.planName ?? "current"} plan's{" "}
            {formatCount(usage.runsLimit ?? 0)} runs for this period are used (until {formatDate(usage.periodEnd)}).{" "}
            <Link to={`/w/${slug}/billing`}>Upgrade in Billing</Link>.
          </p>
        </div>
      ) : null}
      <ul className="schedule-list">
        {schedules.map((s) => (
          <li key={s.id} data-testid="schedule" data-active={s.isActive}>
            <div className="schedule-head">
              <code>{describeSchedule(s)}</code> <span className="muted">({s.timezone})</span>{" "}
              {s.isActive ? <span className="badge badge-status-active">Active</span> : <span className="badge">Paused</span>}
              {canEdit ? (
                <button type="button" className="btn btn-secondary btn-small" disabled={busy !== null}
                  onClick={() => void toggle(s)}>
                  {s.isActive ? "Pause" : "Resume"}
                </button>
              ) : null}
            </div>
            {s.isActive ? (
              <div className="next-runs">
                <span className="muted">Next runs:</span>
                {s.nextRuns.length === 0 ? (
                  <span className="muted"> none planned.</span>
                ) : (
                  <ol data-testid="next-runs">
                    {s.nextRuns.map((t) => (
                      <li key={t}>
                        <Time value={t} />
                      </li>
                    ))}
                  </ol>
                )}
              </div>
            ) : (
              <p className="muted" data-testid="paused-note">
                Paused: no runs are planned until it is resumed (the pause is not caught up).
              </p>
            )}
          </li>
        ))}
      </ul>
    </>
  );
}
