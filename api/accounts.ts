import { Decimal } from '../common/decimal.ts';
import type { Logger } from '../common/logger.ts';
import type { CatalogReplica } from '../common/catalog.ts';
import type { Meter } from '../meter/index.ts';
import { fromLocal, localParts, type Billing, type Customer, type Period, type Plan, type Subscription } from '../rater/index.ts';
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

  // Projections of all customers at once (each is a few queries of its own).
  const projections = await Promise.all(
    customers.map(async (c): Promise<{ projected: AccountSummary['projected']; projectedError?: string }> => {
      const active = deps.subscriptions.list().some((s) => s.customer === c.key && Date.parse(s.phases[0]!.start) <= nowMs && !(s.phases.at(-1)?.end && Date.parse(s.phases.at(-1)!.end!) <= nowMs));
      if (!active) return { projected: null };
      try {
        const ps = await deps.billing.projected(c.key, nowMs);
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
