/** Types and GraphQL operations for flows, runs and agents (the `orchestration(workspace:)` root). */

import { graphql, mutate, type UserError } from "./graphql";
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
}

export interface EdgeSpec {
  upstream: string;
  downstream: string;
  key?: string | null;
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
  scheduledStart: string;
  startTime: string | null;
  endTime: string | null;
  flow: { id: string; name: string };
  agent: { name: string } | null;
}

export interface Agent {
  id: string;
  name: string;
  type: string;
  labels: string[];
  version: string;
  status: "healthy" | "unhealthy" | "offline" | string;
  lastHeartbeatAt: string | null;
  lastPollAt: string | null;
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
}

export interface FlowDetail {
  id: string;
  name: string;
  description: string;
  project: { id: string; name: string };
  activeVersion: FlowVersion | null;
  versions: { id: string; version: number; createdAt: string; isArchived: boolean }[];
  schedules: Schedule[];
  recentRuns: RunSummary[];
}

export interface TaskRun {
  id: string;
  taskKey: string;
  mapIndex: number;
  stateType: StateType;
  stateName: string;
  startTime: string | null;
  endTime: string | null;
  attempt: number;
}

export interface LogLine {
  sequence: number;
  level: number;
  timestamp: string;
  logger: string;
  message: string;
}

export interface RunDetail extends RunSummary {
  stateMessage: string;
  stateVersion: number;
  parameters: Record<string, unknown>;
  labels: string[];
  attempt: number;
  createdByKind: string;
  flowVersion: { id: string; version: number; tasks: TaskSpec[]; edges: EdgeSpec[] };
  stateHistory: { type: StateType; name: string; message: string; timestamp: string }[];
  taskRuns: TaskRun[];
}

interface Payload {
  errors?: UserError[] | null;
}

const ERRORS = "errors { code message field }";
const RUN_SUMMARY = "id name stateType stateName scheduledStart startTime endTime flow { id name } agent { name }";
const AGENT_FIELDS = "id name type labels version status lastHeartbeatAt lastPollAt";
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
      id name description project { id name }
      activeVersion { id version createdAt isArchived tasks edges parameters labels storage runConfig schedule }
      versions { id version createdAt isArchived }
      schedules { id kind cron intervalSeconds rrule timezone isActive }
      recentRuns(first: 10) { ${RUN_SUMMARY} } } } }`,
    { slug, id },
  );
  return data.flow;
}

export async function fetchRun(slug: string, id: string): Promise<RunDetail | null> {
  const data = await root<{ flowRun: RunDetail | null }>(
    `query FlowRun($slug: String!, $id: ID!) { orchestration(workspace: $slug) { flowRun(id: $id) {
      ${RUN_SUMMARY} stateMessage stateVersion parameters labels attempt createdByKind
      flowVersion { id version tasks edges }
      stateHistory { type name message timestamp }
      taskRuns { id taskKey mapIndex stateType stateName startTime endTime attempt } } } }`,
    { slug, id },
  );
  return data.flowRun;
}

export async function fetchLogs(slug: string, id: string, afterSequence: number | null): Promise<LogLine[] | null> {
  const { data } = await graphql<Root<{ flowRun: { logs: LogLine[] | null } | null }>>(
    `query FlowRunLogs($slug: String!, $id: ID!, $after: Float) { orchestration(workspace: $slug) {
      flowRun(id: $id) { id logs(first: 200, afterSequence: $after) { sequence level timestamp logger message } } } }`,
    { slug, id, after: afterSequence },
  );
  return data.orchestration?.flowRun?.logs ?? null;
}

export interface RunFilter {
  flowId?: string;
  stateTypes?: StateType[];
  stateName?: string;
  labels?: string[];
}

export async function fetchRuns(
  slug: string,
  filter: RunFilter,
  after: string | null,
  first = 25,
): Promise<{ runs: RunSummary[]; pageInfo: PageInfo }> {
  const data = await root<{ flowRuns: { edges: { node: RunSummary }[]; pageInfo: PageInfo } | null }>(
    `query FlowRuns($slug: String!, $filter: FlowRunFilter, $after: String, $first: Int) { orchestration(workspace: $slug) {
      flowRuns(filter: $filter, first: $first, after: $after) { edges { node { ${RUN_SUMMARY} } }
      pageInfo { hasNextPage endCursor } } } }`,
    { slug, filter, after, first },
  );
  if (!data.flowRuns) throw new Error("The runs could not be loaded.");
  return { runs: data.flowRuns.edges.map((e) => e.node), pageInfo: data.flowRuns.pageInfo };
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

async function runAction(name: string, workspace: string, id: string): Promise<void> {
  await mutate(
    `mutation RunAction($workspace: String!, $id: ID!) { ${name}(workspace: $workspace, id: $id) { ${ERRORS} } }`,
    { workspace, id },
    name,
  );
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
