/** Types and GraphQL operations for SLA alerts: policies, incidents, alert badges, notification
 * channels and their delivery log (`orchestration(workspace:) { alerts { … } }`). */

import { graphql, mutate, type UserError } from "./graphql";
import type { StateType } from "./orchestration";

export type PolicyKind = "start" | "duration" | "failure" | "freshness" | "agent" | "prestart";
export type BreachAction = "none" | "cancel_run" | "fail_run" | "pause_schedules";
export type Severity = "critical" | "warning";
export type IncidentStatus = "open" | "acknowledged" | "resolved";
export type ChannelKind = "email" | "webhook" | "slack" | "pagerduty";

export const POLICY_KINDS: { value: PolicyKind; label: string; hint: string }[] = [
  { value: "start", label: "Start within", hint: "A run must start within the threshold of its scheduled time." },
  { value: "duration", label: "Finish within", hint: "A run must finish within the threshold of starting." },
  { value: "failure", label: "Failures", hint: "A run ends Failed or Crashed (after its retries), or N in a row do." },
  { value: "freshness", label: "Freshness", hint: "The flow must have a successful run at least this often." },
  { value: "agent", label: "Agent coverage", hint: "A healthy agent must cover these labels." },
  { value: "prestart", label: "Pre-start failure", hint: "A run failed before its code started (claim, image, storage)." },
];

export const BREACH_ACTIONS: { value: BreachAction; label: string }[] = [
  { value: "none", label: "Alert only" },
  { value: "cancel_run", label: "Cancel the run" },
  { value: "fail_run", label: "Mark the run failed" },
  { value: "pause_schedules", label: "Pause the flow's schedules" },
];

export const CHANNEL_KINDS: { value: ChannelKind; label: string }[] = [
  { value: "email", label: "E-mail" },
  { value: "webhook", label: "Webhook" },
  { value: "slack", label: "Slack" },
  { value: "pagerduty", label: "PagerDuty" },
];

/** Kinds whose threshold is a time (the others have none). */
export const TIMED_KINDS: PolicyKind[] = ["start", "duration", "freshness", "agent"];

export function kindLabel(kind: string): string {
  return POLICY_KINDS.find((k) => k.value === kind)?.label ?? kind;
}

export function actionLabel(action: string): string {
  return BREACH_ACTIONS.find((a) => a.value === action)?.label ?? action;
}

export function channelKindLabel(kind: string): string {
  return CHANNEL_KINDS.find((k) => k.value === kind)?.label ?? kind;
}

