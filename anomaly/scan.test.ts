import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Aggregation, Meter } from '../meter/index.ts';
import type { Customer, Period } from '../rater/index.ts';
import type { HourlyValue, UsageRequest, UsageResult } from '../usage/index.ts';
import type { AlertEvent } from './alerts.ts';
import { historyHours } from './detect.ts';
import { AnomalyScanner, type ScanDeps, type Threshold } from './scan.ts';
import type { AlertSink, AnomalyRecords, BillingView, CatalogView, ScanLease, ScanUsage } from './scan-deps.ts';
import { recordDetection, type Anomaly } from './store.ts';
import { DEFAULT_DETECTOR_PARAMS, type Detection } from './types.ts';

// The scan with in-memory collaborators: every effect they see is appended to one log, so the
// tests read the order the scan did things in. The clock is only the `nowMs` each scan is given.

const HOUR = 3_600_000;
const PARAMS = DEFAULT_DETECTOR_PARAMS;
/** Wednesday 18 March 2026, 14:25:30.500 UTC: the last complete hour is 13:00-14:00. */
const NOW = Date.UTC(2026, 2, 18, 14, 25, 30, 500);
const END = Date.UTC(2026, 2, 18, 14);
const iso = (ms: number) => new Date(ms).toISOString();

type Effects = string[];
type SeriesFn = (hourStartMs: number) => number;

const keyOf = (customer: string, meter: string, kind: string) => `${customer}/${meter}/${kind}`;

function catalog<T>(entries: [string, T][]): CatalogView<T> {
  const m = new Map(entries);
  return { get: (k) => m.get(k), list: () => [...m.values()] };
}

class FakeLease implements ScanLease {
  readonly heldElsewhere = new Set<string>();
  constructor(private readonly effects: Effects) {}

  async withLease<T>(name: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    if (this.heldElsewhere.has(name)) {
      this.effects.push(`lease ${name} refused`);
      return { ran: false };
    }
    this.effects.push(`lease ${name} acquired`);
    try {
      return { ran: true, value: await fn() };
    } finally {
      this.effects.push(`lease ${name} released`);
    }
  }
}

/** Hourly values from functions of the hour (0 = absent, as in the rollup); period-to-date totals per meter × subject. */
class FakeUsage implements ScanUsage {
  readonly series = new Map<string, Map<string, SeriesFn>>();
  readonly totals = new Map<string, string>();
  readonly hourlyCalls: { meter: string; fromMs: number; toMs: number }[] = [];
  readonly queries: { meter: string; q: UsageRequest }[] = [];
  constructor(private readonly effects: Effects) {}

  set(meter: string, subject: string, f: SeriesFn): void {
    (this.series.get(meter) ?? this.series.set(meter, new Map()).get(meter)!).set(subject, f);
  }

  async hourly(meter: Meter, fromMs: number, toMs: number): Promise<HourlyValue[]> {
    this.effects.push(`hourly ${meter.slug}`);
    this.hourlyCalls.push({ meter: meter.slug, fromMs, toMs });
    const out: HourlyValue[] = [];
    for (const [subject, f] of this.series.get(meter.slug) ?? []) {
      for (let h = fromMs; h < toMs; h += HOUR) if (f(h) !== 0) out.push({ subject, hourStartMs: h, value: String(f(h)) });
    }
    return out;
  }

  async query(meter: Meter, q: UsageRequest): Promise<UsageResult> {
    this.effects.push(`query ${meter.slug}`);
    this.queries.push({ meter: meter.slug, q });
    const value = this.totals.get(`${meter.slug}/${q.subjects?.[0]}`) ?? '0';
    return { to: iso(q.toMs), data: [{ value, windowStart: iso(q.fromMs), windowEnd: iso(q.toMs), subject: null, groupBy: {} }], source: 'meter_usage_1m_v2' };
  }
}

/** AnomalyStore's contract in memory: one open anomaly per customer × meter × kind, updated in place; `created` only for a new one. */
class FakeRecords implements AnomalyRecords {
  readonly rows: Anomaly[] = [];
  constructor(private readonly effects: Effects) {}

