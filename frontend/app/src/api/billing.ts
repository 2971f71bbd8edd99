/** Plans, a workspace's usage against its plan's limits (GraphQL), and the subscription, invoices,
 * Checkout and the customer portal (REST: they talk to Stripe; docs/api.md). */

import { graphql, MutationError } from "./graphql";
import { call, RestError } from "./rest";

export interface Plan {
  code: string;
  name: string;
  description: string;
  seats: number | null;
  runsPerPeriod: number | null;
  meteredOverage: boolean;
  logRetentionDays: number;
  pricePerSeatCents: number;
  overageCentsPer1000Runs: number;
  selfServe: boolean;
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
  logBytes: number;
  logRetentionDays: number;
  runsByDay: { day: string; runs: number }[];
  runsByFlow: { flowId: string; flowName: string; runs: number }[];
}

export interface Subscription {
  planCode: string;
  planName: string;
  status: string;
  seats: number;
  currentPeriodStart: string | null;
  currentPeriodEnd: string | null;
  graceEndsAt: string | null;
  hasStripeCustomer: boolean;
}

export interface Invoice {
  id: string;
  number: string;
  status: string;
  amountDue: number;
  amountPaid: number;
  currency: string;
  created: number | null;
  hostedInvoiceUrl: string;
}

export interface BillingAccount {
  billingEnabled: boolean;
  subscription: Subscription | null;
  canManage: boolean;
  invoices: Invoice[];
  invoicesError: string;
}

const PLAN_FIELDS =
  "code name description seats runsPerPeriod meteredOverage logRetentionDays pricePerSeatCents overageCentsPer1000Runs selfServe";
const USAGE_FIELDS = `billingEnabled plan planName periodStart periodEnd runsUsed runsLimit overageAllowed
  seatsUsed seatsLimit logBytes logRetentionDays runsByDay { day runs } runsByFlow { flowId flowName runs }`;

/** The workspace's usage; null when it is not (or no longer) ours. */
export async function fetchUsage(slug: string): Promise<Usage | null> {
  const { data } = await graphql<{ billing: { usage: Usage } | null }>(
    `query Usage($slug: String!) { billing(workspace: $slug) { usage { ${USAGE_FIELDS} } } }`,
    { slug },
  );
  return data.billing?.usage ?? null;
}

export async function fetchPlans(): Promise<Plan[]> {
  const { data } = await graphql<{ plans: Plan[] }>(`query Plans { plans { ${PLAN_FIELDS} } }`);
  return data.plans;
}

interface RestBilling {
  billing_enabled: boolean;
  subscription: {
    plan: { code: string; name: string };
    status: string;
    seats: number;
    current_period_start: string | null;
    current_period_end: string | null;
    grace_ends_at: string | null;
    has_stripe_customer: boolean;
  } | null;
  can_manage: boolean;
  invoices: {
    id: string;
    number: string;
    status: string;
    amount_due: number;
    amount_paid: number;
    currency: string;
    created: number | null;
    hosted_invoice_url: string;
  }[];
  invoices_error: string;
}

export async function fetchBillingAccount(slug: string): Promise<BillingAccount> {
  const b = await call<RestBilling>("GET", slug, "billing/");
  const s = b.subscription;
  return {
    billingEnabled: b.billing_enabled,
    canManage: b.can_manage,
    invoicesError: b.invoices_error,
    subscription: s && {
      planCode: s.plan.code,
      planName: s.plan.name,
      status: s.status,
      seats: s.seats,
      currentPeriodStart: s.current_period_start,
      currentPeriodEnd: s.current_period_end,
      graceEndsAt: s.grace_ends_at,
      hasStripeCustomer: s.has_stripe_customer,
    },
    invoices: b.invoices.map((i) => ({
      id: i.id,
      number: i.number,
      status: i.status,
      amountDue: i.amount_due,
      amountPaid: i.amount_paid,
      currency: i.currency,
      created: i.created,
      hostedInvoiceUrl: i.hosted_invoice_url,
    })),
  };
}

/** Stripe Checkout's page for buying `plan` with `seats` seats (Owners). */
export async function checkoutUrl(slug: string, plan: string, seats: number): Promise<string> {
  return (await call<{ url: string }>("POST", slug, "billing/checkout/", { plan, seats })).url;
}

/** Stripe's customer portal: card, seats, plan, cancellation (Owners with a Stripe customer). */
export async function portalUrl(slug: string): Promise<string> {
  return (await call<{ url: string }>("POST", slug, "billing/portal/")).url;
}

export function usageDownloadUrl(slug: string): string {
  return `/api/v1/workspaces/${encodeURIComponent(slug)}/usage/download/`;
}

/** Whether an error from the API layer is a plan limit refusing the action (REST 402, GraphQL
 * `errors { code: "quota_exceeded" }`). */
export function isQuotaExceeded(error: unknown): boolean {
  if (error instanceof RestError) return error.code === "quota_exceeded" || error.status === 402;
  if (error instanceof MutationError) return error.errors.some((e) => e.code === "quota_exceeded");
  return false;
}

// --- Figures a person reads -------------------------------------------------------------------

const integer = new Intl.NumberFormat("en-US");

export function formatCount(n: number): string {
  return integer.format(n);
}

export function formatBytes(bytes: number): string {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${integer.format(value)} ${value === 1 ? "byte" : "bytes"}` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatMoney(cents: number, currency = "usd"): string {
  return new Intl.NumberFormat("en-US", { style: "currency", currency: currency.toUpperCase() }).format(cents / 100);
}

/** Which limits are near (≥ 80 %) or at (≥ 100 %) their end; runs billed as overage never refuse. */
export interface QuotaLevel {
  limit: "runs" | "seats";
  level: "warning" | "exhausted";
  used: number;
  allowed: number;
}

export function quotaLevels(usage: Usage): QuotaLevel[] {
  if (!usage.billingEnabled) return [];
  const found: QuotaLevel[] = [];
  const check = (limit: "runs" | "seats", used: number, allowed: number | null) => {
    if (!allowed) return;
    if (used >= allowed) found.push({ limit, level: "exhausted", used, allowed });
    else if (used >= allowed * 0.8) found.push({ limit, level: "warning", used, allowed });
  };
  if (!usage.overageAllowed) check("runs", usage.runsUsed, usage.runsLimit);
  check("seats", usage.seatsUsed, usage.seatsLimit);
  return found;
}

/** Runs are used up for this period: new runs (scheduled ones too) are refused until it ends. */
export function runsExhausted(usage: Usage | null): boolean {
  return Boolean(
    usage?.billingEnabled && !usage.overageAllowed && usage.runsLimit !== null && usage.runsUsed >= usage.runsLimit,
  );
}