/** "15 min", "2 h", "1 day", "90 s": a threshold in the largest unit that divides it. */
export function humanSeconds(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds >= 86400 && seconds % 86400 === 0) return `${seconds / 86400} ${seconds === 86400 ? "day" : "days"}`;
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  if (seconds >= 3600) return `${(seconds / 3600).toFixed(1)} h`;
  if (seconds >= 60) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.round(seconds)} s`;
}

export interface SlaPolicy {
  id: string;
  name: string;
  description: string;
  kind: PolicyKind;
  projectId: string | null;
  projectName: string | null;
  flowId: string | null;
  flowName: string | null;
  labels: string[];
  thresholdSeconds: number | null;
  consecutiveFailures: number;
  predictive: boolean;
  historySize: number;
  agentLabels: string[];
  action: BreachAction;
  severity: Severity;
  isPaused: boolean;
  fromRegistration: boolean;
  channelIds: string[];
  activeIncidentCount: number;
  createdAt: string;
  updatedAt: string;
}

/** What the form sends (create and update). */
export interface PolicyInput {
  name: string;
  description: string;
  kind: PolicyKind;
  projectId: string | null;
  flowId: string | null;
  labels: string[];
  thresholdSeconds: number | null;
  consecutiveFailures: number;
  predictive: boolean;
  historySize: number;
  agentLabels: string[];
  action: BreachAction;
  severity: Severity;
  channelIds: string[];
}

export interface PolicyPreview {
  flows: { id: string; name: string }[];
  flowCount: number;
  p95: { flowId: string; flowName: string; p95Seconds: number | null; sampleSize: number }[];
}

export interface IncidentRunRef {
  id: string;
  name: string;
  stateType: StateType;
  stateName: string;
  scheduledStart: string;
}

export interface IncidentEvent {
  kind: string;
  message: string;
  actor: string;
  at: string;
}

export interface IncidentSummary {
  id: string;
  policyId: string | null;
  policyName: string;
  kind: PolicyKind;
  severity: Severity;
  title: string;
  cause: string;
  status: IncidentStatus;
  snoozedUntil: string | null;
  openedAt: string;
  acknowledgedAt: string | null;
  resolvedAt: string | null;
  flowId: string | null;
  flowName: string | null;
  runCount: number;
}

export interface IncidentDetail extends IncidentSummary {
  details: unknown;
  acknowledgedBy: string;
  resolvedBy: string;
  runs: IncidentRunRef[];
  events: IncidentEvent[];
}

export interface AlertBadge {
  flowId: string;
  activeCount: number;
  severity: Severity;
}

export interface Channel {
  id: string;
  name: string;
  kind: ChannelKind;
  target: string;
  isEnabled: boolean;
  createdAt: string;
  lastDeliveryStatus: string | null;
  /** Admins only (null for others). */
  config: unknown;
}

export interface DeliveryAttempt {
  number: number;
  at: string;
  statusCode: number | null;
  error: string;
  durationMs: number;
  request: unknown;
  responseExcerpt: string;
}

export interface Delivery {
  id: string;
  channelId: string;
  channelName: string;
  incidentId: string | null;
  incidentTitle: string | null;
  event: string;
  status: string;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string;
  createdAt: string;
  deliveredAt: string | null;
  attemptRows: DeliveryAttempt[];
}

interface Payload {
  errors?: UserError[] | null;
}

const ERRORS = "errors { code message field }";
const MISSING = "This workspace does not exist, or you are not a member of it.";
const POLICY_FIELDS = `id name description kind projectId projectName flowId flowName labels thresholdSeconds
  consecutiveFailures predictive historySize agentLabels action severity isPaused fromRegistration channelIds
  activeIncidentCount createdAt updatedAt`;
const INCIDENT_FIELDS = `id policyId policyName kind severity title cause status snoozedUntil openedAt acknowledgedAt
  resolvedAt flowId flowName runCount`;
const CHANNEL_FIELDS = "id name kind target isEnabled createdAt lastDeliveryStatus config";
const DELIVERY_FIELDS = `id channelId channelName incidentId incidentTitle event status attempts lastStatusCode
  lastError createdAt deliveredAt attemptRows { number at statusCode error durationMs request responseExcerpt }`;

type Root<T> = { orchestration: { alerts: T | null } | null };

async function alerts<T>(query: string, variables: Record<string, unknown>): Promise<T> {
  const { data, errors } = await graphql<Root<T>>(query, variables);
  if (!data.orchestration) throw new Error(errors.map((e) => e.message).join(" ") || MISSING);
  if (!data.orchestration.alerts) throw new Error(errors.map((e) => e.message).join(" ") || "Alerts could not be loaded.");
  return data.orchestration.alerts;
}

/** JSON fields may come back as a JSON string (graphene's JSONString) or as an object. */
export function parseJson(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

// --- Policies ---------------------------------------------------------------------------------

export async function fetchPolicies(slug: string): Promise<SlaPolicy[]> {
  const data = await alerts<{ policies: SlaPolicy[] | null }>(
    `query SlaPolicies($slug: String!) { orchestration(workspace: $slug) { alerts {
      policies { ${POLICY_FIELDS} } } } }`,
    { slug },
  );
  return data.policies ?? [];
}

export async function fetchPolicy(slug: string, id: string): Promise<SlaPolicy | null> {
  const data = await alerts<{ policy: SlaPolicy | null }>(
    `query SlaPolicy($slug: String!, $id: ID!) { orchestration(workspace: $slug) { alerts {
      policy(id: $id) { ${POLICY_FIELDS} } } } }`,
    { slug, id },
  );
  return data.policy;
}

export interface PreviewInput {
  kind: PolicyKind;
  projectId: string | null;
  flowId: string | null;
  historySize: number;
}

export async function fetchPolicyPreview(slug: string, input: PreviewInput): Promise<PolicyPreview> {
  const { data, errors } = await graphql<Root<{ policyPreview: PolicyPreview | null }>>(
    `query SlaPolicyPreview($slug: String!, $input: PolicyPreviewInput!) { orchestration(workspace: $slug) {
      alerts { policyPreview(input: $input) { flows { id name } flowCount
        p95 { flowId flowName p95Seconds sampleSize } } } } }`,
    { slug, input },
  );
  const preview = data.orchestration?.alerts?.policyPreview;
  // A scope the server refuses is an error on this field: say why instead of an empty preview.
  if (!preview) throw new Error(errors.map((e) => e.message).join(" ") || "The preview could not be computed.");
  return preview;
}

type PolicyPayload = Payload & { policy: SlaPolicy | null };

export async function createPolicy(workspace: string, input: PolicyInput): Promise<SlaPolicy> {
  const payload = await mutate<PolicyPayload>(
    `mutation CreateSlaPolicy($workspace: String!, $input: SlaPolicyInput!) {
      createSlaPolicy(workspace: $workspace, input: $input) { policy { ${POLICY_FIELDS} } ${ERRORS} } }`,
    { workspace, input },
    "createSlaPolicy",
  );
  if (!payload.policy) throw new Error("The policy was not created.");
  return payload.policy;
}

export async function updatePolicy(workspace: string, id: string, input: PolicyInput): Promise<SlaPolicy> {
  const payload = await mutate<PolicyPayload>(
    `mutation UpdateSlaPolicy($workspace: String!, $id: ID!, $input: SlaPolicyInput!) {
      updateSlaPolicy(workspace: $workspace, id: $id, input: $input) { policy { ${POLICY_FIELDS} } ${ERRORS} } }`,
    { workspace, id, input },
    "updateSlaPolicy",
  );
  if (!payload.policy) throw new Error("The policy was not saved.");
  return payload.policy;
}

export async function setPolicyPaused(workspace: string, id: string, paused: boolean): Promise<void> {
  await mutate(
    `mutation SetSlaPolicyPaused($workspace: String!, $id: ID!, $paused: Boolean!) {
      setSlaPolicyPaused(workspace: $workspace, id: $id, paused: $paused) { ${ERRORS} } }`,
    { workspace, id, paused },
    "setSlaPolicyPaused",
  );
}

export async function deletePolicy(workspace: string, id: string): Promise<void> {
  await mutate(
    `mutation DeleteSlaPolicy($workspace: String!, $id: ID!) {
      deleteSlaPolicy(workspace: $workspace, id: $id) { ${ERRORS} } }`,
    { workspace, id },
    "deleteSlaPolicy",
  );
}

// --- Incidents --------------------------------------------------------------------------------

/** "active" = open and acknowledged. */
export type IncidentFilter = "active" | IncidentStatus | "";

export async function fetchIncidents(
  slug: string,
  filter: { status?: IncidentFilter; flowId?: string; flowRunId?: string; policyId?: string },
  first = 100,
): Promise<IncidentSummary[]> {
  const data = await alerts<{ incidents: IncidentSummary[] | null }>(
    `query Incidents($slug: String!, $status: String, $flowId: ID, $flowRunId: ID, $policyId: ID, $first: Int) {
      orchestration(workspace: $slug) { alerts {
        incidents(status: $status, flowId: $flowId, flowRunId: $flowRunId, policyId: $policyId, first: $first) {
          ${INCIDENT_FIELDS} } } } }`,
    {
      slug,
      status: filter.status || null,
      flowId: filter.flowId ?? null,
      flowRunId: filter.flowRunId ?? null,
      policyId: filter.policyId ?? null,
      first,
    },
  );
  return data.incidents ?? [];
}

export async function fetchIncident(slug: string, id: string): Promise<IncidentDetail | null> {
  const data = await alerts<{ incident: IncidentDetail | null }>(
    `query Incident($slug: String!, $id: ID!) { orchestration(workspace: $slug) { alerts { incident(id: $id) {
      ${INCIDENT_FIELDS} details acknowledgedBy resolvedBy
      runs(first: 200) { id name stateType stateName scheduledStart }
      events { kind message actor at } } } } }`,
    { slug, id },
  );
  return data.incident;
}

export async function fetchBadges(slug: string): Promise<AlertBadge[]> {
  const data = await alerts<{ badges: AlertBadge[] | null }>(
    `query AlertBadges($slug: String!) { orchestration(workspace: $slug) { alerts {
      badges { flowId activeCount severity } } } }`,
    { slug },
  );
  return data.badges ?? [];
}

// One document per action, each written out, so that every document can be checked against the schema.
const INCIDENT_ACTIONS = {
  acknowledgeIncident: `mutation AcknowledgeIncident($workspace: String!, $id: ID!) {
    acknowledgeIncident(workspace: $workspace, id: $id) { ${ERRORS} } }`,
  resolveIncident: `mutation ResolveIncident($workspace: String!, $id: ID!) {
    resolveIncident(workspace: $workspace, id: $id) { ${ERRORS} } }`,
  snoozeIncident: `mutation SnoozeIncident($workspace: String!, $id: ID!, $minutes: Int!) {
    snoozeIncident(workspace: $workspace, id: $id, minutes: $minutes) { ${ERRORS} } }`,
};

async function incidentAction(name: keyof typeof INCIDENT_ACTIONS, variables: Record<string, unknown>): Promise<void> {
  await mutate(INCIDENT_ACTIONS[name], variables, name);
}

export const acknowledgeIncident = (workspace: string, id: string) =>
  incidentAction("acknowledgeIncident", { workspace, id });
export const resolveIncident = (workspace: string, id: string) => incidentAction("resolveIncident", { workspace, id });
export const snoozeIncident = (workspace: string, id: string, minutes: number) =>
  incidentAction("snoozeIncident", { workspace, id, minutes });

// --- Channels and deliveries ------------------------------------------------------------------

export async function fetchChannels(slug: string): Promise<Channel[]> {
  const data = await alerts<{ channels: Channel[] | null }>(
    `query NotificationChannels($slug: String!) { orchestration(workspace: $slug) { alerts {
      channels { ${CHANNEL_FIELDS} } } } }`,
    { slug },
  );
  return (data.channels ?? []).map((c) => ({ ...c, config: parseJson(c.config) }));
}

export async function fetchDeliveries(
  slug: string,
  filter: { channelId?: string; incidentId?: string },
  first = 50,
): Promise<Delivery[]> {
  const data = await alerts<{ deliveries: Delivery[] | null }>(
    `query NotificationDeliveries($slug: String!, $channelId: ID, $incidentId: ID, $first: Int) {
      orchestration(workspace: $slug) { alerts {
        deliveries(channelId: $channelId, incidentId: $incidentId, first: $first) { ${DELIVERY_FIELDS} } } } }`,
    { slug, channelId: filter.channelId ?? null, incidentId: filter.incidentId ?? null, first },
  );
  return (data.deliveries ?? []).map((d) => ({
    ...d,
    attemptRows: (d.attemptRows ?? []).map((a) => ({ ...a, request: parseJson(a.request) })),
  }));
}

export interface ChannelInput {
  name: string;
  kind: ChannelKind;
  /** email: {addresses}; webhook/slack: {url}; pagerduty: {routing_key}. */
  config: Record<string, unknown>;
  isEnabled?: boolean;
}

type ChannelPayload = Payload & { channel: (Channel & { secret: string | null }) | null };

export async function createChannel(
  workspace: string,
  input: ChannelInput,
): Promise<{ channel: Channel; secret: string | null }> {
  const payload = await mutate<ChannelPayload>(
    `mutation CreateNotificationChannel($workspace: String!, $name: String!, $kind: String!, $config: JSONString!,
      $isEnabled: Boolean) {
      createNotificationChannel(workspace: $workspace, name: $name, kind: $kind, config: $config, isEnabled: $isEnabled) {
        channel { ${CHANNEL_FIELDS} secret } ${ERRORS} } }`,
    { workspace, name: input.name, kind: input.kind, config: JSON.stringify(input.config), isEnabled: input.isEnabled ?? true },
    "createNotificationChannel",
  );
  if (!payload.channel) throw new Error("The channel was not created.");
  const { secret, ...channel } = payload.channel;
  return { channel: { ...channel, config: parseJson(channel.config) }, secret: secret || null };
}

export async function setChannelEnabled(workspace: string, id: string, isEnabled: boolean): Promise<void> {
  await mutate(
    `mutation SetNotificationChannelEnabled($workspace: String!, $id: ID!, $isEnabled: Boolean) {
      updateNotificationChannel(workspace: $workspace, id: $id, isEnabled: $isEnabled) { ${ERRORS} } }`,
    { workspace, id, isEnabled },
    "updateNotificationChannel",
  );
}

export async function deleteChannel(workspace: string, id: string): Promise<void> {
  await mutate(
    `mutation DeleteNotificationChannel($workspace: String!, $id: ID!) {
      deleteNotificationChannel(workspace: $workspace, id: $id) { ${ERRORS} } }`,
    { workspace, id },
    "deleteNotificationChannel",
  );
}

export async function sendTestNotification(workspace: string, id: string): Promise<Delivery | null> {
  const payload = await mutate<Payload & { delivery: Delivery | null }>(
    `mutation SendTestNotification($workspace: String!, $id: ID!) {
      sendTestNotification(workspace: $workspace, id: $id) { delivery { ${DELIVERY_FIELDS} } ${ERRORS} } }`,
    { workspace, id },
    "sendTestNotification",
  );
  return payload.delivery;
}

/** The webhook's signing secret (Admins only; null for everyone else). */
export async function revealChannelSecret(slug: string, id: string): Promise<string> {
  const data = await alerts<{ channel: { secret: string | null } | null }>(
    `query NotificationChannelSecret($slug: String!, $id: ID!) { orchestration(workspace: $slug) { alerts {
      channel(id: $id) { id secret } } } }`,
    { slug, id },
  );
  if (!data.channel) throw new Error("This channel no longer exists.");
  if (!data.channel.secret) throw new Error("This channel has no signing secret, or your role cannot see it.");
  return data.channel.secret;
}
