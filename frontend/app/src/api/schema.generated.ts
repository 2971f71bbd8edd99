/* Generated from the server's GraphQL schema by `python manage.py graphql_typescript`: do not edit.
 * tests/test_graphql_documents.py fails when this file is out of date. */

/** Join the workspace an invitation sent to your email address is for. */
export interface AcceptInvitation {
  errors: Array<Error>;
  workspace: Workspace | null;
}

/** Say someone is on it (Developer and up). */
export interface AcknowledgeIncident {
  errors: Array<Error>;
  incident: Incident | null;
}

export interface Agent {
  id: string;
  name: string;
  /** process, docker or kubernetes. */
  type: string;
  labels: Array<string>;
  version: string;
  pollIntervalSeconds: number;
  /** healthy; unhealthy (heartbeats but its claim loop stopped polling); offline (no heartbeat); stopped (it shut down cleanly). */
  status: string;
  createdAt: string;
  lastHeartbeatAt: string | null;
  lastPollAt: string | null;
  /** The service account whose key registered the agent. */
  serviceAccountId: string | null;
}

export interface AgentRef {
  id: string;
  name: string;
}

export interface AlertBadge {
  flowId: string;
  /** Open or acknowledged incidents. */
  activeCount: number;
  /** The worst: critical, else warning. */
  severity: string;
}

/** One workspace's SLA policies, incidents and notification channels, as the viewer may see them. */
export interface Alerts {
  /** By name. */
  channels: Array<NotificationChannel>;
  /** One channel; null for any id you cannot see. */
  channel: NotificationChannel | null;
  /** The delivery log, newest first, with each delivery's attempts. */
  deliveries: Array<NotificationDelivery>;
  /** Policies you can see, by name. */
  policies: Array<SlaPolicy> | null;
  /** Null for any id you cannot see. */
  policy: SlaPolicy | null;
  /** What a policy with this scope would cover, before saving it. */
  policyPreview: PolicyPreview | null;
  /** Newest first. */
  incidents: Array<Incident> | null;
  /** Null for any id you cannot see. */
  incident: Incident | null;
  /** Flows with active incidents. */
  badges: Array<AlertBadge> | null;
}

