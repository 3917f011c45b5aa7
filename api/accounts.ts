import { Decimal } from '../common/decimal.ts';
import type { Logger } from '../common/logger.ts';
import type { CatalogReplica } from '../common/catalog.ts';
import type { Meter } from '../meter/index.ts';
import {
  BillingCatalog,
  fromLocal,
  InvoiceComputer,
  InvoiceProjection,
  localParts,
  type Adjustment,
  type AdjustmentStore,
  type Billing,
  type BillingReads,
  type Customer,
  type InvoiceStore,
  type Period,
  type Plan,
  type RoundingMode,
  type StoredInvoice,
  type Subscription,
} from '../rater/index.ts';
import type { SubjectCutoffQuery } from '../usage/index.ts';
import type { AnomalyStore } from '../anomaly/index.ts';
import type { UsageStore } from '../usage/index.ts';
import type { Accounts, AccountSummary } from './contracts.ts';

export type { AccountSummary } from './contracts.ts';

export interface AccountDeps {
  usage: UsageStore;
  meters: CatalogReplica<Meter>;
  billing: Billing;
  customers: CatalogReplica<Customer>;
  plans: CatalogReplica<Plan>;
  subscriptions: CatalogReplica<Subscription>;
  anomalies?: AnomalyStore;
  logger: Logger;
  /** The rater's stores and rounding, to price many customers with a few reads (`batchProjector`); absent: one customer at a time. */
  pricing?: BatchPricing;
}

/** What pricing many customers together reads: the rater's invoice and adjustment stores, and the rounding billing uses. */
export interface BatchPricing {
  invoices: InvoiceStore;
  adjustments: AdjustmentStore;
  rounding: RoundingMode;
  /** From this many customers on, their projections share reads (default 20); fewer are priced one by one. */
  batchFrom?: number;
}

type Projected = Awaited<ReturnType<Billing['projected']>>;

/** From this many customers on, their projections share reads (`BatchReads`): below it, reading every subject's usage costs more than it saves. */
const BATCH_FROM = 20;

function groupBy<V>(rows: V[], key: (v: V) => string): Map<string, V[]> {
  const m = new Map<string, V[]>();
  for (const r of rows) (m.get(key(r)) ?? m.set(key(r), []).get(key(r))!).push(r);
  return m;
}

/**
 * The reads of many customers' projections at one instant, made once for all of them (as the
 * rater's CloseContext does for a close): their finalized invoices and adjustments in one read
 * each, usage per (meter, ranges, cutoff) for every subject at once, late usage per interval.
 */
class BatchReads implements BillingReads {
  private readonly usageBy = new Map<string, Promise<Map<string, string>>>();
  private readonly changed = new Map<string, Promise<Set<string>>>();

  private constructor(
    private readonly usage: UsageStore,
    private readonly finalizedBy: Map<string, StoredInvoice[]>,
    private readonly adjustmentsBy: Map<string, Adjustment[]>,
  ) {}

  static async open(usage: UsageStore, p: BatchPricing, customers: string[]): Promise<BatchReads> {
    const [finalized, adjustments] = await Promise.all([p.invoices.finalized({ customers }), p.adjustments.list()]);
    return new BatchReads(usage, groupBy(finalized, (s) => s.invoice.customer), groupBy(adjustments, (a) => a.customer));
  }

  async finalized(customer: string): Promise<StoredInvoice[]> {
    return this.finalizedBy.get(customer) ?? [];
  }

  async adjustments(customer: string): Promise<Adjustment[]> {
    return this.adjustmentsBy.get(customer) ?? [];
  }

  async quantity(meter: Meter, q: SubjectCutoffQuery): Promise<string> {
    const key = `${meter.id}|${JSON.stringify(q.ranges)}|${q.cutoffMs}`;
    let all = this.usageBy.get(key);
    if (!all) this.usageBy.set(key, (all = this.usage.quantitiesAtCutoff(meter, { ranges: q.ranges, cutoffMs: q.cutoffMs })));
    return (await all).get(q.subject) ?? '0';
  }

