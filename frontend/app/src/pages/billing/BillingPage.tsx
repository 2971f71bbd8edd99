/** The workspace's plan, usage against its limits, plan comparison, and (Owners) upgrading,
 * Stripe's customer portal and invoices. Every member sees it; only Owners change anything. */

import { useEffect, useId, useState, type FormEvent } from "react";
import { useSearchParams } from "react-router";

import {
  checkoutUrl,
  fetchBillingAccount,
  fetchPlans,
  fetchUsage,
  formatBytes,
  formatCount,
  formatMoney,
  portalUrl,
  usageDownloadUrl,
  type BillingAccount,
  type Plan,
  type Usage,
} from "../../api/billing";
import { errorMessage } from "../../api/graphql";
import { RunsByDayChart, UsageMeter } from "../../components/billing";
import { Alert, EmptyState, ErrorState, formatDate, Spinner, Time, useAsync } from "../../components/ui";
import { useWorkspace } from "../WorkspaceLayout";

interface BillingData {
  usage: Usage;
  account: BillingAccount;
  /** Why the subscription and invoices could not be read (the usage still shows); else "". */
  accountError: string;
  plans: Plan[];
}

async function loadBilling(slug: string, owner: boolean): Promise<BillingData | null> {
  const [usage, account, plans] = await Promise.all([
    fetchUsage(slug),
    fetchBillingAccount(slug).then(
      (a) => ({ account: a, accountError: "" }),
      (err: unknown) => ({
        account: { billingEnabled: true, subscription: null, canManage: owner, invoices: [], invoicesError: "" },
        accountError: errorMessage(err),
      }),
    ),
    fetchPlans(),
  ]);
  return usage ? { usage, ...account, plans } : null;
}

/** The paid plan, once a Checkout's webhooks have been applied. */
function paidPlan(data: BillingData | null): string | null {
  if (!data) return null;
  if (data.accountError) return data.usage.plan && data.usage.plan !== "free" ? data.usage.plan : null;
  const s = data.account.subscription;
  return s && s.hasStripeCustomer && s.planCode !== "free" && (s.status === "active" || s.status === "trialing")
    ? s.planCode
    : null;
}

const POLL_MS = 1500;
const POLL_FOR_MS = 90_000;

export function BillingPage() {
  const { workspace, reloadUsage } = useWorkspace();
  const owner = workspace.viewerRole === "owner";
  const billing = useAsync(() => loadBilling(workspace.slug, owner), [workspace.slug, owner]);
  const [params, setParams] = useSearchParams();
  const checkout = params.get("checkout");
  const [waitingSince] = useState(() => Date.now());
  const data = billing.data;
  const paid = paidPlan(data);
  const waiting = checkout === "done" && !paid && Date.now() - waitingSince < POLL_FOR_MS;

  useEffect(() => {
    document.title = `Billing · ${workspace.name} · Flowdeck`;
  }, [workspace.name]);

  // Back from Checkout: Stripe's webhooks arrive on their own time; read again until they have.
  useEffect(() => {
    if (!waiting || billing.loading) return;
    const timer = window.setTimeout(() => void billing.reload(), POLL_MS);
    return () => window.clearTimeout(timer);
  }, [waiting, billing.loading, billing.reload]);

  useEffect(() => {
    if (checkout === "done" && paid) void reloadUsage(); // the banner follows the new limits
  }, [checkout, paid, reloadUsage]);

  if (billing.error && !data) return <ErrorState error={billing.error} onRetry={() => void billing.reload()} />;
  if (!data && billing.loading) return <Spinner label="Loading billing…" />;
  if (!data) return <ErrorState error="This workspace's usage could not be read." onRetry={() => void billing.reload()} />;

  const { usage, account, accountError, plans } = data;
  const dismissNotice = () => setParams({}, { replace: true });

  return (
    <div className="stack-lg billing">
      {checkout === "done" ? (
        paid ? (
          <Alert kind="success" title="Payment received">
            <p data-testid="checkout-notice">
              This workspace is now on the {usage.planName ?? account.subscription?.planName} plan.{" "}
              <button type="button" className="btn btn-ghost btn-small" onClick={dismissNotice}>
                Dismiss
              </button>
            </p>
          </Alert>
        ) : (
          <Alert kind="info" title="Payment received">
            <p data-testid="checkout-notice">
              {waiting
                ? "Your plan is being updated; this page refreshes when Stripe confirms it."
                : "Your plan is being updated. Stripe has not confirmed it yet: reload this page in a minute."}
            </p>
          </Alert>
        )
      ) : null}
      {checkout === "canceled" ? (
        <Alert kind="info">
          <p>
            Checkout was cancelled: nothing was charged and the plan is unchanged.{" "}
            <button type="button" className="btn btn-ghost btn-small" onClick={dismissNotice}>
              Dismiss
            </button>
          </p>
        </Alert>
      ) : null}
      {usage.billingEnabled ? (
        <PlanCard usage={usage} account={account} accountError={accountError} slug={workspace.slug} />
      ) : (
        <section className="card" aria-labelledby="plan-title">
          <h2 id="plan-title">Billing</h2>
          <p data-testid="billing-off">
            This installation of Flowdeck has no plans: nothing is limited or billed. The usage below is for your
            information.
          </p>
        </section>
      )}
      <UsageCard usage={usage} plans={plans} slug={workspace.slug} />
      {usage.billingEnabled ? (
        <>
          <PlansCard plans={plans} usage={usage} account={account} slug={workspace.slug} />
          {account.canManage ? <InvoicesCard account={account} accountError={accountError} /> : null}
        </>
      ) : null}
    </div>
  );
}

