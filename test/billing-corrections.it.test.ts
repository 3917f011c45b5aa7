import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { Leases } from '../common/lease.ts';
import { silentLogger } from '../common/logger.ts';
import { Billing, type Invoice } from '../rater/index.ts';
import { ClickHouseUsageStore } from '../usage/index.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, cutoffClock, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Corrections in a close of several subscriptions: the close asks once which customers gained
 * late usage in an earlier period (not once per subscription), and only those customers get a
 * correction line. Months are the two before the current one, so both periods have ended.
 */
const now = new Date();
const M1 = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1);
const M2 = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
const M3 = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
const month = (ms: number) => new Date(ms).toISOString().slice(0, 7);
const HOUR = 3_600_000;

describe('billing close: corrections of many subscriptions', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  let cut = 0; // the first month's cutoff: between the on-time and the late events
  const clock = cutoffClock(); // the processor's: stamps ingested_at
  const customers = ['a', 'b', 'c', 'd'];

  const billingWith = async (graceMs: number, holder: string) =>
    new Billing({
      store: rt.store!,
      usage: new ClickHouseUsageStore({ store: rt.store! }),
      meters: rt.catalog.meters,
      customers: rt.catalog.customers,
      plans: rt.catalog.plans,
      subscriptions: rt.catalog.subscriptions,
      kv: rt.nats.kv,
      leases: await Leases.open(rt.nats.js, { holder }),
      logger: silentLogger(),
      options: { graceMs, rounding: 'half_up', numberPrefix: 'T', safetyMs: 0 },
    });

  const ingest = async (events: { subject: string; id: string; time: number }[]) => {
    const r = await c.ingest(events.map((e) => ce({ id: e.id, type: 'call', subject: e.subject, time: new Date(e.time).toISOString() })));
    expect(r.statusCode).toBe(202);
  };
  const expectTotals = async (want: Record<string, number>) => {
    for (const [s, n] of Object.entries(want)) await eventually(() => total(c, 'calls', s, { from: new Date(M1).toISOString(), to: new Date(M3).toISOString() }), (v) => v === String(n));
  };

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', BILLING_SCHEDULE: '0 0 1 1 *' }), undefined, { now: clock.now });
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
    const post = async (url: string, body: unknown) => {
      const r = await c.post(url, body);
      if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
    };
    await post('/api/v1/plans', { key: 'metered', name: 'Metered', currency: 'USD', interval: 'month', charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.10' } }] });
    for (const k of customers) {
      await post('/api/v1/customers', { key: k, name: `Customer ${k}`, currency: 'USD' });
      await post('/api/v1/subscriptions', { id: `sub-${k}`, customer: k, plan: 'metered', start: new Date(M1).toISOString() });
    }
    // On time: 5 calls of each customer in the first month.
    await ingest(customers.flatMap((s) => Array.from({ length: 5 }, (_, i) => ({ subject: s, id: `${s}-m1-${i}`, time: M1 + i * HOUR }))));
    await expectTotals({ a: 5, b: 5, c: 5, d: 5 });
    cut = clock.cut(); // the late events are stamped after the cutoff
    // After the first month's cutoff: late first-month calls of a (3) and c (7); d's calls are
    // of the second month (not late), b has none.
    await ingest([
      ...Array.from({ length: 3 }, (_, i) => ({ subject: 'a', id: `a-late-${i}`, time: M1 + 2 * 24 * HOUR + i * HOUR })),
      ...Array.from({ length: 7 }, (_, i) => ({ subject: 'c', id: `c-late-${i}`, time: M1 + 3 * 24 * HOUR + i * HOUR })),
      ...Array.from({ length: 4 }, (_, i) => ({ subject: 'd', id: `d-m2-${i}`, time: M2 + i * HOUR })),
    ]);
    await expectTotals({ a: 8, b: 5, c: 12, d: 9 });
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  it('bills late usage as a correction of exactly the customers that have it', async () => {
    const first = await (await billingWith(cut - M2, 'close-1')).closeByHand(month(M1), { dryRun: false, nowMs: Date.now() });
    expect(first.invoices.map((i) => [i.customer, i.lines.find((l) => l.kind === 'usage')?.quantity])).toEqual(customers.map((k) => [k, '5']));

    const second = await (await billingWith(Date.now() - 1 - M3, 'close-2')).closeByHand(month(M2), { dryRun: false, nowMs: Date.now() });
    const byCustomer = new Map<string, Invoice>(second.invoices.map((i) => [i.customer, i]));
    const corrections = (k: string) => byCustomer.get(k)!.lines.filter((l) => l.kind === 'correction').map((l) => [l.periodStart, l.quantity, l.amount]);
    expect(corrections('a')).toEqual([[new Date(M1).toISOString(), '3', '0.30']]);
    expect(corrections('b')).toEqual([]);
    expect(corrections('c')).toEqual([[new Date(M1).toISOString(), '7', '0.70']]);
    expect(corrections('d')).toEqual([]);
    expect(byCustomer.get('d')!.lines.find((l) => l.kind === 'usage')?.quantity).toBe('4');
    expect(second.invoices.map((i) => i.total)).toEqual(['0.30', '0.00', '0.70', '0.40']);
  });
});