/** An API key's metadata; the secret itself is only in the payload that created it. */
export interface ApiKey {
  id: string;
  name: string;
  /** user or service_account. */
  kind: string;
  /** The user's email or the service account's name. */
  owner: string;
  lookupPrefix: string;
  /** A narrower role for a user key; null means the owner's role. */
  role: string | null;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** The audit log, newest first. */
export interface AuditLogConnection {
  /** Pagination data for this connection. */
  pageInfo: PageInfo;
  /** Contains the nodes in this connection. */
  edges: Array<AuditLogEdge | null>;
}

/** A Relay edge containing a `AuditLog` and its cursor. */
export interface AuditLogEdge {
  /** The item at the end of the edge */
  node: AuditLogEntry | null;
  /** A cursor for use in pagination */
  cursor: string;
}

export interface AuditLogEntry {
  id: string;
  createdAt: string;
  actor: string;
  action: string;
  targetType: string;
  targetLabel: string;
  data: unknown | null;
  ipAddress: string | null;
}

export interface Billing {
  /** This billing period's usage against the limits. */
  usage: Usage;
}

/** A bulk action on runs (cancel, clear_late, mark) and its progress; the counts move with each batch (live: ``bulk_action.progress`` events). Once finished, done + skipped + failed = matched. */
export interface BulkAction {
  id: string;
  action: string;
  /** pending, running, finished or failed. */
  status: string;
  /** Runs the filter matched when it started. */
  matched: number;
  /** Runs changed. */
  done: number;
  /** Runs that no longer matched (they moved on meanwhile). */
  skipped: number;
  /** Runs the orchestration rules refused. */
  failed: number;
  error: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** Cancel a run: an agent's run goes to Cancelling until the agent confirms; one no agent holds is Cancelled at once. */
export interface CancelFlowRun {
  errors: Array<Error>;
  flowRun: FlowRun | null;
}

export interface ChangeMemberRole {
  errors: Array<Error>;
  member: Member | null;
}

/** A personal API key; the secret is shown in this payload only. */
export interface CreateApiKey {
  errors: Array<Error>;
  apiKey: ApiKey | null;
  secret: string | null;
}

/** Create a channel (Admin). A webhook channel's signing secret is in the answer. */
export interface CreateNotificationChannel {
  errors: Array<Error>;
  channel: NotificationChannel | null;
}

/** Create a project (Developer and up); names are unique in the workspace. */
export interface CreateProject {
  errors: Array<Error>;
  project: Project | null;
}

export interface CreateServiceAccount {
  errors: Array<Error>;
  serviceAccount: ServiceAccount | null;
}

/** A key for a service account; the secret is shown in this payload only. */
export interface CreateServiceAccountKey {
  errors: Array<Error>;
  apiKey: ApiKey | null;
  secret: string | null;
}

/** Create an SLA policy (Developer and up). */
export interface CreateSlaPolicy {
  errors: Array<Error>;
  policy: SlaPolicy | null;
}

/** Create a workspace with you as its Owner. */
export interface CreateWorkspace {
  errors: Array<Error>;
  workspace: Workspace | null;
}

export interface Dashboard {
  /** The server's clock, to align the chart's buckets. */
  now: string;
  /** Runs per state among those scheduled to start in the last `hours` hours or later. */
  countsByState: Array<StateCount>;
  /** Runs per hour of scheduled start and state, over the last `hours` hours; empty buckets left out. */
  runsByStateOverTime: Array<StateBucket>;
  lateRuns: Array<FlowRun>;
  failingRuns: Array<FlowRun>;
  upcomingRuns: Array<FlowRun>;
  agents: Array<Agent>;
}

/** Delete a run with its task runs, states and logs. */
export interface DeleteFlowRun {
  errors: Array<Error>;
  ok: boolean;
}

/** Delete a channel and its delivery log (Admin). */
export interface DeleteNotificationChannel {
  errors: Array<Error>;
  ok: boolean;
}

/** Deactivate a service account and revoke all its keys. */
export interface DeleteServiceAccount {
  errors: Array<Error>;
  ok: boolean;
}

/** Delete a policy; its open incidents are resolved and kept. */
export interface DeleteSlaPolicy {
  errors: Array<Error>;
  policy: SlaPolicy | null;
  ok: boolean;
}

/** Delete the workspace and everything in it (Owner); ``confirmSlug`` must repeat its slug. */
export interface DeleteWorkspace {
  errors: Array<Error>;
  ok: boolean;
}

export interface DeliveryAttempt {
  number: number;
  at: string;
  statusCode: number | null;
  error: string;
  durationMs: number;
  /** method, url (secrets masked), headers */
  request: unknown;
  responseExcerpt: string;
}

/** One problem with a mutation's input or with what it asked for. */
export interface Error {
  /** Stable, machine-readable: switch on this. */
  code: string;
  /** A sentence a person can act on. */
  message: string;
  /** The argument the problem is about, when there is one. */
  field: string | null;
}

export interface Flow {
  id: string;
  name: string;
  description: string;
  createdAt: string;
  concurrencyLimit: number | null;
  catchup: string;
  maxLatenessSeconds: number | null;
  project: ProjectRef;
  /** The pinned version, else the newest unarchived. */
  activeVersion: FlowVersion | null;
  /** The version pinned as the active one; null when none is. */
  pinnedVersionId: string | null;
  /** Newest first. */
  versions: Array<FlowVersion>;
  schedules: Array<Schedule>;
  recentRuns: Array<FlowRun>;
}

export interface FlowRef {
  id: string;
  name: string;
}

export interface FlowRun {
  id: string;
  name: string;
  stateType: string;
  stateName: string;
  stateMessage: string;
  stateTimestamp: string;
  stateVersion: number;
  parameters: unknown;
  labels: Array<string>;
  scheduledStart: string;
  startTime: string | null;
  endTime: string | null;
  createdAt: string;
  /** user, schedule or api. */
  createdByKind: string;
  attempt: number;
  cancellationRequested: boolean;
  agent: AgentRef | null;
  flow: FlowRef;
  flowVersion: FlowVersion;
  /** Oldest first. */
  stateHistory: Array<State>;
  taskRuns: Array<TaskRun>;
  /** Why no agent takes this SCHEDULED run now (no healthy agent carries all its labels); null when one does or the run is not waiting for one. */
  noLiveAgentReason: string | null;
  /** One of this run's task runs; null for any other id. */
  taskRun: TaskRun | null;
  /** Flow of flows: the run that started this one; null when none did or you cannot see it. */
  parentFlowRun: FlowRun | null;
  /** The parent run's task run that started this one, when known. */
  parentTaskRunId: string | null;
  /** Flow of flows: the runs this one started that you can see, newest first (at most `first`, 0–100; flowRuns with the parentFlowRunId filter pages through all of them). */
  childFlowRuns: Array<FlowRun>;
  /** In sequence order. Null with permission_denied for roles without log:read. */
  logs: Array<LogLine> | null;
}

/** Flow runs, newest first. */
export interface FlowRunConnection {
  /** Pagination data for this connection. */
  pageInfo: PageInfo;
  /** Contains the nodes in this connection. */
  edges: Array<FlowRunEdge | null>;
  /** How many runs match the filter, on every page. */
  totalCount: number;
}

/** A Relay edge containing a `FlowRun` and its cursor. */
export interface FlowRunEdge {
  /** The item at the end of the edge */
  node: FlowRun | null;
  /** A cursor for use in pagination */
  cursor: string;
}

/** The run filter REST and bulk actions use too (:class:`orchestration.selectors.FlowRunFilter`). */
export interface FlowRunFilter {
  flowId?: string | null;
  /** Any of these state types. */
  stateTypes?: Array<string> | null;
  stateName?: string | null;
  /** Runs carrying all of these labels. */
  labels?: Array<string> | null;
  /** Scheduled to start before this time. */
  scheduledBefore?: string | null;
  /** Scheduled to start at or after this time. */
  scheduledAfter?: string | null;
  /** user, schedule or api. */
  createdBy?: string | null;
  /** Runs with a task run carrying each of these tags. */
  tags?: Array<string> | null;
  /** Only SCHEDULED runs no healthy agent can take (none carries all of their labels). */
  withoutLiveAgent?: boolean | null;
  /** Only the child runs this run started (flow of flows). */
  parentFlowRunId?: string | null;
}

/** What the SDK registered for one version: the DAG, parameters, storage reference… never code. */
export interface FlowVersion {
  id: string;
  version: number;
  createdAt: string;
  isArchived: boolean;
  registeredBy: string;
  /** [{"key", "name", "tags", "retries", …}] */
  tasks: unknown;
  /** [{"upstream", "downstream", "key"}] */
  edges: unknown;
  /** [{"name", "type", "default", "required"}] */
  parameters: unknown;
  labels: unknown;
  storage: unknown;
  runConfig: unknown;
  schedule: unknown | null;
}

export interface Incident {
  id: string;
  /** Null once the policy is deleted. */
  policyId: string | null;
  policyName: string;
  kind: string;
  severity: string;
  title: string;
  cause: string;
  details: unknown;
  /** open, acknowledged or resolved. */
  status: string;
  snoozedUntil: string | null;
  openedAt: string;
  acknowledgedAt: string | null;
  acknowledgedBy: string;
  resolvedAt: string | null;
  /** Empty when it resolved by itself. */
  resolvedBy: string;
  flowId: string | null;
  flowName: string | null;
  /** Every run it covers, seen or not. */
  runCount: number;
  /** The runs you can see, newest scheduled first. */
  runs: Array<IncidentRun>;
  /** Oldest first. */
  events: Array<IncidentEvent>;
}

export interface IncidentEvent {
  kind: string;
  message: string;
  /** Empty: Flowdeck itself. */
  actor: string;
  at: string;
  details: unknown;
}

export interface IncidentRun {
  id: string;
  name: string;
  stateType: string;
  stateName: string;
  scheduledStart: string;
  flow: FlowRef;
}

export interface Invitation {
  id: string;
  email: string;
  role: string;
  /** pending, accepted, revoked or expired. */
  status: string;
  /** The inviter's email; null once they are gone. */
  invitedBy: string | null;
  createdAt: string;
  expiresAt: string;
  sendCount: number;
}

/** What an invitation link is for, shown before accepting (no sign-in needed). */
export interface InvitationPreview {
  workspaceName: string;
  workspaceSlug: string;
  email: string;
  role: string;
  invitedBy: string | null;
  status: string;
  expiresAt: string;
}

/** Invite someone by email with a role no higher than yours (Admin). */
export interface InviteMember {
  errors: Array<Error>;
  invitation: Invitation | null;
}

export interface LeaveWorkspace {
  errors: Array<Error>;
  ok: boolean;
}

export interface LogLine {
  /** The per-run sequence number (a 64-bit integer). */
  sequence: number;
  /** Python logging level: 10 debug … 50 critical. */
  level: number;
  timestamp: string;
  logger: string;
  message: string;
  taskRunId: string | null;
}

/** Set a run's state by hand (e.g. mark a stuck run Failed), through the orchestration rules. */
export interface MarkFlowRun {
  errors: Array<Error>;
  flowRun: FlowRun | null;
}

export interface Member {
  id: string;
  role: string;
  createdAt: string;
  user: User;
}

export interface Mutation {
  /** Create a channel (Admin). A webhook channel's signing secret is in the answer. */
  createNotificationChannel: CreateNotificationChannel | null;
  /** Change a channel (Admin); ``rotateSecret`` replaces a webhook's signing secret. */
  updateNotificationChannel: UpdateNotificationChannel | null;
  /** Delete a channel and its delivery log (Admin). */
  deleteNotificationChannel: DeleteNotificationChannel | null;
  /** Send a test message to a channel now (Admin); the delivery tells whether it arrived. */
  sendTestNotification: SendTestNotification | null;
  /** Create an SLA policy (Developer and up). */
  createSlaPolicy: CreateSlaPolicy | null;
  /** Change some of a policy's fields. */
  updateSlaPolicy: UpdateSlaPolicy | null;
  /** Pause (the evaluator skips it) or resume a policy. */
  setSlaPolicyPaused: SetSlaPolicyPaused | null;
  /** Delete a policy; its open incidents are resolved and kept. */
  deleteSlaPolicy: DeleteSlaPolicy | null;
  /** Say someone is on it (Developer and up). */
  acknowledgeIncident: AcknowledgeIncident | null;
  /** Silence an incident for some minutes. */
  snoozeIncident: SnoozeIncident | null;
  /** Resolve an incident by hand. */
  resolveIncident: ResolveIncident | null;
  /** Start a run of a flow's active version now, with these parameters. */
  quickRun: QuickRun | null;
  /** Cancel a run: an agent's run goes to Cancelling until the agent confirms; one no agent holds is Cancelled at once. */
  cancelFlowRun: CancelFlowRun | null;
  /** Run a failed (or crashed, or cancelled) run again as a new attempt: its unfinished tasks and those downstream of them go back to Pending. */
  restartFlowRun: RestartFlowRun | null;
  /** Set a run's state by hand (e.g. mark a stuck run Failed), through the orchestration rules. */
  markFlowRun: MarkFlowRun | null;
  /** Delete a run with its task runs, states and logs. */
  deleteFlowRun: DeleteFlowRun | null;
  /** Make a version the one new runs use, whatever is registered later (Developer and up). */
  pinFlowVersion: PinFlowVersion | null;
  /** New runs use the newest unarchived version again. */
  unpinFlowVersion: UnpinFlowVersion | null;
  /** Archive a version (new runs no longer use it; a pin on it is lifted) or restore it. */
  setFlowVersionArchived: SetFlowVersionArchived | null;
  /** Pause a schedule (its future runs no agent holds yet are deleted) or resume it (no catch-up on the pause). */
  setSchedulePaused: SetSchedulePaused | null;
  /** Create a project (Developer and up); names are unique in the workspace. */
  createProject: CreateProject | null;
  /** Rename a project, change its description, or restrict or open it; only the given fields change. */
  updateProject: UpdateProject | null;
  /** Create a workspace with you as its Owner. */
  createWorkspace: CreateWorkspace | null;
  /** Rename a workspace or change its slug (Admin). */
  updateWorkspace: UpdateWorkspace | null;
  /** Delete the workspace and everything in it (Owner); ``confirmSlug`` must repeat its slug. */
  deleteWorkspace: DeleteWorkspace | null;
  /** Invite someone by email with a role no higher than yours (Admin). */
  inviteMember: InviteMember | null;
  revokeInvitation: RevokeInvitation | null;
  /** Send a fresh link (the old one stops working) and restart the 7 days. */
  resendInvitation: ResendInvitation | null;
  /** Join the workspace an invitation sent to your email address is for. */
  acceptInvitation: AcceptInvitation | null;
  changeMemberRole: ChangeMemberRole | null;
  removeMember: RemoveMember | null;
  leaveWorkspace: LeaveWorkspace | null;
  createServiceAccount: CreateServiceAccount | null;
  /** Deactivate a service account and revoke all its keys. */
  deleteServiceAccount: DeleteServiceAccount | null;
  /** A personal API key; the secret is shown in this payload only. */
  createApiKey: CreateApiKey | null;
  /** A key for a service account; the secret is shown in this payload only. */
  createServiceAccountKey: CreateServiceAccountKey | null;
  /** Revoke a key; it stops working on the next request. */
  revokeApiKey: RevokeApiKey | null;
  /** Sign out every session of yours, this one included, and revoke all your personal API keys in every workspace (service-account keys are left alone). Needs your current password. */
  signOutEverywhere: SignOutEverywhere | null;
}

export interface NotificationChannel {
  id: string;
  name: string;
  /** email, webhook, slack or pagerduty. */
  kind: string;
  /** Where it goes, masked (no secrets). */
  target: string;
  isEnabled: boolean;
  createdAt: string;
  updatedAt: string;
  /** The newest delivery's status; null before any. */
  lastDeliveryStatus: string | null;
  /** The configuration: Admins only, null for everyone else. */
  config: unknown | null;
  /** A webhook's signing secret: Admins only, null for everyone else. */
  secret: string | null;
}

export interface NotificationDelivery {
  id: string;
  channelId: string;
  channelName: string;
  incidentId: string | null;
  incidentTitle: string | null;
  /** opened, resolved or test. */
  event: string;
  /** pending, retrying, delivered or failed. */
  status: string;
  attempts: number;
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string;
  createdAt: string;
  deliveredAt: string | null;
  attemptRows: Array<DeliveryAttempt>;
}

/** One workspace's flows, runs and agents, as the viewer may see them. */
export interface Orchestration {
  dashboard: Dashboard;
  /** Projects you can see, by name. */
  projects: Array<Project> | null;
  /** Null for any id you cannot see. */
  flow: Flow | null;
  /** Newest first. */
  flowRuns: FlowRunConnection | null;
  /** Null for any id you cannot see. */
  flowRun: FlowRun | null;
  /** By name, with their liveness. */
  agents: Array<Agent> | null;
  /** A bulk action's progress; null for any id you cannot see. */
  bulkAction: BulkAction | null;
  /** SLA policies, incidents and notification channels. */
  alerts: Alerts;
}

/** The Relay compliant `PageInfo` type, containing data necessary to paginate this connection. */
export interface PageInfo {
  /** When paginating forwards, are there more items? */
  hasNextPage: boolean;
  /** When paginating backwards, are there more items? */
  hasPreviousPage: boolean;
  /** When paginating backwards, the cursor to continue. */
  startCursor: string | null;
  /** When paginating forwards, the cursor to continue. */
  endCursor: string | null;
}

/** How many of your personal API keys one of your workspaces holds. */
export interface PersonalApiKeyCount {
  workspaceSlug: string;
  workspaceName: string;
  count: number;
}

/** Make a version the one new runs use, whatever is registered later (Developer and up). */
export interface PinFlowVersion {
  errors: Array<Error>;
  flow: Flow | null;
}

export interface Plan {
  code: string;
  name: string;
  description: string;
  /** Seats included; null: as many as the subscription pays for. */
  seats: number | null;
  /** Flow runs per billing period; null: unlimited. */
  runsPerPeriod: number | null;
  meteredOverage: boolean;
  logRetentionDays: number;
  pricePerSeatCents: number;
  overageCentsPer1000Runs: number;
  selfServe: boolean;
}

export interface PolicyPreview {
  /** The flows covered, by name (at most 200). */
  flows: Array<FlowRef>;
  flowCount: number;
  /** Duration policies: each flow's p95 of its last historySize successful runs. */
  p95: Array<PolicyPreviewP95>;
}

export interface PolicyPreviewInput {
  kind?: string | null;
  projectId?: string | null;
  flowId?: string | null;
  historySize?: number | null;
}

export interface PolicyPreviewP95 {
  flowId: string;
  flowName: string;
  /** Null: no successful run yet. */
  p95Seconds: number | null;
  sampleSize: number;
}

export interface Project {
  id: string;
  name: string;
  description: string;
  isRestricted: boolean;
  /** Unarchived flows by name. */
  flows: Array<FlowRef>;
}

export interface ProjectRef {
  id: string;
  name: string;
}

export interface Query {
  /** A workspace's plan and usage; null for any slug you are not a member of. */
  billing: Billing | null;
  /** The plans on offer. */
  plans: Array<Plan>;
  /** Flows, runs and agents of a workspace you are a member of; null for any other slug. */
  orchestration: Orchestration | null;
  /** The signed-in user; null when not signed in. */
  viewer: User | null;
  /** The workspaces you are a member of. */
  workspaces: Array<Workspace>;
  /** A workspace you are a member of; null for any other slug. */
  workspace: Workspace | null;
  /** Your personal API keys that still work, per workspace (workspaces without any left out): what signOutEverywhere would revoke. Empty when not signed in. */
  personalApiKeys: Array<PersonalApiKeyCount>;
  /** What an invitation link is for; null for a token that names none. */
  invitation: InvitationPreview | null;
}

/** Start a run of a flow's active version now, with these parameters. */
export interface QuickRun {
  errors: Array<Error>;
  flowRun: FlowRun | null;
}

export interface RemoveMember {
  errors: Array<Error>;
  ok: boolean;
}

/** Send a fresh link (the old one stops working) and restart the 7 days. */
export interface ResendInvitation {
  errors: Array<Error>;
  invitation: Invitation | null;
}

/** Resolve an incident by hand. */
export interface ResolveIncident {
  errors: Array<Error>;
  incident: Incident | null;
}

/** Run a failed (or crashed, or cancelled) run again as a new attempt: its unfinished tasks and those downstream of them go back to Pending. */
export interface RestartFlowRun {
  errors: Array<Error>;
  flowRun: FlowRun | null;
}

/** Revoke a key; it stops working on the next request. */
export interface RevokeApiKey {
  errors: Array<Error>;
  apiKey: ApiKey | null;
}

export interface RevokeInvitation {
  errors: Array<Error>;
  invitation: Invitation | null;
}

export interface Schedule {
  id: string;
  /** interval, cron or rrule. */
  kind: string;
  cron: string;
  intervalSeconds: number | null;
  rrule: string;
  timezone: string;
  startDate: string | null;
  endDate: string | null;
  parameters: unknown;
  isActive: boolean;
  /** The next fire times from now (at most `first`, 0–50), as the scheduler computes them; empty while the schedule is paused. */
  nextRuns: Array<string>;
}

/** Send a test message to a channel now (Admin); the delivery tells whether it arrived. */
export interface SendTestNotification {
  errors: Array<Error>;
  delivery: NotificationDelivery | null;
}

export interface ServiceAccount {
  id: string;
  name: string;
  description: string;
  role: string;
  isRestricted: boolean;
  createdAt: string;
}

/** Archive a version (new runs no longer use it; a pin on it is lifted) or restore it. */
export interface SetFlowVersionArchived {
  errors: Array<Error>;
  flowVersion: FlowVersion | null;
  /** The flow as the change left it (its active version may move). */
  flow: Flow | null;
}

/** Pause a schedule (its future runs no agent holds yet are deleted) or resume it (no catch-up on the pause). */
export interface SetSchedulePaused {
  errors: Array<Error>;
  schedule: Schedule | null;
}

/** Pause (the evaluator skips it) or resume a policy. */
export interface SetSlaPolicyPaused {
  errors: Array<Error>;
  policy: SlaPolicy | null;
}

/** Sign out every session of yours, this one included, and revoke all your personal API keys in every workspace (service-account keys are left alone). Needs your current password. */
export interface SignOutEverywhere {
  errors: Array<Error>;
  ok: boolean;
  /** Sessions opened by logging in that were ended, this one included; any other session of yours stops working on its next request too. */
  sessionsEnded: number | null;
  /** Personal API keys revoked, in all workspaces. */
  revokedApiKeys: number | null;
  /** Each of your workspaces and the keys revoked there. */
  workspaces: Array<PersonalApiKeyCount> | null;
}

export interface SlaPolicy {
  id: string;
  name: string;
  description: string;
  /** start, duration, failure, freshness, agent or prestart. */
  kind: string;
  projectId: string | null;
  projectName: string | null;
  flowId: string | null;
  flowName: string | null;
  /** Runs carry all of these. */
  labels: Array<string>;
  thresholdSeconds: number | null;
  consecutiveFailures: number;
  predictive: boolean;
  historySize: number;
  agentLabels: Array<string>;
  /** none, cancel_run, fail_run or pause_schedules. */
  action: string;
  severity: string;
  isPaused: boolean;
  /** Declared next to its flow in code. */
  fromRegistration: boolean;
  channelIds: Array<string>;
  activeIncidentCount: number;
  createdAt: string;
  updatedAt: string;
}

/** The fields of a policy; on update, only those given change (null clears a scope). */
export interface SlaPolicyInput {
  name?: string | null;
  description?: string | null;
  /** start, duration, failure, freshness, agent or prestart. */
  kind?: string | null;
  projectId?: string | null;
  flowId?: string | null;
  labels?: Array<string> | null;
  thresholdSeconds?: number | null;
  consecutiveFailures?: number | null;
  predictive?: boolean | null;
  historySize?: number | null;
  agentLabels?: Array<string> | null;
  /** none, cancel_run, fail_run or pause_schedules. */
  action?: string | null;
  /** critical or warning. */
  severity?: string | null;
  isPaused?: boolean | null;
  channelIds?: Array<string> | null;
}

/** Silence an incident for some minutes. */
export interface SnoozeIncident {
  errors: Array<Error>;
  incident: Incident | null;
}

export interface State {
  type: string;
  name: string;
  message: string;
  timestamp: string;
}

export interface StateBucket {
  /** The start of the hour (UTC). */
  bucket: string;
  stateType: string;
  count: number;
}

export interface StateCount {
  stateType: string;
  count: number;
}

export interface TaskRun {
  id: string;
  taskKey: string;
  /** -1 for a task that is not mapped (or a mapped task's parent). */
  mapIndex: number;
  stateType: string;
  stateName: string;
  stateMessage: string;
  stateTimestamp: string;
  startTime: string | null;
  endTime: string | null;
  attempt: number;
  tags: Array<string>;
  /** Oldest first; each RUNNING state starts an attempt (retries pass through AwaitingRetry). */
  stateHistory: Array<State>;
}

/** New runs use the newest unarchived version again. */
export interface UnpinFlowVersion {
  errors: Array<Error>;
  flow: Flow | null;
}

/** Change a channel (Admin); ``rotateSecret`` replaces a webhook's signing secret. */
export interface UpdateNotificationChannel {
  errors: Array<Error>;
  channel: NotificationChannel | null;
}

/** Rename a project, change its description, or restrict or open it; only the given fields change. */
export interface UpdateProject {
  errors: Array<Error>;
  project: Project | null;
}

/** Change some of a policy's fields. */
export interface UpdateSlaPolicy {
  errors: Array<Error>;
  policy: SlaPolicy | null;
}

/** Rename a workspace or change its slug (Admin). */
export interface UpdateWorkspace {
  errors: Array<Error>;
  workspace: Workspace | null;
}

export interface Usage {
  billingEnabled: boolean;
  plan: string | null;
  planName: string | null;
  periodStart: string;
  periodEnd: string;
  runsUsed: number;
  runsLimit: number | null;
  overageAllowed: boolean;
  seatsUsed: number;
  seatsLimit: number | null;
  /** Bytes of log text stored (a Float: may pass 2^31). */
  logBytes: number;
  logRetentionDays: number;
  runsByDay: Array<UsageDay>;
  runsByFlow: Array<UsageFlow>;
}

export interface UsageDay {
  day: string;
  runs: number;
}

export interface UsageFlow {
  flowId: string;
  flowName: string;
  runs: number;
}

export interface User {
  id: string;
  email: string;
  fullName: string;
}

export interface Workspace {
  id: string;
  name: string;
  slug: string;
  createdAt: string;
  /** The signed-in user's role here. */
  viewerRole: string;
  members: Array<Member>;
  /** Null with a permission_denied error below Admin. */
  invitations: Array<Invitation> | null;
  serviceAccounts: Array<ServiceAccount>;
  /** Every key for Admins; your own keys otherwise. */
  apiKeys: Array<ApiKey>;
  /** Newest first. Null with a permission_denied error below Admin. */
  auditLog: AuditLogConnection | null;
}
