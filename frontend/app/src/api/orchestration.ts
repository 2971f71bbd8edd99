/** Types and GraphQL operations for flows, runs and agents (the `orchestration(workspace:)` root). */

import { graphql, mutate, type UserError } from "./graphql";
import type { FlowRunFilter } from "./schema.generated";
import type { PageInfo } from "./types";

export type StateType =
  | "SCHEDULED"
  | "PENDING"
  | "RUNNING"
  | "COMPLETED"
  | "FAILED"
  | "CANCELLING"
  | "CANCELLED"
  | "CRASHED"
  | "PAUSED";

export const STATE_TYPES: StateType[] = [
  "SCHEDULED",
  "PENDING",
  "RUNNING",
  "COMPLETED",
  "FAILED",
  "CANCELLING",
  "CANCELLED",
  "CRASHED",
  "PAUSED",
];

export const TERMINAL_STATES: StateType[] = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"];
export const RESTARTABLE_STATES: StateType[] = ["FAILED", "CRASHED", "CANCELLED"];

export type ParameterType = "str" | "int" | "float" | "bool" | "list" | "dict" | "any";

export interface ParameterSpec {
  name: string;
  type?: ParameterType | string;
  default?: unknown;
  required?: boolean;
}

export interface TaskSpec {
  key: string;
  name?: string;
  tags?: string[];
  retries?: number;
  /** Registered by the SDK: the task runs once per item of a mapped input. */
  mapped?: boolean;
  /** The trigger's function name (e.g. "all_successful", "not_all_skipped"). */
  trigger?: string;
}

export interface EdgeSpec {
  upstream: string;
  downstream: string;
  key?: string | null;
  mapped?: boolean;
}

export interface FlowVersion {
  id: string;
  version: number;
  createdAt: string;
  isArchived: boolean;
  tasks: TaskSpec[];
  edges: EdgeSpec[];
  parameters: ParameterSpec[];
  labels: string[];
  storage: Record<string, unknown>;
  runConfig: Record<string, unknown>;
  schedule: unknown;
}

export interface RunSummary {
  id: string;
  name: string;
  stateType: StateType;
  stateName: string;
  stateTimestamp: string;
  scheduledStart: string;
  startTime: string | null;
  endTime: string | null;
  /** Why no agent takes this SCHEDULED run now; null when one does. */
  noLiveAgentReason: string | null;
  flow: { id: string; name: string };
  agent: { name: string } | null;
}

export interface Agent {
  id: string;
  name: string;
  type: string;
  labels: string[];
  version: string;
  status: "healthy" | "unhealthy" | "offline" | "stopped" | string;
  lastHeartbeatAt: string | null;
  lastPollAt: string | null;
  serviceAccountId: string | null;
}

export interface Dashboard {
  now: string;
  countsByState: { stateType: StateType; count: number }[];
  runsByStateOverTime: { bucket: string; stateType: StateType; count: number }[];
  lateRuns: RunSummary[];
  failingRuns: RunSummary[];
  upcomingRuns: RunSummary[];
  agents: Agent[];
}

export interface ProjectWithFlows {
  id: string;
  name: string;
  description: string;
  isRestricted: boolean;
  flows: { id: string; name: string }[];
}

export interface Schedule {
  id: string;
  kind: string;
  cron: string;
  intervalSeconds: number | null;
  rrule: string;
  timezone: string;
  isActive: boolean;
  /** The next fire times (empty while paused). */
  nextRuns: string[];
}

export interface FlowDetail {
  id: string;
  name: string;
  description: string;
  project: { id: string; name: string };
  activeVersion: FlowVersion | null;
  /** The version pinned as the active one; null when the newest unarchived is active. */
  pinnedVersionId: string | null;
  versions: { id: string; version: number; createdAt: string; isArchived: boolean }[];
  schedules: Schedule[];
  recentRuns: RunSummary[];
}

export interface StateRecord {
  type: StateType;
  name: string;
  message: string;
  timestamp: string;
}

export interface TaskRun {
  id: string;
  taskKey: string;
  mapIndex: number;
  stateType: StateType;
  stateName: string;
  stateMessage: string;
  stateTimestamp: string;
  startTime: string | null;
  endTime: string | null;
  attempt: number;
  tags: string[];
  /** Oldest first; each RUNNING state starts an attempt. */
  stateHistory: StateRecord[];
}

