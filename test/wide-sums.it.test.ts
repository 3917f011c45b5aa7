import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { Decimal } from '../common/decimal.ts';
import { rate } from '../rater/pricing/index.ts';
import { client } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Sums never wrap: values are Decimal(38, 9) (29 integer digits), and two of them near the top
 * of that range summed in a Decimal(38, 9) state came out negative. The rollups (sql/006) keep
 * Decimal(76, 9) sum states and reads of `meter_values` widen before summing, so SUM and AVG are
 * exact from every table, and JS divides and multiplies at a precision that keeps every digit.
 */
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const D0 = Date.UTC(2026, 9, 5);
const BIG = '90000000000000000000000000000'; // 9e28: 29 integer digits, the top of the range
const BIG_FRAC_A = '99999999999999999999999999999.999999999'; // the largest value
const BIG_FRAC_B = '99999999999999999999999999998.000000002';

describe('sums and averages of values at the top of the range', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d' }));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'big-sum', eventType: 'big', aggregation: 'SUM', valueProperty: '$.v' });
    await c.createMeter({ slug: 'big-avg', eventType: 'big', aggregation: 'AVG', valueProperty: '$.v' });
    await c.createMeter({ slug: 'frac-sum', eventType: 'frac', aggregation: 'SUM', valueProperty: '$.v' });
    await c.createMeter({ slug: 'frac-avg', eventType: 'frac', aggregation: 'AVG', valueProperty: '$.v' });
    const at = (ms: number) => new Date(ms).toISOString();
    const r = await c.ingest([
      ce({ id: 'b1', type: 'big', subject: 'acme', time: at(D0 + HOUR + 5_000), data: { v: BIG } }),
      ce({ id: 'b2', type: 'big', subject: 'acme', time: at(D0 + HOUR + 65_000), data: { v: BIG } }),
      ce({ id: 'f1', type: 'frac', subject: 'acme', time: at(D0 + 2 * HOUR + 5_000), data: { v: BIG_FRAC_A } }),
      ce({ id: 'f2', type: 'frac', subject: 'acme', time: at(D0 + 2 * HOUR + 6_000), data: { v: BIG_FRAC_B } }),
    ]);
    expect(r.statusCode).toBe(202);
    await eventually(async () => (await c.query('frac-sum')).data[0]?.value, (v) => v !== undefined);
    await eventually(async () => (await c.query('big-sum')).data[0]?.value, (v) => v !== undefined);
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const ranges: [string, number, number, string][] = [
    ['whole days', D0, D0 + DAY, 'meter_usage_1d_v2'],
    ['whole hours', D0 + HOUR, D0 + 3 * HOUR, 'meter_usage_1h_v2'],
    ['whole minutes', D0 + HOUR, D0 + 3 * HOUR - 60_000, 'meter_usage_1m_v2'],
    ['unaligned (per-event values)', D0 + HOUR + 1, D0 + 3 * HOUR - 1, 'meter_values'],
  ];
  for (const [name, from, to, source] of ranges) {
    it(`SUM and AVG over ${name} are exact (${source})`, async () => {
      const q = async (slug: string) => {
        const r = await c.query(slug, { from: new Date(from).toISOString(), to: new Date(to).toISOString() });
        expect(r.source).toBe(source);
        return r.data[0]?.value;
      };
      expect(await q('big-sum')).toBe('180000000000000000000000000000');
      expect(await q('big-avg')).toBe(BIG);
      expect(await q('frac-sum')).toBe('199999999999999999999999999998.000000001');
      // (A + B) / 2 = 99999999999999999999999999999.0000000005, rounded half-up to 9 places.
      expect(await q('frac-avg')).toBe('99999999999999999999999999999.000000001');
    });
  }

  it('hourly windows sum each hour exactly', async () => {
    const r = await c.query('big-sum', { from: new Date(D0).toISOString(), to: new Date(D0 + DAY).toISOString(), windowSize: 'HOUR' });
    expect(r.data.map((d) => [d.windowStart, d.value])).toEqual([[new Date(D0 + HOUR).toISOString().replace('.000Z', 'Z'), '180000000000000000000000000000']]);
  });

  it('reconcile compares the wide sums and is ok', async () => {
    const r = await c.get(`/api/v1/reconcile?from=${new Date(D0).toISOString()}&to=${new Date(D0 + DAY).toISOString()}&meter=big-sum`);
    expect(r.statusCode).toBe(200);
    const line = r.json().meters[0];
    expect(line.values).toEqual({ count: '2', sum: '180000000000000000000000000000' });
    for (const t of ['meter_usage_1m_v2', 'meter_usage_1h_v2', 'meter_usage_1d_v2']) expect(line.rollups[t]).toEqual({ count: '2', sum: '180000000000000000000000000000' });
    expect(r.json().ok).toBe(true);
  });
});

describe('decimal arithmetic in JS keeps every digit (common/decimal.ts)', () => {
  it('averages two values of 29 integer digits and 9 decimals exactly to 9 places', () => {
    const avg = new Decimal(BIG_FRAC_A).plus(BIG_FRAC_B).div(2).toDecimalPlaces(9, Decimal.ROUND_HALF_UP);
    expect(avg.toFixed()).toBe('99999999999999999999999999999.000000001');
    // The default decimal.js precision (20 digits) would have lost the integer part's tail.
    expect(new Decimal('123456789012345678901234567890123456789012345678901234567890.123456789').div(3).toDecimalPlaces(9).toFixed()).toBe(
      '41152263004115226300411522630041152263004115226300411522630.041152263',
    );
    expect(new Decimal('1e70').toString()).toBe('1' + '0'.repeat(70));
  });

  it('prices a 60-digit quantity exactly', () => {
    const quantity = '123456789012345678901234567890123456789012345678901234567890';
    const r = rate({ model: 'per_unit', unitPrice: '0.000001', currency: 'USD' } as Parameters<typeof rate>[0], { quantity });
    expect(r.amount).toBe('123456789012345678901234567890123456789012345678901234.56789');
    // A sum of such quantities, as the rater adds corrections to usage.
    expect(new Decimal(quantity).plus(quantity).toFixed()).toBe('246913578024691357802469135780246913578024691357802469135780');
  });
});
