import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * The monthly finance aggregates file each invoice by the month its period starts in the
 * customer's own time zone. A Tokyo customer's November starts on 31 October 15:00 UTC: filed by
 * the UTC start it landed in October, the month finance had already closed.
 */
describe('finance aggregates by the customer\'s own month', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;

  beforeAll(async () => {
    nats = await startTestNats();
    // The processor stamps ingested_at as if it were 20 November, before November's cutoff, so
    // the usage is on the November invoices rather than a correction on December's.
    const shiftMs = Date.now() - Date.parse('2026-11-20T00:00:00Z');
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', BILLING_SCHEDULE: '0 0 1 1 *' }), undefined, { now: () => Date.now() - shiftMs });
    c = client(rt.app!, rt.adminKey);
    const post = async (url: string, body: unknown) => {
      const r = await c.post(url, body);
      if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
    };
    await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
    await post('/api/v1/plans', { key: 'metered', name: 'Metered', currency: 'USD', interval: 'month', charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.50' } }] });
    for (const [key, timeZone, start] of [
      ['tokyo', 'Asia/Tokyo', '2026-10-31T15:00:00Z'],
      ['la', 'America/Los_Angeles', '2026-11-01T07:00:00Z'],
    ] as const) {
      await post('/api/v1/customers', { key, name: key, currency: 'USD', timeZone });
      await post('/api/v1/subscriptions', { customer: key, plan: 'metered', start });
    }
    // Three calls each on 1 November local time (31 October in UTC for Tokyo).
    const events = ['tokyo', 'la'].flatMap((subject) => [0, 1, 2].map((i) => ce({ id: `${subject}-${i}`, type: 'call', subject, time: new Date(Date.parse(subject === 'tokyo' ? '2026-10-31T16:00:00Z' : '2026-11-01T08:00:00Z') + i * 60_000).toISOString() })));
    expect((await c.ingest(events)).statusCode).toBe(202);
    await eventually(() => total(c, 'calls', 'tokyo'), (v) => v === '3');
    await eventually(() => total(c, 'calls', 'la'), (v) => v === '3');
    const close = await c.post('/api/v1/billing/close', { period: '2026-11' });
    expect(close.statusCode).toBe(200);
  }, 120_000);

  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  it('files the November invoices of Tokyo and Los Angeles under November, none under October', async () => {
    const rowsOf = async (period: string) => {
      const r = await c.get(`/api/v1/billing/aggregates?period=${period}`);
      expect(r.statusCode).toBe(200);
      return (r.json() as { rows: { customer: string; kind: string; quantity: string; amount: string }[] }).rows.filter((x) => x.kind === 'usage');
    };
    expect((await rowsOf('2026-11')).map((r) => [r.customer, r.quantity, r.amount])).toEqual([
      ['la', '3', '1.5'],
      ['tokyo', '3', '1.5'],
    ]);
    expect(await rowsOf('2026-10')).toEqual([]);
    const csv = await c.get('/api/v1/billing/aggregates?period=2026-11&format=csv');
    expect(csv.body).toContain('tokyo,USD,calls,usage,3,1.5,150');
  });
});
