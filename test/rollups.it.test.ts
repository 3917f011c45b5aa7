import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal } from '../common/decimal.ts';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { tzOffsetMinutes } from '../usage/index.ts';
import { client } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Late and out-of-order events land in the window of their event time, and every aggregation
 * read from the minute, hour and day rollups (and from per-event values for unaligned ranges)
 * equals the same aggregation computed directly over the events sent.
 */
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const D0 = Date.UTC(2026, 9, 31); // 2026-10-31, a Saturday; US DST ends 2026-11-01

interface Ev {
  id: string;
  subject: string;
  timeMs: number;
  v: string;
  user: string;
  region: string;
}

function makeEvents(): Ev[] {
  const out: Ev[] = [];
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 900; i++) {
    // Clustered around hour and day boundaries (±90 s), across three days.
    const boundary = D0 + Math.floor(rand() * 72) * HOUR;
    const timeMs = boundary + Math.floor((rand() - 0.5) * 180_000);
    out.push({ id: `ev-${i}`, subject: i % 3 === 0 ? 'alpha' : 'beta', timeMs, v: (Math.floor(rand() * 100000) / 1000).toFixed(3), user: `u${Math.floor(rand() * 40)}`, region: rand() < 0.5 ? 'eu' : 'us' });
  }
  return out;
}

type Agg = 'SUM' | 'COUNT' | 'UNIQUE_COUNT' | 'MIN' | 'MAX' | 'AVG' | 'LATEST';

/** The aggregation computed directly over the events, the way a finance analyst would check it. */
function expected(events: Ev[], agg: Agg): string | undefined {
  if (events.length === 0) return undefined;
  const vals = events.map((e) => new Decimal(e.v));
  switch (agg) {
    case 'SUM':
      return vals.reduce((a, b) => a.plus(b), new Decimal(0)).toFixed();
    case 'COUNT':
      return String(events.length);
    case 'UNIQUE_COUNT':
      return String(new Set(events.map((e) => e.user)).size);
    case 'MIN':
      return Decimal.min(...vals).toFixed();
    case 'MAX':
      return Decimal.max(...vals).toFixed();
    case 'AVG':
      return vals.reduce((a, b) => a.plus(b), new Decimal(0)).div(vals.length).toDecimalPlaces(9, Decimal.ROUND_HALF_UP).toFixed();
    case 'LATEST': {
      const last = [...events].sort((a, b) => a.timeMs - b.timeMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).at(-1)!;
      return new Decimal(last.v).toFixed();
    }
  }
}

const AGGS: Agg[] = ['SUM', 'COUNT', 'UNIQUE_COUNT', 'MIN', 'MAX', 'AVG', 'LATEST'];