function statusText(account: BillingAccount): { label: string; tone: string } {
  const s = account.subscription;
  if (!s) return { label: "Active", tone: "active" };
  switch (s.status) {
    case "active":
      return { label: "Active", tone: "active" };
    case "trialing":
      return { label: "Trial", tone: "active" };
    case "past_due":
      return {
        label: s.graceEndsAt
          ? `Past due: the paid limits end on ${formatDate(s.graceEndsAt)} unless the invoice is paid`
          : "Past due",
        tone: "expired",
      };
    case "canceled":
      return { label: "Cancelled", tone: "revoked" };
    case "incomplete":
      return { label: "Incomplete: the first payment has not gone through", tone: "expired" };
    default:
      return { label: s.status, tone: "muted" };
  }
}

function PlanCard({
  usage,
  account,
  accountError,
  slug,
}: {
  usage: Usage;
  account: BillingAccount;
  accountError: string;
  slug: string;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const s = account.subscription;
  const status = accountError ? { label: "Unknown", tone: "muted" } : statusText(account);
  const manage = async () => {
    setBusy(true);
    setError(null);
    try {
      window.location.assign(await portalUrl(slug));
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };
  return (
    <section className="card" aria-labelledby="plan-title">
      <div className="card-head">
        <h2 id="plan-title">Plan</h2>
      </div>
      <dl className="facts">
        <div>
          <dt>Current plan</dt>
          <dd data-testid="current-plan">{usage.planName ?? s?.planName ?? "Free"}</dd>
        </div>
        <div>
          <dt>Status</dt>
          <dd>
            <span className={`badge badge-status-${status.tone}`} data-testid="plan-status">
              {status.label}
            </span>
          </dd>
        </div>
        {s && s.planCode !== "free" ? (
          <div>
            <dt>Seats paid for</dt>
            <dd>{formatCount(s.seats)}</dd>
          </div>
        ) : null}
        <div>
          <dt>This period</dt>
          <dd>
            <Time value={usage.periodStart} dateOnly /> – <Time value={usage.periodEnd} dateOnly />
          </dd>
        </div>
      </dl>
      {accountError ? (
        <Alert kind="error">The subscription could not be read just now: {accountError}</Alert>
      ) : null}
      {error ? <Alert kind="error">{error}</Alert> : null}
      {account.canManage ? (
        s?.hasStripeCustomer ? (
          <div className="form-actions">
            <button type="button" className="btn btn-secondary" disabled={busy} onClick={() => void manage()}>
              {busy ? "Opening Stripe…" : "Manage billing"}
            </button>
            <p className="hint">Card, seats, invoices and cancellation, on Stripe.</p>
          </div>
        ) : null
      ) : (
        <p className="muted" data-testid="owner-only">
          Only an Owner can change the plan.
        </p>
      )}
    </section>
  );
}

function UsageCard({ usage, plans, slug }: { usage: Usage; plans: Plan[]; slug: string }) {
  const limited = usage.billingEnabled;
  const plan = plans.find((p) => p.code === usage.plan);
  const overage =
    limited && usage.overageAllowed
      ? `Runs past the allowance are not refused: they are billed as overage${
          plan?.overageCentsPer1000Runs ? ` (${formatMoney(plan.overageCentsPer1000Runs)} per 1,000 runs)` : ""
        }.`
      : undefined;
  return (
    <section className="card" aria-labelledby="usage-title">
      <div className="card-head">
        <h2 id="usage-title">Usage this period</h2>
        <div className="topbar-spacer" />
        <a className="btn btn-secondary btn-small" href={usageDownloadUrl(slug)} download data-testid="usage-csv">
          Download CSV
        </a>
      </div>
      <div className="meters">
        <UsageMeter
          label="Flow runs"
          used={usage.runsUsed}
          limit={limited ? usage.runsLimit : null}
          unit="runs"
          note={overage}
          testId="runs-meter"
        />
        <UsageMeter
          label="Seats"
          used={usage.seatsUsed}
          limit={limited ? usage.seatsLimit : null}
          unit="seats"
          note="Members and pending invitations each hold a seat."
          testId="seats-meter"
        />
        <div className="meter">
          <div className="meter-head">
            <span className="meter-label">Log storage</span>
            <span className="meter-figure" data-testid="log-storage">
              {formatBytes(usage.logBytes)}, kept {usage.logRetentionDays} days
            </span>
          </div>
        </div>
      </div>
      <h3>Runs by day</h3>
      <RunsByDayChart usage={usage} />
      <h3>Runs by flow</h3>
      {usage.runsByFlow.length === 0 ? (
        <EmptyState>No runs this period.</EmptyState>
      ) : (
        <table className="table" data-testid="runs-by-flow">
          <thead>
            <tr>
              <th scope="col">Flow</th>
              <th scope="col" className="num">
                Runs
              </th>
              <th scope="col" className="num">
                Share
              </th>
            </tr>
          </thead>
          <tbody>
            {usage.runsByFlow.map((f) => (
              <tr key={f.flowId}>
                <td data-label="Flow">{f.flowName}</td>
                <td data-label="Runs" className="num">
                  {formatCount(f.runs)}
                </td>
                <td data-label="Share" className="num">
                  {usage.runsUsed ? `${Math.round((f.runs / usage.runsUsed) * 100)} %` : "—"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function PlansCard({
  plans,
  usage,
  account,
  slug,
}: {
  plans: Plan[];
  usage: Usage;
  account: BillingAccount;
  slug: string;
}) {
  const upgradable = plans.filter((p) => p.selfServe && p.pricePerSeatCents > 0 && p.code !== usage.plan);
  return (
    <section className="card" aria-labelledby="plans-title">
      <div className="card-head">
        <h2 id="plans-title">Plans</h2>
      </div>
      <table className="table" data-testid="plan-comparison">
        <thead>
          <tr>
            <th scope="col">Plan</th>
            <th scope="col">Seats</th>
            <th scope="col">Flow runs per period</th>
            <th scope="col">Log retention</th>
            <th scope="col">Price</th>
          </tr>
        </thead>
        <tbody>
          {plans.map((p) => (
            <tr key={p.code} data-testid="plan-row" aria-current={p.code === usage.plan ? "true" : undefined}>
              <td data-label="Plan">
                <strong>{p.name}</strong>
                {p.code === usage.plan ? <span className="badge badge-status-active plan-current">Current</span> : null}
                <div className="hint">{p.description}</div>
              </td>
              <td data-label="Seats">{p.seats !== null ? formatCount(p.seats) : p.selfServe ? "As many as you pay for" : "Custom"}</td>
              <td data-label="Flow runs">
                {p.runsPerPeriod === null ? "Unlimited" : formatCount(p.runsPerPeriod)}
                {p.meteredOverage && p.overageCentsPer1000Runs ? (
                  <div className="hint">then {formatMoney(p.overageCentsPer1000Runs)} per 1,000</div>
                ) : null}
              </td>
              <td data-label="Log retention">{p.logRetentionDays} days</td>
              <td data-label="Price">
                {p.pricePerSeatCents > 0
                  ? `${formatMoney(p.pricePerSeatCents)} per seat / month`
                  : p.selfServe
                    ? "Free"
                    : "Contact us"}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {account.canManage
        ? upgradable.map((p) => <UpgradeForm key={p.code} plan={p} usage={usage} slug={slug} />)
        : null}
    </section>
  );
}

function UpgradeForm({ plan, usage, slug }: { plan: Plan; usage: Usage; slug: string }) {
  const id = useId();
  const [seats, setSeats] = useState(String(Math.max(1, usage.seatsUsed)));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const n = Number(seats);
  const valid = Number.isInteger(n) && n >= 1 && n <= 10_000;
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!valid) {
      setError("Enter a whole number of seats from 1 to 10,000.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      window.location.assign(await checkoutUrl(slug, plan.code, n));
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };
  return (
    <form className="upgrade-form" onSubmit={submit} aria-label={`Upgrade to ${plan.name}`} noValidate>
      <div className="field">
        <label htmlFor={id}>Seats</label>
        <input
          id={id}
          type="number"
          min={1}
          max={10000}
          step={1}
          value={seats}
          aria-describedby={`${id}-hint`}
          aria-invalid={!valid}
          onChange={(e) => setSeats(e.target.value)}
        />
        <p className="hint" id={`${id}-hint`}>
          {valid
            ? `${formatMoney(plan.pricePerSeatCents * n)} per month for ${formatCount(n)} ${n === 1 ? "seat" : "seats"}. This workspace uses ${formatCount(usage.seatsUsed)} now.`
            : "A whole number from 1 to 10,000."}
        </p>
      </div>
      <button type="submit" className="btn btn-primary" disabled={busy}>
        {busy ? "Opening Stripe…" : `Upgrade to ${plan.name}`}
      </button>
      {error ? <Alert kind="error">{error}</Alert> : null}
    </form>
  );
}

const INVOICE_STATUS: Record<string, string> = {
  paid: "active",
  open: "expired",
  uncollectible: "revoked",
  void: "muted",
  draft: "muted",
};

function InvoicesCard({ account, accountError }: { account: BillingAccount; accountError: string }) {
  return (
    <section className="card" aria-labelledby="invoices-title">
      <div className="card-head">
        <h2 id="invoices-title">Invoices</h2>
      </div>
      {account.invoicesError || accountError ? (
        <Alert kind="error">{account.invoicesError || "The invoices could not be read just now."}</Alert>
      ) : null}
      {!account.invoicesError && !accountError && account.invoices.length === 0 ? <EmptyState>No invoices yet.</EmptyState> : null}
      {account.invoices.length > 0 ? (
        <table className="table" data-testid="invoices">
          <thead>
            <tr>
              <th scope="col">Number</th>
              <th scope="col">Date</th>
              <th scope="col" className="num">
                Amount
              </th>
              <th scope="col">Status</th>
              <th scope="col">
                <span className="sr-only">Invoice</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {account.invoices.map((i) => (
              <tr key={i.id} data-testid="invoice-row">
                <td data-label="Number">{i.number || i.id}</td>
                <td data-label="Date">
                  {i.created ? <Time value={new Date(i.created * 1000).toISOString()} dateOnly /> : "—"}
                </td>
                <td data-label="Amount" className="num">
                  {formatMoney(i.status === "paid" ? i.amountPaid : i.amountDue, i.currency)}
                </td>
                <td data-label="Status">
                  <span className={`badge badge-status-${INVOICE_STATUS[i.status] ?? "muted"}`}>
                    {i.status.charAt(0).toUpperCase() + i.status.slice(1)}
                  </span>
                </td>
                <td data-label="Invoice">
                  {i.hostedInvoiceUrl ? (
                    <a href={i.hostedInvoiceUrl} target="_blank" rel="noreferrer">
                      View invoice {i.number}
                    </a>
                  ) : (
                    "—"
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}
