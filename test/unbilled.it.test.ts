import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import type { Unbilled } from '../api/contracts.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Unbilled usage (GET /api/v1/billing/unbilled) on a real runtime: nats-server, embedded
 * ClickHouse, processor and API. Last month (UTC), with customers covered all month, a
 * subscription that ends mid-month, a gap between two subscriptions, a customer without any, a
 * plan that does not charge a meter, an unknown subject and a meter no plan charges; events on
 * both edges of the month. Every row, quantity and amount follows from the scenario (the
 * arithmetic is beside each expectation).
 */
const DAY = 86_400_000;
const HOUR = 3_600_000;
const now = new Date();
const S = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1); // last month's first instant
const E = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1); // this month's
const MONTH = new Date(S).toISOString().slice(0, 7);
const iso = (ms: number) => new Date(ms).toISOString();

describe('unbilled usage', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;

  const post = async (url: string, body: unknown) => {
    const r = await c.post(url, body);
    if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
  };
  let n = 0;
  const ev = (type: string, subject: string, t: number, data: Record<string, unknown> = {}) => ce({ id: `e-${n++}`, type, subject, time: iso(t), data });
  const times = (k: number, from: number) => Array.from({ length: k }, (_, i) => from + i * HOUR);

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', BILLING_SCHEDULE: '0 0 1 1 *' }));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
    await c.createMeter({ slug: 'tokens', eventType: 'tok', aggregation: 'SUM', valueProperty: '$.tokens' });
    await c.createMeter({ slug: 'gpu', eventType: 'gpu', aggregation: 'SUM', valueProperty: '$.seconds' });
    await c.createMeter({ slug: 'users', eventType: 'login', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' });
    await post('/api/v1/plans', {
      key: 'pro',
      name: 'Pro',
      currency: 'USD',
      interval: 'month',
      charges: [
        { key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.01' } },
        { key: 'tokens', meter: 'tokens', price: { model: 'graduated', tiers: [{ upTo: '1000', unitPrice: '0' }, { upTo: null, unitPrice: '0.002' }] } },
        { key: 'users', meter: 'users', price: { model: 'per_unit', unitPrice: '1' } },
      ],
    });
    await post('/api/v1/plans', { key: 'basic', name: 'Basic', currency: 'USD', interval: 'month', charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.02' } }] });
    for (const key of ['full', 'ends', 'nosub', 'basicco', 'gap']) await post('/api/v1/customers', { key, name: key, currency: 'USD', timeZone: 'UTC' });
    await post('/api/v1/subscriptions', { id: 'sub-full', customer: 'full', plan: 'pro', start: iso(S - 20 * DAY) });
    await post('/api/v1/subscriptions', { id: 'sub-ends', customer: 'ends', plan: 'pro', start: iso(S - 20 * DAY), end: iso(S + 10 * DAY) });
    await post('/api/v1/subscriptions', { id: 'sub-basic', customer: 'basicco', plan: 'basic', start: iso(S - 20 * DAY) });
    await post('/api/v1/subscriptions', { id: 'sub-gap1', customer: 'gap', plan: 'basic', start: iso(S - 20 * DAY), end: iso(S + 5 * DAY) });
    await post('/api/v1/subscriptions', { id: 'sub-gap2', customer: 'gap', plan: 'basic', start: iso(S + 7 * DAY) });

    const events = [
      // full: covered all month by pro; calls and tokens billed; gpu no plan charges.
      ...times(5, S + DAY).map((t) => ev('call', 'full', t)),
      ev('tok', 'full', S + 2 * DAY, { tokens: 10 }),
      ...times(3, S + 3 * DAY).map((t) => ev('gpu', 'full', t, { seconds: '1.5' })),
      // ends: pro until day 11; 4 calls before (billed), 3 after.
      ...times(4, S + DAY).map((t) => ev('call', 'ends', t)),
      ...times(3, S + 12 * DAY).map((t) => ev('call', 'ends', t)),
      ev('login', 'ends', S + 2 * DAY, { user: 'u1' }),
      ev('login', 'ends', S + 11 * DAY, { user: 'u1' }),
      ev('login', 'ends', S + 13 * DAY, { user: 'u2' }),
      // nosub: a customer without a subscription.
      ev('tok', 'nosub', S + 4 * DAY, { tokens: '1500.25' }),
      // basicco: basic charges calls only.
      ...times(2, S + DAY).map((t) => ev('call', 'basicco', t)),
      ev('tok', 'basicco', S + 5 * DAY, { tokens: 2000 }),
      // gap: basic until day 6, none on days 6-7, basic again from day 8.
      ev('login', 'gap', S + DAY, { user: 'u1' }),
      ev('login', 'gap', S + 6 * DAY, { user: 'u2' }),
      ev('login', 'gap', S + 8 * DAY, { user: 'u1' }),
      ev('login', 'gap', S + 9 * DAY, { user: 'u3' }),
      ...times(4, S + 6 * DAY).map((t) => ev('call', 'gap', t)),
      // ghost: no customer; plus one call on each side of the month.
      ...times(7, S + 2 * DAY).map((t) => ev('call', 'ghost', t)),
      ev('call', 'ghost', S - 1),
      ev('call', 'ghost', E),
      ev('gpu', 'ghost', S + 2 * DAY, { seconds: 2 }),
    ];
    expect((await c.ingest(events)).statusCode).toBe(202);
    const want: [string, string, string][] = [
      ['calls', 'full', '5'], ['calls', 'ends', '7'], ['calls', 'basicco', '2'], ['calls', 'gap', '4'], ['calls', 'ghost', '9'],
      ['tokens', 'full', '10'], ['tokens', 'nosub', '1500.25'], ['tokens', 'basicco', '2000'],
      ['gpu', 'full', '4.5'], ['gpu', 'ghost', '2'], ['users', 'ends', '2'], ['users', 'gap', '3'],
    ];
    for (const [slug, subject, value] of want) await eventually(() => total(c, slug, subject), (v) => v === value);
  }, 120_000);

  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const unbilled = async (query: string) => {
    const r = await c.get(`/api/v1/billing/unbilled?${query}`);
    return { status: r.statusCode, body: r.json() as Unbilled & { message?: string }, raw: r };
  };

  it('lists every unbilled row with its reason, exact quantity and amount at list price', async () => {
    const { status, body } = await unbilled(`month=${MONTH}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ month: MONTH, timeZone: 'UTC', from: iso(S), to: iso(E) });
    const rows = body.rows.map((r) => [r.reason, r.subject, r.meter, r.quantity, r.amount, r.currency, r.plan, r.priceSource]);
    expect(rows).toEqual([
      // No plan charges gpu: 3 × 1.5, and ghost's 2; no price.
      ['meter_not_priced', 'full', 'gpu', '4.5', null, null, null, null],
      ['meter_not_priced', 'ghost', 'gpu', '2', null, null, null, null],
      // 7 calls in the month (not the ones at S - 1 ms and at E): lowest of pro 7 × 0.01 and basic 7 × 0.02.
      ['unknown_subject', 'ghost', 'calls', '7', '0.07', 'USD', 'pro', 'catalog_lowest'],
      // After the end on day 11: 3 calls at pro's 0.01; users u1, u2 at pro's 1.
      ['no_subscription', 'ends', 'calls', '3', '0.03', 'USD', 'pro', 'subscription_plan'],
      ['no_subscription', 'ends', 'users', '2', '2.00', 'USD', 'pro', 'subscription_plan'],
      // The gap (days 6-7): 4 calls at basic's 0.02; u2 only, at pro's 1 (basic does not charge users).
      ['no_subscription', 'gap', 'calls', '4', '0.08', 'USD', 'basic', 'subscription_plan'],
      ['no_subscription', 'gap', 'users', '1', '1.00', 'USD', 'pro', 'catalog_lowest'],
      // No subscription: (1500.25 - 1000 free) × 0.002 = 1.0005, rounded once to 1.00.
      ['no_subscription', 'nosub', 'tokens', '1500.25', '1.00', 'USD', 'pro', 'catalog_lowest'],
      // basic does not charge tokens: (2000 - 1000) × 0.002.
      ['meter_not_in_plan', 'basicco', 'tokens', '2000', '2.00', 'USD', 'pro', 'catalog_lowest'],
      // Around the gap, users u1 and u3: 2 distinct users (not 1 + 2 summed per range).
      ['meter_not_in_plan', 'gap', 'users', '2', '2.00', 'USD', 'pro', 'catalog_lowest'],
    ]);
    expect(body.rows[0]!.note).toBe('no plan charges this meter');
    expect(body.rows[2]).toMatchObject({ charge: 'calls', aggregation: 'COUNT' });
    const ends = body.rows.find((r) => r.subject === 'ends' && r.meter === 'calls')!;
    expect(ends.ranges).toEqual([{ start: iso(S + 10 * DAY), end: iso(E) }]);
    expect(ends.customer).toBe('ends');
    expect(body.rows.find((r) => r.subject === 'ghost' && r.meter === 'calls')!.customer).toBeNull();
    expect(body.totals).toEqual([
      { reason: 'meter_not_priced', currency: null, amount: null, rows: 2 },
      { reason: 'unknown_subject', currency: 'USD', amount: '0.07', rows: 1 },
      { reason: 'no_subscription', currency: 'USD', amount: '4.11', rows: 5 },
      { reason: 'meter_not_in_plan', currency: 'USD', amount: '4.00', rows: 2 },
    ]);
    // 0.07 + 4.11 + 4.00 over the 8 priced rows.
    expect(body.currencyTotals).toEqual([{ currency: 'USD', amount: '8.18', rows: 8 }]);
  });

  it('cuts the month in timeZone when given', async () => {
    // Auckland is ahead of UTC: its month starts before S and ends before E, so the call at
    // S - 1 ms is in it and the one at E is not.
    const { status, body } = await unbilled(`month=${MONTH}&timeZone=Pacific/Auckland`);
    expect(status).toBe(200);
    expect(Date.parse(body.from)).toBeLessThan(S);
    expect(body.rows.find((r) => r.subject === 'ghost' && r.meter === 'calls')?.quantity).toBe('8');
  });

  it('answers CSV for Accept: text/csv, the same rows', async () => {
    const json = (await unbilled(`month=${MONTH}`)).body;
    const r = await rt.app!.inject({ method: 'GET', url: `/api/v1/billing/unbilled?month=${MONTH}`, headers: { authorization: `Bearer ${rt.adminKey}`, accept: 'text/csv' } });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/csv/);
    const lines = r.body.trimEnd().split('\r\n');
    expect(lines[0]).toBe('reason,subject,customer,meter,aggregation,quantity,amount,currency,plan,charge,price_source,ranges,note');
    expect(lines.slice(1).map((l) => l.split(',').slice(0, 7).join(','))).toEqual(json.rows.map((x) => [x.reason, x.subject, x.customer ?? '', x.meter, x.aggregation, x.quantity, x.amount ?? ''].join(',')));
  });

  it.each([
    ['month=2026-13', 'query.month', 'YYYY-MM'],
    ['month=november', 'query.month', 'YYYY-MM'],
    ['', 'query.month', 'Required'],
    [`month=${MONTH}&timeZone=Mars/Olympus`, 'query.timeZone', 'time zone'],
  ])('refuses %j naming the field', async (query, field, reason) => {
    const { status, body } = await unbilled(query);
    expect(status).toBe(400);
    expect(body.message).toContain(field);
    expect(body.message).toContain(reason);
  });

  it('meterline unbilled prints the same rows, as JSON or CSV, and refuses a month that does not exist', async () => {
    // Asynchronously: this process serves the API the CLI calls.
    const run = (...args: string[]) =>
      promisify(execFile)(process.execPath, [path.join(import.meta.dirname, '..', 'bin', 'meterline.mjs'), 'unbilled', '--url', rt.url!.replace('0.0.0.0', '127.0.0.1'), ...args], {
        env: { ...process.env, METERLINE_API_KEY: rt.adminKey, NO_COLOR: '1' },
      });
    const json = (await unbilled(`month=${MONTH}`)).body;
    const out = await run('--month', MONTH);
    expect((JSON.parse(out.stdout) as Unbilled).rows).toEqual(json.rows);
    expect(out.stderr).toContain('no_subscription');
    expect(out.stderr).toContain('4.11 USD');
    const csv = await run('--month', MONTH, '--csv');
    expect(csv.stdout.trimEnd().split('\r\n')).toHaveLength(json.rows.length + 1);
    await expect(run('--month', '2026-13')).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('give a month YYYY-MM') });
  }, 60_000);

  it('needs the billing scope', async () => {
    const read = await rt.key('read');
    const r = await rt.app!.inject({ method: 'GET', url: `/api/v1/billing/unbilled?month=${MONTH}`, headers: { authorization: `Bearer ${read}` } });
    expect(r.statusCode).toBe(403);
  });
});