describe('late events, out-of-order arrival and rollups', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  const events = makeEvents();

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d' }));
    c = client(rt.app!, rt.adminKey);
    for (const agg of AGGS) {
      await c.createMeter({ slug: `m-${agg.toLowerCase()}`, eventType: 'usage', aggregation: agg, ...(agg === 'COUNT' ? {} : { valueProperty: agg === 'UNIQUE_COUNT' ? '$.user' : '$.v' }), groupBy: { region: '$.region' } });
    }
    const toCe = (e: Ev) => ce({ id: e.id, type: 'usage', subject: e.subject, time: new Date(e.timeMs).toISOString(), data: { v: e.v, user: e.user, region: e.region } });
    // Arrival order: the last day first, then the events of the first two days, shuffled
    // (hours and days late, out of order).
    const recent = events.filter((e) => e.timeMs >= D0 + 2 * DAY);
    const late = events.filter((e) => e.timeMs < D0 + 2 * DAY).reverse();
    for (let i = 0; i < recent.length; i += 100) expect((await c.ingest(recent.slice(i, i + 100).map(toCe))).statusCode).toBe(202);
    await eventually(async () => (await c.query('m-count', { from: new Date(D0 + 2 * DAY).toISOString() })).data[0]?.value, (v) => v === String(recent.length));
    for (let i = 0; i < late.length; i += 37) expect((await c.ingest(late.slice(i, i + 37).map(toCe))).statusCode).toBe(202);
    await eventually(async () => (await c.query('m-count')).data[0]?.value, (v) => v === String(events.length));
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const ranges: [string, number, number, string][] = [
    ['whole days', D0, D0 + 3 * DAY, 'meter_usage_1d_v2'],
    ['whole hours', D0 + 5 * HOUR, D0 + 50 * HOUR, 'meter_usage_1h_v2'],
    ['whole minutes', D0 + 5 * HOUR + 1 * 60_000, D0 + 50 * HOUR - 1 * 60_000, 'meter_usage_1m_v2'],
    ['unaligned (per-event values)', D0 + 5 * HOUR + 1234, D0 + 50 * HOUR - 4321, 'meter_values'],
  ];

  for (const [name, from, to, source] of ranges) {
    it(`totals per subject over ${name} agree with the events for every aggregation`, async () => {
      for (const agg of AGGS) {
        const r = await c.query(`m-${agg.toLowerCase()}`, { from: new Date(from).toISOString(), to: new Date(to).toISOString(), groupBy: 'subject' });
        expect(r.source).toBe(source);
        for (const subject of ['alpha', 'beta']) {
          const want = expected(events.filter((e) => e.subject === subject && e.timeMs >= from && e.timeMs < to), agg);
          expect(r.data.find((d) => d.subject === subject)?.value, `${agg} ${subject}`).toBe(want);
        }
      }
    });
  }

  it('hourly windows, grouped by region, match event time (late events in their own hour)', async () => {
    for (const agg of AGGS) {
      const r = await c.query(`m-${agg.toLowerCase()}`, { from: new Date(D0).toISOString(), to: new Date(D0 + 3 * DAY).toISOString(), windowSize: 'HOUR', groupBy: 'region' });
      const got = new Map(r.data.map((d) => [`${d.windowStart}|${d.groupBy.region}`, d.value]));
      const want = new Map<string, string>();
      for (let h = D0; h < D0 + 3 * DAY; h += HOUR) {
        for (const region of ['eu', 'us']) {
          const v = expected(events.filter((e) => e.region === region && e.timeMs >= h && e.timeMs < h + HOUR), agg);
          if (v !== undefined) want.set(`${new Date(h).toISOString().replace('.000Z', 'Z')}|${region}`, v);
        }
      }
      expect(got, agg).toEqual(want);
    }
  });

  it('daily windows in a time zone with a DST change are cut at local midnight', async () => {
    const tz = 'America/New_York';
    const r = await c.query('m-sum', { from: new Date(D0).toISOString(), to: new Date(D0 + 3 * DAY).toISOString(), windowSize: 'DAY', windowTimeZone: tz });
    expect(r.source).toBe('meter_usage_1h_v2');
    for (const row of r.data) {
      const start = Date.parse(row.windowStart);
      const end = Date.parse(row.windowEnd);
      // Local midnight at both ends (the 2026-11-01 day is 25 hours long).
      for (const t of [start, end]) expect(new Date(t + tzOffsetMinutes(tz, t) * 60_000).getUTCHours()).toBe(0);
      const want = expected(events.filter((e) => e.timeMs >= Math.max(start, D0) && e.timeMs < Math.min(end, D0 + 3 * DAY)), 'SUM');
      expect(row.value, row.windowStart).toBe(want);
    }
    expect(r.data.some((d) => Date.parse(d.windowEnd) - Date.parse(d.windowStart) === 25 * HOUR)).toBe(true);
  });

  it('minute windows filtered by a group-by value', async () => {
    const from = D0 + 24 * HOUR - 2 * 60_000;
    const to = D0 + 24 * HOUR + 2 * 60_000;
    const r = await c.query('m-count', { from: new Date(from).toISOString(), to: new Date(to).toISOString(), windowSize: 'MINUTE', 'filterGroupBy[region]': 'eu' });
    const sum = r.data.reduce((a, d) => a + Number(d.value), 0);
    expect(sum).toBe(events.filter((e) => e.region === 'eu' && e.timeMs >= from && e.timeMs < to).length);
  });

  it('reconciliation finds rollups equal to the raw events', async () => {
    const r = await c.get(`/api/v1/reconcile?from=${new Date(D0).toISOString()}&to=${new Date(D0 + 3 * DAY).toISOString()}`);
    const body = r.json() as { ok: boolean; meters: { meter: string; rawEvents: string; values: { count: string } }[] };
    expect(body.ok).toBe(true);
    const inRange = events.filter((e) => e.timeMs >= D0 && e.timeMs < D0 + 3 * DAY).length;
    expect(inRange).toBeLessThan(events.length); // some events fall just before D0
    for (const m of body.meters) {
      expect(m.rawEvents).toBe(String(inRange));
      expect(m.values.count).toBe(String(inRange));
    }
  });

  it('a meter created after its events arrived is backfilled from the raw events', async () => {
    await c.createMeter({ slug: 'late-meter', eventType: 'usage', aggregation: 'SUM', valueProperty: '$.v' });
    await eventually(async () => (await c.query('late-meter')).data[0]?.value, (v) => v === expected(events, 'SUM'));
    // And new events count for it at once, exactly once.
    await c.ingest([ce({ id: 'after-meter', type: 'usage', subject: 'alpha', time: new Date(D0 + HOUR).toISOString(), data: { v: '1', user: 'x', region: 'eu' } })]);
    const want = new Decimal(expected(events, 'SUM')!).plus(1).toFixed();
    await eventually(async () => (await c.query('late-meter')).data[0]?.value, (v) => v === want);
    const r = await c.get(`/api/v1/reconcile?from=${new Date(D0).toISOString()}&to=${new Date(D0 + 3 * DAY).toISOString()}&meter=late-meter`);
    expect((r.json() as { ok: boolean }).ok).toBe(true);
  });
});
