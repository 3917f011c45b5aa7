import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Meter } from '../meter/index.ts';
import type { Customer } from '../rater/index.ts';
import type { HourlyValue, UsageResult } from '../usage/index.ts';
import type { AlertEvent } from './alerts.ts';
import { AUTO_RESOLVER, kindsInLastHours, type RecoveryRecords } from './auto-resolve.ts';
import { historyHours } from './detect.ts';
import { AnomalyScanner } from './scan.ts';
import type { AlertSink, AnomalyRecords, CatalogView, ScanLease, ScanUsage } from './scan-deps.ts';
import { recordDetection, type Anomaly, type AnomalyStatus } from './store.ts';
import { DEFAULT_DETECTOR_PARAMS, type Detection } from './types.ts';

// Auto-resolution with in-memory collaborators: every effect is appended to one log, in order.

const HOUR = 3_600_000;
const PARAMS = DEFAULT_DETECTOR_PARAMS;
/** Wednesday 18 March 2026, 14:25 UTC: the last complete hour is 13:00-14:00. */
const NOW = Date.UTC(2026, 2, 18, 14, 25);
const END = Date.UTC(2026, 2, 18, 14);
const iso = (ms: number) => new Date(ms).toISOString();

type SeriesFn = (hourStartMs: number) => number;

const catalog = <T>(entries: [string, T][]): CatalogView<T> => {
  const m = new Map(entries);
  return { get: (k) => m.get(k), list: () => [...m.values()] };
};

class Usage implements ScanUsage {
  readonly series = new Map<string, SeriesFn>();
  async hourly(_meter: Meter, fromMs: number, toMs: number): Promise<HourlyValue[]> {
    const out: HourlyValue[] = [];
    for (const [subject, f] of this.series) for (let h = fromMs; h < toMs; h += HOUR) if (f(h) !== 0) out.push({ subject, hourStartMs: h, value: String(f(h)) });
    return out;
  }
  async query(): Promise<UsageResult> {
    throw new Error('not used');
  }
}

/** AnomalyStore's contract in memory: the episode rule of `recordDetection`, and resolve. */
class Records implements AnomalyRecords, RecoveryRecords {
  readonly rows: Anomaly[] = [];
  constructor(private readonly effects: string[]) {}

  async upsert(customer: string, meter: string, d: Detection, nowMs: number, detail: Record<string, unknown> = {}) {
    const r = recordDetection(this.rows.filter((a) => a.customer === customer && a.meter === meter && a.kind === d.kind), customer, meter, d, nowMs, detail);
    if (r.changed) {
      const i = this.rows.findIndex((a) => a.id === r.anomaly.id);
      if (i >= 0) this.rows[i] = r.anomaly;
      else this.rows.push(r.anomaly);
      this.effects.push(`record ${customer}/${d.kind} ${r.created ? 'opened' : 'updated'}`);
    }
    return { anomaly: structuredClone(r.anomaly), created: r.created };
  }

  async list(filter: { customer?: string; meter?: string; kind?: string; status?: AnomalyStatus }): Promise<Anomaly[]> {
    return this.rows
      .filter((a) => (filter.customer ?? a.customer) === a.customer && (filter.meter ?? a.meter) === a.meter && (filter.kind ?? a.kind) === a.kind && (filter.status ?? a.status) === a.status)
      .map((a) => structuredClone(a));
  }

  async resolve(id: string, by: string, note: string): Promise<Anomaly> {
    const a = this.rows.find((r) => r.id === id)!;
    Object.assign(a, { status: 'resolved', resolvedBy: by, resolvedAt: iso(NOW), resolutionNote: note });
    this.effects.push(`resolve ${a.customer}/${a.kind} by ${by}`);
    return structuredClone(a);
  }
}