  async upsert(customer: string, meter: string, d: Detection, nowMs: number, detail: Record<string, unknown> = {}): Promise<{ anomaly: Anomaly; created: boolean }> {
    const key = keyOf(customer, meter, d.kind);
    const mine = this.rows.filter((a) => keyOf(a.customer, a.meter, a.kind) === key);
    // The store's own episode rule, over rows held in memory instead of ClickHouse.
    const r = recordDetection(mine, customer, meter, d, nowMs, detail);
    if (r.changed) {
      const i = this.rows.findIndex((a) => a.id === r.anomaly.id);
      if (i >= 0) this.rows[i] = r.anomaly;
      else this.rows.push(r.anomaly);
      this.effects.push(`record ${key} ${r.created ? 'opened' : 'updated'}`);
    }
    return { anomaly: structuredClone(r.anomaly), created: r.created };
  }

  async list(filter: { customer?: string; meter?: string; kind?: string }): Promise<Anomaly[]> {
    this.effects.push(`list ${keyOf(filter.customer ?? '*', filter.meter ?? '*', filter.kind ?? '*')}`);
    return this.rows.filter((a) => (filter.customer ?? a.customer) === a.customer && (filter.meter ?? a.meter) === a.meter && (filter.kind ?? a.kind) === a.kind).map((a) => structuredClone(a));
  }
}

class FakeAlerts implements AlertSink {
  readonly sent: { event: AlertEvent; anomaly: Anomaly }[] = [];
  constructor(private readonly effects: Effects) {}

  dispatch(event: AlertEvent, a: Anomaly): void {
    this.effects.push(`alert ${event} ${keyOf(a.customer, a.meter, a.kind)}`);
    this.sent.push({ event, anomaly: a });
  }
}

/** Projections and finalized invoices (oldest first) per customer; subscription periods per customer. */
class FakeBilling implements BillingView {
  readonly projections = new Map<string, { period: Period; total: string }[]>();
  readonly invoices = new Map<string, string[]>();
  readonly periods = new Map<string, Period>();
  readonly projectedAt: number[] = [];
  constructor(private readonly effects: Effects) {}

  async projected(customerKey: string, nowMs: number): Promise<{ period: Period; projected: { total: string } }[]> {
    this.effects.push(`projected ${customerKey}`);
    this.projectedAt.push(nowMs);
    return (this.projections.get(customerKey) ?? []).map((p) => ({ period: p.period, projected: { total: p.total } }));
  }

  async finalized(filter: { customer: string }): Promise<{ invoice: { total: string } }[]> {
    this.effects.push(`finalized ${filter.customer}`);
    return (this.invoices.get(filter.customer) ?? []).map((total) => ({ invoice: { total } }));
  }

  periodForCustomer(customer: string): Period | undefined {
    return this.periods.get(customer);
  }
}

const meter = (slug: string, aggregation: Aggregation = 'COUNT'): Meter => ({
  id: `m_${slug}`,
  slug,
  name: slug.replace('-', ' '),
  eventType: slug,
  aggregation,
  ...(aggregation === 'COUNT' ? {} : { valueProperty: '$.value' }),
  createdAt: '2026-01-01T00:00:00.000Z',
});
const customer = (key: string, timeZone = 'UTC'): Customer => ({ key, name: key, currency: 'USD', timeZone, createdAt: '2026-01-01T00:00:00.000Z' });

// Series are 100 an hour, so the baseline at any hour is 100 (with the spread floor), except:
/** `value` in the hour starting at `hourStartMs`. */
const spikeAt =
  (hourStartMs: number, value: number): SeriesFn =>
  (h) =>
    h === hourStartMs ? value : 100;
/** Silent from `fromMs` on. */
const silentFrom =
  (fromMs: number): SeriesFn =>
  (h) =>
    h >= fromMs ? 0 : 100;