  async ingestedBetween(customer: string, period: Period, fromMs: number, toMs: number): Promise<boolean> {
    const key = `${period.start}|${period.end}|${fromMs}|${toMs}`;
    let changed = this.changed.get(key);
    if (!changed) this.changed.set(key, (changed = this.usage.subjectsIngestedBetween(period, fromMs, toMs)));
    return (await changed).has(customer);
  }
}

/**
 * The projected invoices of `keys` at `nowMs`: the rater's own projection (InvoiceProjection, the
 * code behind Billing.projected) over shared reads when there are many customers and the stores
 * were handed in; otherwise Billing.projected per customer.
 */
async function projector(deps: AccountDeps, keys: string[], nowMs: number): Promise<(customer: string) => Promise<Projected>> {
  const p = deps.pricing;
  if (!p || keys.length < (p.batchFrom ?? BATCH_FROM)) return (c) => deps.billing.projected(c, nowMs);
  const catalog = new BillingCatalog({ meters: deps.meters, customers: deps.customers, plans: deps.plans, subscriptions: deps.subscriptions });
  const computer = new InvoiceComputer({ usage: deps.usage, catalog, options: { rounding: p.rounding } });
  const reads = await BatchReads.open(deps.usage, p, keys);
  const projection = new InvoiceProjection({ computer, catalog, invoices: p.invoices, reads, options: { graceMs: 0, rounding: p.rounding } });
  return (c) => projection.projected(c, nowMs);
}

const SEVERITY_RANK: Record<string, number> = { info: 1, warning: 2, critical: 3 };

/** The calendar month containing `nowMs` in `tz`, as instants. */
export function calendarMonth(nowMs: number, tz: string): Period {
  const p = localParts(nowMs, tz);
  const start = fromLocal({ y: p.y, m: p.m, d: 1, hh: 0, mm: 0, ss: 0 }, tz);
  const end = fromLocal({ y: p.m === 11 ? p.y + 1 : p.y, m: (p.m + 1) % 12, d: 1, hh: 0, mm: 0, ss: 0 }, tz);
  return { start, end };
}

/** What the accounts summary says of a customer's anomalies. */
export type AlertStats = Pick<AccountSummary, 'openAnomalies' | 'worstSeverity'>;
const NO_ALERTS: AlertStats = { openAnomalies: 0, worstSeverity: null };

/** Open and acknowledged anomalies per customer: how many, and the worst severity (two queries for everyone). */
export async function openAnomalyStats(deps: Pick<AccountDeps, 'anomalies'>): Promise<Map<string, AlertStats>> {
  if (!deps.anomalies) return new Map();
  const [a, b] = await Promise.all([deps.anomalies.list({ status: 'open', limit: 1000 }), deps.anomalies.list({ status: 'acknowledged', limit: 1000 })]);
  const out = new Map<string, AlertStats>();
  for (const x of [...a, ...b]) {
    const cur = out.get(x.customer) ?? NO_ALERTS;
    const worse = (SEVERITY_RANK[x.severity] ?? 0) > (cur.worstSeverity ? (SEVERITY_RANK[cur.worstSeverity] ?? 0) : 0);
    out.set(x.customer, { openAnomalies: cur.openAnomalies + 1, worstSeverity: worse ? x.severity : cur.worstSeverity });
  }
  return out;
}

/**
 * Summaries of the given customers, with as few queries as the data allows: one usage query per
 * meter and distinct period start (grouped by subject), one projection per customer (the
 * rater's), and one anomaly listing for all of them.
 */