export interface LogLine {
  sequence: number;
  level: number;
  timestamp: string;
  logger: string;
  message: string;
  taskRunId: string | null;
}

/** Server-side log filters (the GraphQL `logs` arguments and the download's query). */
export interface LogFilter {
  levelGte?: number | null;
  taskRunId?: string | null;
  search?: string | null;
}

/** A run linked to another as its parent or child (flow of flows). */
export type LinkedRun = Omit<RunSummary, "noLiveAgentReason" | "agent">;

/** How many child runs the run page lists (the newest). */
export const CHILD_RUNS_SHOWN = 50;

export interface RunDetail extends RunSummary {
  /** The run that started this one; null when none did or it is hidden from the viewer. */
  parentFlowRun: LinkedRun | null;
  parentTaskRunId: string | null;
  /** The newest runs this one started (at most CHILD_RUNS_SHOWN). */
  childFlowRuns: LinkedRun[];
  stateMessage: string;
  stateVersion: number;
  parameters: Record<string, unknown>;
  labels: string[];
  attempt: number;
  createdByKind: string;
  flowVersion: { id: string; version: number; tasks: TaskSpec[]; edges: EdgeSpec[]; parameters: ParameterSpec[] };
  stateHistory: StateRecord[];
  taskRuns: TaskRun[];
}

interface Payload {
  errors?: UserError[] | null;
}

const ERRORS = "errors { code message field }";
const RUN_SUMMARY =
  "id name stateType stateName stateTimestamp scheduledStart startTime endTime noLiveAgentReason flow { id name } agent { name }";
const AGENT_FIELDS = "id name type labels version status lastHeartbeatAt lastPollAt serviceAccountId";
const MISSING = "This workspace does not exist, or you are not a member of it.";

type Root<T> = { orchestration: T | null };

async function root<T>(query: string, variables: Record<string, unknown>): Promise<T> {
  const { data, errors } = await graphql<Root<T>>(query, variables);
  if (!data.orchestration) throw new Error(errors.map((e) => e.message).join(" ") || MISSING);
  return data.orchestration;
}

export async function fetchDashboard(slug: string, hours: number): Promise<Dashboard> {
  const data = await root<{ dashboard: Dashboard }>(
    `query Dashboard($slug: String!, $hours: Int!) { orchestration(workspace: $slug) { dashboard {
      now countsByState(hours: $hours) { stateType count }
      runsByStateOverTime(hours: $hours) { bucket stateType count }
      lateRuns(first: 10) { ${RUN_SUMMARY} } failingRuns(first: 10) { ${RUN_SUMMARY} }
      upcomingRuns(first: 10) { ${RUN_SUMMARY} } agents { ${AGENT_FIELDS} } } } }`,
    { slug, hours },
  );
  return data.dashboard;
}

export async function fetchProjects(slug: string): Promise<ProjectWithFlows[]> {
  const data = await root<{ projects: ProjectWithFlows[] | null }>(
    `query Projects($slug: String!) { orchestration(workspace: $slug) {
      projects { id name description isRestricted flows { id name } } } }`,
    { slug },
  );
  return data.projects ?? [];
}

export async function fetchFlow(slug: string, id: string): Promise<FlowDetail | null> {
  const data = await root<{ flow: FlowDetail | null }>(
    `query Flow($slug: String!, $id: ID!) { orchestration(workspace: $slug) { flow(id: $id) {
      id name description project { id name } pinnedVersionId
      activeVersion { id version createdAt isArchived tasks edges parameters labels storage runConfig schedule }
      versions { id version createdAt isArchived }
      schedules { id kind cron intervalSeconds rrule timezone isActive nextRuns(first: 5) }
      recentRuns(first: 40) { ${RUN_SUMMARY} } } } }`,
    { slug, id },
  );
  return data.flow;
}

export async function fetchRun(slug: string, id: string): Promise<RunDetail | null> {
  const data = await root<{ flowRun: RunDetail | null }>(
    `query FlowRun($slug: String!, $id: ID!, $children: Int!) { orchestration(workspace: $slug) { flowRun(id: $id) {
      ${RUN_SUMMARY} stateMessage stateVersion parameters labels attempt createdByKind
      parentFlowRun { ${LINKED_RUN} } parentTaskRunId childFlowRuns(first: $children) { ${LINKED_RUN} }
      flowVersion { id version tasks edges parameters }
      stateHistory { type name message timestamp }
      taskRuns { ${TASK_RUN_FIELDS} } } } }`,
    { slug, id, children: CHILD_RUNS_SHOWN },
  );
  return data.flowRun;
}

