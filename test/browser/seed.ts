import { Leases } from '../../common/lease.ts';
import { silentLogger } from '../../common/logger.ts';
import { AnomalyStore } from '../../anomaly/index.ts';
import { Billing, fromLocal, localParts, type Invoice } from '../../rater/index.ts';
import { ClickHouseUsageStore } from '../../usage/index.ts';
import { client, total } from '../api-client.ts';
import { ce, eventually, type TestRuntime } from '../harness.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export const CUSTOMERS = [
  { key: 'acme', name: 'Acme Corp', currency: 'USD', timeZone: 'America/New_York', plan: 'pro' },
  { key: 'globex', name: 'Globex GmbH', currency: 'EUR', timeZone: 'Europe/Berlin', plan: 'pro-eur' },
  { key: 'initech', name: 'Initech', currency: 'USD', timeZone: 'UTC', plan: 'pro' },
] as const;

/** Local midnight on the first of the month `monthsBack` months before the one containing `nowMs`, in `tz`. */
export function monthStartIn(tz: string, nowMs: number, monthsBack: number): number {
  const p = localParts(nowMs, tz);
  const m = p.m - monthsBack;
  return fromLocal({ y: p.y + Math.floor(m / 12), m: ((m % 12) + 12) % 12, d: 1, hh: 0, mm: 0, ss: 0 }, tz);
}

/** Initech changes plan this many days into last month (at local midnight). */
export const PLAN_CHANGE_DAYS = 14;

/** Acme's calls carry this many times the tokens of the others: millions of tokens, so numbers need grouping and the chart's y axis wide labels. */
export const ACME_TOKEN_FACTOR = 997;

export interface Seeded {
  lastMonth: string;
  /** Usage-reconcile rows that are pending correction (late usage after last month's close). */
  pending: { customer: string; meter: string }[];
  invoices: Record<string, Invoice>;
  anomalyIds: string[];
}

/**
 * A small billing world for the browser tests: three meters, three customers in different
 * zones and currencies, graduated pricing, usage last month (closed into finalized invoices)
 * and this month (the projected invoice), two anomalies and a dead letter. Acme's token counts
 * run into the millions (the chart's y axis and thousands separators), and one late call of
 * Acme's for last month arrives after its invoice was finalized (reconciliation: pending correction).
 */