function setup(opts: { meters?: Meter[]; customers?: Customer[]; thresholds?: Threshold[]; billing?: boolean } = {}) {
  const effects: Effects = [];
  const logs: Record<string, unknown>[] = [];
  const usage = new FakeUsage(effects);
  const anomalies = new FakeRecords(effects);
  const alerts = new FakeAlerts(effects);
  const leases = new FakeLease(effects);
  const billing = opts.billing ? new FakeBilling(effects) : undefined;
  const meters = opts.meters ?? [meter('api-calls')];
  const deps: ScanDeps = {
    usage,
    meters: catalog(meters.map((m) => [m.slug, m])),
    customers: catalog((opts.customers ?? [customer('acme')]).map((c) => [c.key, c])),
    thresholds: catalog((opts.thresholds ?? []).map((t) => [t.id, t])),
    ...(billing ? { billing } : {}),
    anomalies,
    alerts,
    leases,
    logger: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) }),
    params: PARAMS,
    billShockRatio: 1.5,
  };
  return { scanner: new AnomalyScanner(deps), effects, logs, usage, anomalies, alerts, leases, billing: billing! };
}

describe('AnomalyScanner', () => {
  it('runs under the anomaly-scan lease over whole hours up to the last complete one, storing each anomaly before alerting on it', async () => {
    const t = setup();
    t.usage.set('api-calls', 'acme', spikeAt(END - HOUR, 1000));

    const r = await t.scanner.scan(NOW);

    expect(r).toEqual({ ran: true, series: 1, detections: 1, opened: 1, updated: 0 });
    expect(t.effects).toEqual(['lease anomaly-scan acquired', 'hourly api-calls', 'record acme/api-calls/spike opened', 'alert anomaly.opened acme/api-calls/spike', 'lease anomaly-scan released']);
    expect(t.usage.hourlyCalls).toEqual([{ meter: 'api-calls', fromMs: END - historyHours(PARAMS) * HOUR, toMs: END }]);
    const [a] = t.anomalies.rows;
    expect(a).toMatchObject({ customer: 'acme', meter: 'api-calls', kind: 'spike', observed: 1000, windowStart: iso(END - HOUR), windowEnd: iso(END), firstDetectedAt: iso(NOW), lastDetectedAt: iso(NOW) });
    expect(t.alerts.sent).toEqual([{ event: 'anomaly.opened', anomaly: a }]);
  });

  it('does nothing when the lease is held elsewhere', async () => {
    const t = setup({ thresholds: [{ id: 't1', customer: 'acme', meter: 'api-calls', cap: '10', percents: [100], createdAt: '' }], billing: true });
    t.usage.set('api-calls', 'acme', spikeAt(END - HOUR, 1000));
    t.usage.totals.set('api-calls/acme', '50');
    t.billing.projections.set('acme', [{ period: { start: END, end: END + HOUR }, total: '1000' }]);
    t.billing.invoices.set('acme', ['1']);
    t.leases.heldElsewhere.add('anomaly-scan');

    const r = await t.scanner.scan(NOW);

    expect(r).toEqual({ ran: false, series: 0, detections: 0, opened: 0, updated: 0 });
    expect(t.effects).toEqual(['lease anomaly-scan refused']);
  });

  it('an ongoing anomaly seen by the next scan is updated, not alerted again', async () => {
    const silentSince = END - 3 * HOUR;
    const t = setup();
    t.usage.set('api-calls', 'acme', silentFrom(silentSince));

    const first = await t.scanner.scan(NOW);
    const later = NOW + HOUR;
    const second = await t.scanner.scan(later);

    expect(first).toEqual({ ran: true, series: 1, detections: 1, opened: 1, updated: 0 });
    expect(second).toEqual({ ran: true, series: 1, detections: 1, opened: 0, updated: 1 });
    expect(t.alerts.sent.map((s) => s.event)).toEqual(['anomaly.opened']);
    expect(t.effects.filter((e) => e.startsWith('record') || e.startsWith('alert'))).toEqual(['record acme/api-calls/gap opened', 'alert anomaly.opened acme/api-calls/gap', 'record acme/api-calls/gap updated']);
    expect(t.anomalies.rows).toHaveLength(1);
    // The second scan judged up to its own last complete hour, one later.
    expect(t.anomalies.rows[0]).toMatchObject({ kind: 'gap', windowStart: iso(silentSince), windowEnd: iso(END + HOUR), detections: 2, firstDetectedAt: iso(NOW), lastDetectedAt: iso(later) });
  });

  it('a threshold alerts once at 80 % and once more, as an escalation, at 100 %', async () => {
    const cap = 1000;
    const t = setup({ thresholds: [{ id: 't1', customer: 'acme', meter: 'api-calls', cap: String(cap), percents: [80, 100], createdAt: '' }] });
    const monthStart = Date.UTC(2026, 2, 1);
    const monthEnd = Date.UTC(2026, 3, 1);

    t.usage.totals.set('api-calls/acme', String(0.85 * cap));
    const atEighty = await t.scanner.scan(NOW);
    const still = await t.scanner.scan(NOW + 60_000);
    t.usage.totals.set('api-calls/acme', String(cap));
    const atHundred = await t.scanner.scan(NOW + 120_000);

    expect([atEighty, still, atHundred].map((r) => [r.opened, r.updated])).toEqual([
      [1, 0],
      [0, 0],
      [0, 1],
    ]);
    expect(t.alerts.sent.map((s) => s.event)).toEqual(['anomaly.opened', 'anomaly.escalated']);
    expect(t.effects.filter((e) => e.startsWith('record') || e.startsWith('alert'))).toEqual([
      'record acme/api-calls/threshold opened',
      'alert anomaly.opened acme/api-calls/threshold',
      'record acme/api-calls/threshold updated',
      'alert anomaly.escalated acme/api-calls/threshold',
    ]);
    expect(t.alerts.sent[0]!.anomaly).toMatchObject({ severity: 'warning', observed: 0.85 * cap, baseline: cap, detail: { thresholdId: 't1', periodStart: monthStart, alerted: [80] } });
    expect(t.alerts.sent[1]!.anomaly).toMatchObject({ severity: 'critical', observed: cap, detail: { thresholdId: 't1', periodStart: monthStart, alerted: [80, 100] } });
    // No subscription: the calendar month in UTC, up to the minute after now.
    expect(t.usage.queries[0]).toEqual({ meter: 'api-calls', q: { fromMs: monthStart, toMs: Date.UTC(2026, 2, 18, 14, 26), timeZone: 'UTC', subjects: ['acme'], groupBy: [], filterGroupBy: {} } });
    expect(t.anomalies.rows[0]).toMatchObject({ windowStart: iso(monthStart), windowEnd: iso(monthEnd) });
  });

  it("a threshold of a customer with a subscription counts the subscription's period", async () => {
    const period = { start: Date.UTC(2026, 2, 10), end: Date.UTC(2026, 3, 10) };
    const t = setup({ thresholds: [{ id: 't1', customer: 'acme', meter: 'api-calls', cap: '100', percents: [50], createdAt: '' }], billing: true });
    t.billing.periods.set('acme', period);
    t.usage.totals.set('api-calls/acme', '60');

    await t.scanner.scan(NOW);

    expect(t.usage.queries.map((q) => [q.q.fromMs, q.q.toMs])).toEqual([[period.start, Date.UTC(2026, 2, 18, 14, 26)]]);
    expect(t.anomalies.rows[0]).toMatchObject({ kind: 'threshold', windowStart: iso(period.start), windowEnd: iso(period.end), detail: { periodStart: period.start, alerted: [50] } });
  });

  it('a series whose scoring throws is logged and counted, and the other series are still scored', async () => {
    // A time zone the formatter refuses makes `detect` throw while it describes the spike.
    const t = setup({ customers: [customer('acme'), customer('broken', 'Mars/Olympus_Mons'), customer('zeta')] });
    for (const subject of ['acme', 'broken', 'zeta']) t.usage.set('api-calls', subject, spikeAt(END - HOUR, 1000));

    const r = await t.scanner.scan(NOW);

    expect(r).toEqual({ ran: true, series: 3, detections: 2, opened: 2, updated: 0 });
    expect(t.alerts.sent.map((s) => s.anomaly.customer)).toEqual(['acme', 'zeta']);
    const errors = t.logs.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ subject: 'broken', meter: 'api-calls', msg: 'anomaly scoring failed for one series' });
    expect(t.effects.at(-1)).toBe('lease anomaly-scan released');
  });

  it('skips meters whose aggregation is not a count or an amount', async () => {
    const scored: Aggregation[] = ['SUM', 'COUNT', 'UNIQUE_COUNT'];
    const notScored: Aggregation[] = ['MIN', 'MAX', 'AVG', 'LATEST'];
    const meters = [...scored, ...notScored].map((agg) => meter(`m-${agg.toLowerCase()}`, agg));
    const t = setup({ meters });
    for (const m of meters) t.usage.set(m.slug, 'acme', spikeAt(END - HOUR, 1000));

    const r = await t.scanner.scan(NOW);

    expect(t.usage.hourlyCalls.map((c) => c.meter)).toEqual(scored.map((agg) => `m-${agg.toLowerCase()}`));
    expect(r).toEqual({ ran: true, series: scored.length, detections: scored.length, opened: scored.length, updated: 0 });
    expect(t.anomalies.rows.map((a) => a.meter)).toEqual(scored.map((agg) => `m-${agg.toLowerCase()}`));
  });

  it("bill shock compares the projected total with the median of the customer's last three invoices", async () => {
    const period = { start: Date.UTC(2026, 2, 1), end: Date.UTC(2026, 3, 1) };
    const t = setup({ meters: [], customers: [customer('acme'), customer('calm'), customer('new'), customer('idle')], billing: true });
    // acme: projected 200 + 150 = 350 against the last three invoices 100, 110, 120 (the older 1000 is left out): median 110.
    t.billing.projections.set('acme', [
      { period, total: '200.00' },
      { period, total: '150.00' },
    ]);
    t.billing.invoices.set('acme', ['1000.00', '100.00', '110.00', '120.00']);
    // calm: 130 against 110 is under the ratio 1.5.
    t.billing.projections.set('calm', [{ period, total: '130.00' }]);
    t.billing.invoices.set('calm', ['100.00', '110.00', '120.00']);
    // new: no invoice yet, so no baseline; idle: no projection (no subscription).
    t.billing.projections.set('new', [{ period, total: '5000.00' }]);

    const r = await t.scanner.scan(NOW);

    expect(r).toEqual({ ran: true, series: 0, detections: 1, opened: 1, updated: 0 });
    expect(t.billing.projectedAt).toEqual([NOW, NOW, NOW, NOW]);
    expect(t.anomalies.rows).toHaveLength(1);
    expect(t.anomalies.rows[0]).toMatchObject({ customer: 'acme', meter: '', kind: 'bill_shock', observed: 350, baseline: 110, score: 350 / 110, windowStart: iso(period.start), windowEnd: iso(period.end) });
    expect(t.effects).toEqual([
      'lease anomaly-scan acquired',
      'projected acme',
      'finalized acme',
      'record acme//bill_shock opened',
      'alert anomaly.opened acme//bill_shock',
      'projected calm',
      'finalized calm',
      'projected new',
      'finalized new',
      'projected idle',
      'lease anomaly-scan released',
    ]);
  });

  it('one scan scores the series, then bill shock, then thresholds, all inside the lease', async () => {
    const period = { start: Date.UTC(2026, 2, 1), end: Date.UTC(2026, 3, 1) };
    const t = setup({ thresholds: [{ id: 't1', customer: 'acme', meter: 'api-calls', cap: '100', percents: [100], createdAt: '' }], billing: true });
    t.usage.set('api-calls', 'acme', spikeAt(END - HOUR, 1000));
    t.usage.totals.set('api-calls/acme', '100');
    t.billing.projections.set('acme', [{ period, total: '500' }]);
    t.billing.invoices.set('acme', ['100']);

    await t.scanner.scan(NOW);

    expect(t.effects).toEqual([
      'lease anomaly-scan acquired',
      'hourly api-calls',
      'record acme/api-calls/spike opened',
      'alert anomaly.opened acme/api-calls/spike',
      'projected acme',
      'finalized acme',
      'record acme//bill_shock opened',
      'alert anomaly.opened acme//bill_shock',
      'query api-calls',
      'list acme/api-calls/threshold',
      'record acme/api-calls/threshold opened',
      'alert anomaly.opened acme/api-calls/threshold',
      'lease anomaly-scan released',
    ]);
  });
});