const LINKED_RUN = "id name stateType stateName stateTimestamp scheduledStart startTime endTime flow { id name }";

const TASK_RUN_FIELDS = `id taskKey mapIndex stateType stateName stateMessage stateTimestamp startTime endTime attempt tags
  stateHistory { type name message timestamp }`;

export async function fetchLogs(
  slug: string,
  id: string,
  afterSequence: number | null,
  filter: LogFilter = {},
): Promise<LogLine[] | null> {
  const { data } = await graphql<Root<{ flowRun: { logs: LogLine[] | null } | null }>>(
    `query FlowRunLogs($slug: String!, $id: ID!, $after: Float, $level: Int, $task: ID, $search: String) {
      orchestration(workspace: $slug) { flowRun(id: $id) { id
        logs(first: 200, afterSequence: $after, levelGte: $level, taskRunId: $task, search: $search) {
          sequence level timestamp logger message taskRunId } } } }`,
    {
      slug,
      id,
      after: afterSequence,
      level: filter.levelGte ?? null,
      task: filter.taskRunId ?? null,
      search: filter.search || null,
    },
  );
  return data.orchestration?.flowRun?.logs ?? null;
}

/** The REST download of a run's logs (every line matching the filter, as one file). */
export function logDownloadUrl(slug: string, runId: string, output: "text" | "jsonl", filter: LogFilter = {}): string {
  const query = new URLSearchParams({ output });
  if (filter.levelGte != null) query.set("level_gte", String(filter.levelGte));
  if (filter.taskRunId) query.set("task_run_id", filter.taskRunId);
  if (filter.search) query.set("search", filter.search);
  return `/api/v1/workspaces/${encodeURIComponent(slug)}/flow-runs/${runId}/logs/download/?${query}`;
}

/** The `flowRuns` filter: the schema's own input type (generated), so it cannot drift from it. */
export type RunFilter = FlowRunFilter;

export interface RunPage {
  runs: RunSummary[];
  pageInfo: PageInfo;
  totalCount: number;
}

/** A page of runs, newest first: after a cursor (`after`), or from an offset (`{ offset }`). */
export async function fetchRuns(
  slug: string,
  filter: RunFilter,
  after: string | null | { offset: number },
  first = 25,
): Promise<RunPage> {
  const position = after !== null && typeof after === "object" ? { offset: after.offset } : { after };
  const data = await root<{
    flowRuns: { edges: { node: RunSummary }[]; pageInfo: PageInfo; totalCount: number } | null;
  }>(
    `query FlowRuns($slug: String!, $filter: FlowRunFilter, $after: String, $offset: Int, $first: Int) {
      orchestration(workspace: $slug) {
      flowRuns(filter: $filter, first: $first, after: $after, offset: $offset) { edges { node { ${RUN_SUMMARY} } }
      pageInfo { hasNextPage endCursor } totalCount } } }`,
    { slug, filter, first, ...position },
  );
  if (!data.flowRuns) throw new Error("The runs could not be loaded.");
  return { runs: data.flowRuns.edges.map((e) => e.node), pageInfo: data.flowRuns.pageInfo, totalCount: data.flowRuns.totalCount };
}

export async function fetchAgents(slug: string): Promise<Agent[]> {
  const data = await root<{ agents: Agent[] | null }>(
    `query Agents($slug: String!) { orchestration(workspace: $slug) { agents { ${AGENT_FIELDS} } } }`,
    { slug },
  );
  return data.agents ?? [];
}

// --- Mutations --------------------------------------------------------------------------------

export async function quickRun(
  workspace: string,
  flowId: string,
  parameters: Record<string, unknown>,
  labels: string[] | null,
): Promise<string> {
  const payload = await mutate<Payload & { flowRun: { id: string } | null }>(
    `mutation QuickRun($workspace: String!, $flowId: ID!, $parameters: JSONString, $labels: [String!]) {
      quickRun(workspace: $workspace, flowId: $flowId, parameters: $parameters, labels: $labels) {
        flowRun { id } ${ERRORS} } }`,
    { workspace, flowId, parameters: JSON.stringify(parameters), labels },
    "quickRun",
  );
  if (!payload.flowRun) throw new Error("The run was not created.");
  return payload.flowRun.id;
}