export async function accountSummaries(deps: AccountDeps, keys: string[], nowMs: number): Promise<Accounts> {
  const toMs = Math.ceil(nowMs / 60_000) * 60_000;
  const customers = keys.map((k) => deps.customers.get(k)).filter((c): c is Customer => c !== undefined);
  const meters = deps.meters.list().sort((a, b) => a.slug.localeCompare(b.slug));
  const periods = new Map<string, Period & { source: 'subscription' | 'calendar_month' }>();
  for (const c of customers) {
    let p: Period | undefined;
    try {
      p = deps.billing.periodForCustomer(c.key, nowMs);
    } catch {
      p = undefined; // a subscription on a missing plan: fall back to the calendar month
    }
    periods.set(c.key, p ? { ...p, source: 'subscription' } : { ...calendarMonth(nowMs, c.timeZone), source: 'calendar_month' });
  }

  // Usage: customers that share a period start share one query per meter.
  const byStart = new Map<number, string[]>();
  for (const [k, p] of periods) byStart.set(p.start, [...(byStart.get(p.start) ?? []), k]);
  const usage = new Map<string, string>(); // `${customer}\u0000${meter}` -> value
  // Usage, anomalies and projections are independent: they run at the same time.
  const usageDone = Promise.all(
    [...byStart].flatMap(([start, subjects]) =>
      meters.map(async (m) => {
        if (start >= toMs) return;
        const r = await deps.usage.query(m, { fromMs: start, toMs, timeZone: 'UTC', subjects, groupBy: ['subject'], filterGroupBy: {} });
        for (const row of r.data) if (row.subject !== null) usage.set(`${row.subject}\u0000${m.slug}`, row.value);
      }),
    ),
  );

  const openP = openAnomalyStats(deps);
  const plans = new Map(deps.plans.list().map((p) => [p.key, p]));

  // Projections of all customers at once (over shared reads when there are many).
  const project = await projector(deps, customers.map((c) => c.key), nowMs);
  const projections = await Promise.all(
    customers.map(async (c): Promise<{ projected: AccountSummary['projected']; projectedError?: string }> => {
      const active = deps.subscriptions.list().some((s) => s.customer === c.key && Date.parse(s.phases[0]!.start) <= nowMs && !(s.phases.at(-1)?.end && Date.parse(s.phases.at(-1)!.end!) <= nowMs));
      if (!active) return { projected: null };
      try {
        const ps = await project(c.key);
        if (ps.length === 0) return { projected: null };
        // One subscription (the usual case): the rater's own strings, untouched.
        if (ps.length === 1) return { projected: { amountSoFar: ps[0]!.soFar.total, projectedTotal: ps[0]!.projected.total, currency: ps[0]!.soFar.currency } };
        return {
          projected: {
            amountSoFar: ps.reduce((acc, p) => acc.plus(p.soFar.total), new Decimal(0)).toFixed(2),
            projectedTotal: ps.reduce((acc, p) => acc.plus(p.projected.total), new Decimal(0)).toFixed(2),
            currency: ps[0]!.soFar.currency,
          },
        };
      } catch (err) {
        deps.logger.warn({ err, customer: c.key }, 'projected invoice failed for the accounts summary');
        return { projected: null, projectedError: (err as Error).message };
      }
    }),
  );

  await usageDone;
  const open = await openP;
  const items: AccountSummary[] = [];
  for (const [i, c] of customers.entries()) {
    const period = periods.get(c.key)!;
    const subs = deps.subscriptions.list().filter((s) => s.customer === c.key && Date.parse(s.phases[0]!.start) <= nowMs && !(s.phases.at(-1)?.end && Date.parse(s.phases.at(-1)!.end!) <= nowMs));
    const { projected, projectedError } = projections[i]!;
    const alerts = open.get(c.key) ?? NO_ALERTS;
    items.push({
      customer: { key: c.key, name: c.name, currency: c.currency, timeZone: c.timeZone },
      period: { start: new Date(period.start).toISOString(), end: new Date(period.end).toISOString(), source: period.source },
      subscriptions: subs.map((s) => {
        const phase = s.phases.find((ph) => Date.parse(ph.start) <= nowMs && (!ph.end || Date.parse(ph.end) > nowMs)) ?? s.phases.at(-1)!;
        return { id: s.id, plan: phase.plan, planName: plans.get(phase.plan)?.name ?? phase.plan };
      }),
      usage: meters.map((m) => ({ meter: m.slug, name: m.name ?? m.slug, aggregation: m.aggregation, value: usage.get(`${c.key}\u0000${m.slug}`) ?? '0' })),
      projected,
      ...(projectedError ? { projectedError } : {}),
      openAnomalies: alerts.openAnomalies,
      worstSeverity: alerts.worstSeverity,
    });
  }
  return { asOf: new Date(toMs).toISOString(), items };
}