export async function seed(rt: TestRuntime): Promise<Seeded> {
  const c = client(rt.app!, rt.adminKey);
  const now = Date.now();
  const post = async (url: string, body: unknown) => {
    const r = await c.post(url, body);
    if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
    return r.json() as unknown;
  };
  await c.createMeter({ slug: 'api-calls', name: 'API calls', eventType: 'call', aggregation: 'COUNT', groupBy: { endpoint: '$.endpoint' } });
  await c.createMeter({ slug: 'tokens', name: 'LLM tokens', eventType: 'call', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' } });
  await c.createMeter({ slug: 'active-users', name: 'Active users', eventType: 'call', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' });
  const calls = { model: 'graduated', tiers: [{ upTo: '100', unitPrice: '0' }, { upTo: '1000', unitPrice: '0.05' }, { upTo: null, unitPrice: '0.04' }] };
  const tokens = { model: 'per_unit', unitPrice: '0.00002' };
  await post('/api/v1/plans', { key: 'pro', name: 'Pro', currency: 'USD', interval: 'month', baseFee: { amount: '49.00', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'api-calls', description: 'API calls', price: calls }, { key: 'tokens', meter: 'tokens', description: 'LLM tokens', price: tokens }] });
  await post('/api/v1/plans', { key: 'pro-eur', name: 'Pro (EUR)', currency: 'EUR', interval: 'month', baseFee: { amount: '45.00', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'api-calls', description: 'API calls', price: calls }, { key: 'tokens', meter: 'tokens', description: 'LLM tokens', price: tokens }] });

  // Initech moves to Scale (fee in advance) mid last month: its invoice has a proration line naming the date.
  await post('/api/v1/plans', { key: 'scale', name: 'Scale', currency: 'USD', interval: 'month', baseFee: { amount: '99.00', timing: 'advance' }, charges: [{ key: 'calls', meter: 'api-calls', description: 'API calls', price: calls }, { key: 'tokens', meter: 'tokens', description: 'LLM tokens', price: tokens }] });

  const endpoints = ['/search', '/embed', '/chat'];
  const models = ['small', 'large'];
  const lastMonthEvents = [];
  const thisMonthEvents = [];
  for (const [ci, cust] of CUSTOMERS.entries()) {
    await post('/api/v1/customers', { key: cust.key, name: cust.name, currency: cust.currency, timeZone: cust.timeZone });
    const start = monthStartIn(cust.timeZone, now, 1);
    await post('/api/v1/subscriptions', { id: `sub-${cust.key}`, customer: cust.key, plan: cust.plan, start: new Date(start).toISOString() });
    if (cust.key === 'initech') await post(`/api/v1/subscriptions/sub-${cust.key}/change-plan`, { plan: 'scale', effectiveAt: new Date(start + PLAN_CHANGE_DAYS * DAY).toISOString() });
    const n = [240, 150, 90][ci]!;
    for (let i = 0; i < n; i++) {
      lastMonthEvents.push(ce({ id: `${cust.key}-lm-${i}`, type: 'call', subject: cust.key, time: new Date(start + 2 * DAY + i * 2 * HOUR).toISOString(), data: { endpoint: endpoints[i % 3], model: models[i % 2], tokens: `${100 + (i % 7) * 37}.5`, user: `u${i % 9}` } }));
    }
    // This month: the last 30 hours (or since the period started, if that is later).
    const periodStart = monthStartIn(cust.timeZone, now, 0);
    const from = Math.max(periodStart + 60_000, now - 30 * HOUR);
    const m = [180, 120, 40][ci]!;
    for (let i = 0; i < m; i++) {
      const t = from + Math.floor(((now - 120_000 - from) * i) / m);
      thisMonthEvents.push(ce({ id: `${cust.key}-tm-${i}`, type: 'call', subject: cust.key, time: new Date(t).toISOString(), data: { endpoint: endpoints[(i * 7) % 3], model: models[(i * 5) % 2], tokens: `${(200 + (i % 11) * 13) * (cust.key === 'acme' ? ACME_TOKEN_FACTOR : 1)}.25`, user: `u${i % 6}` } }));
    }
  }
  for (const batch of [lastMonthEvents, thisMonthEvents]) {
    const r = await c.ingest(batch);
    if (r.statusCode !== 202) throw new Error(`ingest: ${r.statusCode} ${r.body}`);
  }
  // A dead letter: a call whose tokens are not a number.
  await c.ingest([ce({ id: 'bad-tokens-1', type: 'call', subject: 'acme', data: { endpoint: '/chat', model: 'large', tokens: 'lots', user: 'u1' } })]);
  const expectAll = lastMonthEvents.length + thisMonthEvents.length;
  await eventually(async () => (await Promise.all(CUSTOMERS.map((x) => total(c, 'api-calls', x.key)))).reduce((a, v) => a + Number(v), 0), (v) => v === expectAll, 60_000);

  // Close last month for each customer at a cutoff just after the events were stored (the
  // cutoff is the period end plus the grace period; a Billing service with a grace that ends now).
  const cut = Date.now();
  const invoices: Record<string, Invoice> = {};
  const lastMonth = new Date(monthStartIn('UTC', now, 1) + 3 * DAY).toISOString().slice(0, 7);
  for (const cust of CUSTOMERS) {
    const periodEnd = monthStartIn(cust.timeZone, now, 0);
    const billing = new Billing({
      store: rt.store!,
      usage: new ClickHouseUsageStore({ store: rt.store! }),
      meters: rt.catalog.meters,
      customers: rt.catalog.customers,
      plans: rt.catalog.plans,
      subscriptions: rt.catalog.subscriptions,
      kv: rt.nats.kv,
      leases: await Leases.open(rt.nats.js, { holder: `seed-${cust.key}` }),
      logger: silentLogger(),
      options: { graceMs: cut - periodEnd, rounding: 'half_up', numberPrefix: 'ML', safetyMs: 0 },
    });
    const r = await billing.closeByHand(lastMonth, { customer: cust.key, dryRun: false, nowMs: Date.now() });
    if (!r.invoices[0]) throw new Error(`close ${lastMonth} for ${cust.key}: ${JSON.stringify(r.skipped)}`);
    invoices[cust.key] = r.invoices[0];
  }

  // A late call of Acme's for last month, after its invoice was finalized: metered now exceeds invoiced.
  const acmeStart = monthStartIn('America/New_York', now, 1);
  const late = ce({ id: 'acme-lm-late-1', type: 'call', subject: 'acme', time: new Date(acmeStart + 5 * DAY).toISOString(), data: { endpoint: '/chat', model: 'large', tokens: '1000.5', user: 'u1' } });
  const acmeCalls = Number(await total(c, 'api-calls', 'acme'));
  const lateR = await c.ingest([late]);
  if (lateR.statusCode !== 202) throw new Error(`ingest: ${lateR.statusCode} ${lateR.body}`);
  await eventually(async () => Number(await total(c, 'api-calls', 'acme')), (v) => v === acmeCalls + 1, 60_000);

  // Anomalies, as the scan would store them.
  const anomalies = new AnomalyStore(rt.store!);
  const hourStart = Math.floor(now / HOUR) * HOUR - HOUR;
  const spike = await anomalies.upsert('acme', 'api-calls', { kind: 'spike', severity: 'warning', score: 8.2, windowStartMs: hourStart, windowEndMs: hourStart + HOUR, observed: 64, baseline: 9, spread: 3, message: '64 API calls in the hour, usually 9 ± 3 at this hour' }, now);
  const shock = await anomalies.upsert('globex', '', { kind: 'bill_shock', severity: 'critical', score: 3.1, windowStartMs: monthStartIn('Europe/Berlin', now, 0), windowEndMs: now, observed: 310, baseline: 100, spread: 0, message: 'Projected invoice is 3.1× the last one' }, now);
  return { lastMonth, invoices, pending: [{ customer: 'acme', meter: 'api-calls' }, { customer: 'acme', meter: 'tokens' }], anomalyIds: [spike.anomaly.id, shock.anomaly.id] };
}