// One document per action, each written out, so that every document can be checked against the schema.
const RUN_ACTIONS = {
  cancelFlowRun: `mutation CancelFlowRun($workspace: String!, $id: ID!) {
    cancelFlowRun(workspace: $workspace, id: $id) { ${ERRORS} } }`,
  restartFlowRun: `mutation RestartFlowRun($workspace: String!, $id: ID!) {
    restartFlowRun(workspace: $workspace, id: $id) { ${ERRORS} } }`,
  deleteFlowRun: `mutation DeleteFlowRun($workspace: String!, $id: ID!) {
    deleteFlowRun(workspace: $workspace, id: $id) { ${ERRORS} } }`,
};

async function runAction(name: keyof typeof RUN_ACTIONS, workspace: string, id: string): Promise<void> {
  await mutate(RUN_ACTIONS[name], { workspace, id }, name);
}

export const cancelRun = (workspace: string, id: string) => runAction("cancelFlowRun", workspace, id);
export const restartRun = (workspace: string, id: string) => runAction("restartFlowRun", workspace, id);
export const deleteRun = (workspace: string, id: string) => runAction("deleteFlowRun", workspace, id);

export async function markRun(workspace: string, id: string, stateType: StateType, message: string): Promise<void> {
  await mutate(
    `mutation MarkFlowRun($workspace: String!, $id: ID!, $stateType: String!, $message: String) {
      markFlowRun(workspace: $workspace, id: $id, stateType: $stateType, message: $message) { ${ERRORS} } }`,
    { workspace, id, stateType, message },
    "markFlowRun",
  );
}

// --- The flow page's and the projects list's actions ----------------------------------------------

export async function pinFlowVersion(workspace: string, flowId: string, versionId: string): Promise<void> {
  await mutate(
    `mutation PinFlowVersion($workspace: String!, $flowId: ID!, $versionId: ID!) {
      pinFlowVersion(workspace: $workspace, flowId: $flowId, versionId: $versionId) { ${ERRORS} } }`,
    { workspace, flowId, versionId },
    "pinFlowVersion",
  );
}

export async function unpinFlowVersion(workspace: string, flowId: string): Promise<void> {
  await mutate(
    `mutation UnpinFlowVersion($workspace: String!, $flowId: ID!) {
      unpinFlowVersion(workspace: $workspace, flowId: $flowId) { ${ERRORS} } }`,
    { workspace, flowId },
    "unpinFlowVersion",
  );
}

export async function setFlowVersionArchived(
  workspace: string,
  flowId: string,
  versionId: string,
  archived: boolean,
): Promise<void> {
  await mutate(
    `mutation SetFlowVersionArchived($workspace: String!, $flowId: ID!, $versionId: ID!, $archived: Boolean!) {
      setFlowVersionArchived(workspace: $workspace, flowId: $flowId, versionId: $versionId, archived: $archived) {
        ${ERRORS} } }`,
    { workspace, flowId, versionId, archived },
    "setFlowVersionArchived",
  );
}

export async function setSchedulePaused(workspace: string, flowId: string, id: string, paused: boolean): Promise<void> {
  await mutate(
    `mutation SetSchedulePaused($workspace: String!, $flowId: ID!, $id: ID!, $paused: Boolean!) {
      setSchedulePaused(workspace: $workspace, flowId: $flowId, id: $id, paused: $paused) { ${ERRORS} } }`,
    { workspace, flowId, id, paused },
    "setSchedulePaused",
  );
}

export interface ProjectInput {
  name?: string;
  description?: string;
  isRestricted?: boolean;
}

export async function createProject(workspace: string, input: ProjectInput & { name: string }): Promise<void> {
  await mutate(
    `mutation CreateProject($workspace: String!, $name: String!, $description: String, $isRestricted: Boolean) {
      createProject(workspace: $workspace, name: $name, description: $description, isRestricted: $isRestricted) {
        ${ERRORS} } }`,
    { workspace, ...input },
    "createProject",
  );
}

export async function updateProject(workspace: string, id: string, input: ProjectInput): Promise<void> {
  await mutate(
    `mutation UpdateProject($workspace: String!, $id: ID!, $name: String, $description: String, $isRestricted: Boolean) {
      updateProject(workspace: $workspace, id: $id, name: $name, description: $description, isRestricted: $isRestricted) {
        ${ERRORS} } }`,
    { workspace, id, ...input },
    "updateProject",
  );
}