class Alerts implements AlertSink {
  readonly sent: { event: AlertEvent; anomaly: Anomaly }[] = [];
  constructor(private readonly effects: string[]) {}
  dispatch(event: AlertEvent, a: Anomaly): void {
    this.effects.push(`alert ${event} ${a.customer}/${a.kind}`);
    this.sent.push({ event, anomaly: a });
  }
}

const lease: ScanLease = { withLease: async (_name, fn) => ({ ran: true, value: await fn() }) };
const apiCalls: Meter = { id: 'm_api', slug: 'api-calls', name: 'API calls', eventType: 'call', aggregation: 'COUNT', createdAt: '2026-01-01T00:00:00.000Z' };
const customer = (key: string): Customer => ({ key, name: key, currency: 'USD', timeZone: 'UTC', createdAt: '2026-01-01T00:00:00.000Z' });

/** `normalHours` 0: no recovery option. */
function setup(normalHours = 2) {
  const effects: string[] = [];
  const usage = new Usage();
  const records = new Records(effects);
  const alerts = new Alerts(effects);
  const scanner = new AnomalyScanner({
    usage,
    meters: catalog([['api-calls', apiCalls]]),
    customers: catalog([['acme', customer('acme')], ['globex', customer('globex')]]),
    thresholds: catalog([]),
    anomalies: records,
    alerts,
    leases: lease,
    logger: pino({ level: 'silent' }),
    params: PARAMS,
    billShockRatio: 1.5,
    ...(normalHours > 0 ? { recovery: { records, normalHours } } : {}),
  });
  return { scanner, usage, records, alerts, effects };
}

/** 100 an hour, with one spike of 1000 in the hour starting at `spikeMs`. */
const spikeAt = (spikeMs: number): SeriesFn => (h) => (h === spikeMs ? 1000 : 100);

