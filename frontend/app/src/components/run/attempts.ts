/** A task run's attempts, read from its state history: each RUNNING state starts one, and the next
 * state ends it (a retry passes through AwaitingRetry, so an attempt that failed ends there). */

import type { StateType, TaskRun } from "../../api/orchestration";

export interface Attempt {
  number: number;
  start: string;
  /** Null while it runs. */
  end: string | null;
  /** The state it ended in (null while it runs). */
  outcome: { type: StateType; name: string } | null;
}

export function attemptsOf(taskRun: TaskRun): Attempt[] {
  const attempts: Attempt[] = [];
  let open: Attempt | null = null;
  for (const s of taskRun.stateHistory) {
    if (s.type === "RUNNING") {
      if (open) continue; // a repeated RUNNING (a resumed report) is the same attempt
      open = { number: attempts.length + 1, start: s.timestamp, end: null, outcome: null };
      attempts.push(open);
    } else if (open) {
      open.end = s.timestamp;
      open.outcome = { type: s.type, name: s.name };
      open = null;
    }
  }
  // The history arrives with the refetch after a live state change: until then an open attempt
  // of a task run that has moved on ends in its current state.
  if (open && taskRun.stateType !== "RUNNING") {
    open.outcome = { type: taskRun.stateType, name: taskRun.stateName };
  }
  // A run reported without its history (older rows): one attempt from its start and end times.
  if (attempts.length === 0 && taskRun.startTime) {
    attempts.push({
      number: 1,
      start: taskRun.startTime,
      end: taskRun.endTime,
      outcome: taskRun.endTime ? { type: taskRun.stateType, name: taskRun.stateName } : null,
    });
  }
  return attempts;
}

/** An attempt that ended in AwaitingRetry failed (the engine turned its FAILED into a retry). */
export function outcomeColourType(outcome: Attempt["outcome"]): StateType {
  if (!outcome) return "RUNNING";
  if (outcome.name === "AwaitingRetry" || outcome.name === "Retrying") return "FAILED";
  return outcome.type;
}