describe('auto-resolution of anomalies whose usage is back to normal', () => {
  it('an ongoing spike updates its anomaly (severity, window, observed) without a second alert', async () => {
    const t = setup();
    t.usage.series.set('acme', (h) => (h === END - HOUR ? 1000 : h === END ? 3000 : 100));
    await t.scanner.scan(NOW);
    const opened = structuredClone(t.records.rows[0]!);
    await t.scanner.scan(NOW + HOUR);
    expect(t.alerts.sent.map((s) => s.event)).toEqual(['anomaly.opened']);
    expect(t.records.rows).toHaveLength(1);
    const a = t.records.rows[0]!;
    expect(a).toMatchObject({ id: opened.id, status: 'open', windowStart: iso(END - HOUR), windowEnd: iso(END + HOUR), observed: 3000, detections: 2 });
    expect(opened).toMatchObject({ windowEnd: iso(END), observed: 1000 });
  });

  it('resolves a spike after two complete normal hours, as meterline with a note, then alerts anomaly.resolved', async () => {
    const t = setup();
    t.usage.series.set('acme', spikeAt(END - HOUR));
    await t.scanner.scan(NOW);
    expect(t.records.rows[0]).toMatchObject({ kind: 'spike', status: 'open' });

    // One normal hour (14:00-15:00): the hour before was the spike, not yet two in a row.
    await t.scanner.scan(NOW + HOUR);
    expect(t.records.rows[0]!.status).toBe('open');

    t.effects.length = 0;
    await t.scanner.scan(NOW + 2 * HOUR);
    const a = t.records.rows[0]!;
    expect(a).toMatchObject({ status: 'resolved', resolvedBy: AUTO_RESOLVER });
    expect(a.resolutionNote).toMatch(/back to normal: no spike for 2 complete hours/);
    expect(t.effects).toEqual(['resolve acme/spike by meterline', 'alert anomaly.resolved acme/spike']);
    expect(t.alerts.sent.at(-1)).toEqual({ event: 'anomaly.resolved', anomaly: a });

    // Resolved stays resolved; a later spike is a new episode with its own alert.
    t.usage.series.set('acme', (h) => (h === END + 3 * HOUR ? 1000 : 100));
    await t.scanner.scan(NOW + 4 * HOUR);
    expect(t.records.rows.map((r) => r.status)).toEqual(['resolved', 'open']);
    expect(t.alerts.sent.map((s) => s.event)).toEqual(['anomaly.opened', 'anomaly.resolved', 'anomaly.opened']);
  });

  it('a gap stays open while the silence goes on and resolves two hours after usage is back', async () => {
    const t = setup();
    const back = { at: Infinity };
    t.usage.series.set('acme', (h) => (h >= END - 4 * HOUR && h < back.at ? 0 : 100));
    await t.scanner.scan(NOW);
    expect(t.records.rows[0]).toMatchObject({ kind: 'gap', status: 'open' });
    await t.scanner.scan(NOW + 3 * HOUR);
    expect(t.records.rows[0]).toMatchObject({ kind: 'gap', status: 'open' });

    back.at = END + 3 * HOUR; // usage again from 17:00
    await t.scanner.scan(NOW + 4 * HOUR); // 17:00-18:00 normal, 16:00-17:00 silent
    expect(t.records.rows[0]!.status).toBe('open');
    await t.scanner.scan(NOW + 5 * HOUR);
    expect(t.records.rows[0]).toMatchObject({ status: 'resolved', resolvedBy: 'meterline' });
    expect(t.alerts.sent.map((s) => s.event)).toEqual(['anomaly.opened', 'anomaly.resolved']);
  });

  it('resolves acknowledged anomalies too, leaves resolved ones and per-period kinds alone, and only the series that recovered', async () => {
    const t = setup();
    t.usage.series.set('acme', spikeAt(END - HOUR));
    t.usage.series.set('globex', (h) => (h >= END - HOUR ? 1000 : 100)); // still high
    await t.scanner.scan(NOW);
    expect(t.records.rows.map((r) => `${r.customer}/${r.kind}`)).toEqual(['acme/spike', 'globex/spike']);
    t.records.rows[0]!.status = 'acknowledged';
    const threshold: Anomaly = { ...structuredClone(t.records.rows[0]!), id: 'anom_thr', kind: 'threshold', status: 'open', windowEnd: iso(END - 48 * HOUR) };
    t.records.rows.push(threshold);

    await t.scanner.scan(NOW + 2 * HOUR);
    expect(t.records.rows.map((r) => `${r.customer}/${r.kind} ${r.status}`)).toEqual(['acme/spike resolved', 'globex/spike open', 'acme/threshold open']);
    expect(t.alerts.sent.filter((s) => s.event === 'anomaly.resolved').map((s) => s.anomaly.customer)).toEqual(['acme']);
  });

  it('without the recovery option nothing resolves itself', async () => {
    const t = setup(0);
    t.usage.series.set('acme', spikeAt(END - HOUR));
    await t.scanner.scan(NOW);
    await t.scanner.scan(NOW + 5 * HOUR);
    expect(t.records.rows[0]!.status).toBe('open');
    expect(t.alerts.sent.map((s) => s.event)).toEqual(['anomaly.opened']);
  });
});

describe('kindsInLastHours', () => {
  const hours = historyHours(PARAMS);
  const startMs = END - hours * HOUR;
  const values = (f: SeriesFn) => Array.from({ length: hours }, (_, i) => f(startMs + i * HOUR));
  const describeOpts = { unit: 'calls', timeZone: 'UTC' };

  it('holds the kinds detected on any of the last n hours, each judged as of that hour', () => {
    const series = { startMs, values: values(spikeAt(END - 3 * HOUR)) }; // the series' last hour is 13:00-14:00; the spike 11:00-12:00
    expect([...kindsInLastHours(series, PARAMS, describeOpts, 1)]).toEqual([]);
    expect([...kindsInLastHours(series, PARAMS, describeOpts, 2)]).toEqual([]);
    expect([...kindsInLastHours(series, PARAMS, describeOpts, 3)]).toEqual(['spike']);
  });
});
