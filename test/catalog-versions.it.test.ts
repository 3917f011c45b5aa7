import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Leases } from '../common/lease.ts';
import { silentLogger } from '../common/logger.ts';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { Billing, type Invoice } from '../rater/index.ts';
import { ClickHouseUsageStore } from '../usage/index.ts';
import { client, total } from './api-client.ts';
import { ce, cutoffClock, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Plan versions through the API on real NATS and ClickHouse: a version published from October,
 * two subscriptions of one plan on different versions and a third migrated mid-period, closed
 * into invoices checked to the cent; the preview of a draft version (nothing stored); the
 * refusals (currency, stale version, a charged meter's deletion, a meter's definition).
 */
const SEP = Date.UTC(2026, 8, 1);
const OCT = Date.UTC(2026, 9, 1);
const NOV = Date.UTC(2026, 10, 1);
const DAY = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();

describe('plan versions end to end', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  /** The processor's clock: October's usage is ingested before `cut`, the close's cutoff (see billing.it.test.ts). */
  const clock = cutoffClock();
  let cut = 0;
  const v1 = { name: 'Standard', currency: 'USD', interval: 'month', baseFee: { amount: '10', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.10' } }] };
  const v2 = { ...v1, name: 'Standard (2026-10)', baseFee: { amount: '20', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.05' } }] };

  const post = async (url: string, body: unknown, expected = 201) => {
    const r = await c.post(url, body);
    if (r.statusCode !== expected) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
    return r.json() as Record<string, unknown>;
  };

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', BILLING_SCHEDULE: '0 0 1 1 *' }), undefined, { now: clock.now });
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
    await c.createMeter({ slug: 'unused', name: 'Unused', eventType: 'other', aggregation: 'COUNT' });
    await post('/api/v1/plans', { key: 'std', ...v1 });
    await post('/api/v1/plans/std/versions', { ...v2, effectiveFrom: iso(OCT), expectedVersion: 1 });
    for (const k of ['early', 'late', 'moved']) await post('/api/v1/customers', { key: k, name: k, currency: 'USD', timeZone: 'UTC' });
    await post('/api/v1/subscriptions', { id: 'sub-early', customer: 'early', plan: 'std', start: iso(SEP) });
    await post('/api/v1/subscriptions', { id: 'sub-late', customer: 'late', plan: 'std', start: iso(OCT) });
    await post('/api/v1/subscriptions', { id: 'sub-moved', customer: 'moved', plan: 'std', start: iso(SEP) });
    await post('/api/v1/subscriptions/sub-moved/migrate', { version: 2, effectiveAt: iso(OCT + 15 * DAY) }, 200);
    // October: 10 calls in the first half, 20 in the second, per customer.
    const events = ['early', 'late', 'moved'].flatMap((k) => [
      ...Array.from({ length: 10 }, (_, i) => ce({ id: `${k}-a${i}`, type: 'call', subject: k, time: iso(OCT + 2 * DAY + i * 3_600_000) })),
      ...Array.from({ length: 20 }, (_, i) => ce({ id: `${k}-b${i}`, type: 'call', subject: k, time: iso(OCT + 20 * DAY + i * 3_600_000) })),
    ]);
    expect((await c.ingest(events)).statusCode).toBe(202);
    for (const k of ['early', 'late', 'moved']) await eventually(() => total(c, 'calls', k), (v) => v === '30');
    cut = clock.cut();
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  it('pins each subscription phase to the version in force at its start', async () => {
    const subs = (await c.get('/api/v1/subscriptions?sort=id')).json() as { items: { id: string; phases: { version: number; start: string }[] }[]; totalCount: number };
    expect(subs.totalCount).toBe(3);
    expect(Object.fromEntries(subs.items.map((s) => [s.id, s.phases.map((p) => p.version)]))).toEqual({ 'sub-early': [1], 'sub-late': [2], 'sub-moved': [1, 2] });
  });

  it('closes October: each subscription billed with its own version, exactly', async () => {
    // The runtime's own services, with a grace that puts October's cutoff after its usage was ingested.
    const billing = new Billing({
      store: rt.store!,
      usage: new ClickHouseUsageStore({ store: rt.store! }),
      meters: rt.catalog.meters,
      customers: rt.catalog.customers,
      plans: rt.catalog.plans,
      subscriptions: rt.catalog.subscriptions,
      kv: rt.nats.kv,
      leases: await Leases.open(rt.nats.js, { holder: 'versions-test' }),
      logger: silentLogger(),
      options: { graceMs: cut - NOV, rounding: 'half_up', numberPrefix: 'T', safetyMs: 0 },
    });
    const { invoices, skipped } = await billing.closeByHand('2026-10', { dryRun: false, nowMs: Math.max(Date.now(), cut + 1) });
    expect(skipped).toEqual([]);
    const by = Object.fromEntries(invoices.map((i) => [i.customer, i]));
    const amounts = (i: Invoice) => i.lines.map((l) => [l.kind, l.quantity, l.amount]);
    // Version 1: 10.00 base + 30 × 0.10.
    expect(amounts(by.early!)).toEqual([['base_fee', '1', '10.00'], ['usage', '30', '3.00']]);
    expect(by.early!.total).toBe('13.00');
    // Version 2: 20.00 base + 30 × 0.05.
    expect(amounts(by.late!)).toEqual([['base_fee', '1', '20.00'], ['usage', '30', '1.50']]);
    expect(by.late!.total).toBe('21.50');
    // Migrated on the 16th: 15/31 of 10.00 and 16/31 of 20.00; 10 calls at 0.10, 20 at 0.05.
    expect(by.moved!.lines.filter((l) => l.kind === 'base_fee').map((l) => l.amount)).toEqual(['4.84', '10.32']);
    expect(by.moved!.lines.filter((l) => l.kind === 'usage').map((l) => [l.quantity, l.amount])).toEqual([['10', '1.00'], ['20', '1.00']]);
    expect(by.moved!.total).toBe('17.16');
  });

  it('shows the version in force now and every version', async () => {
    const list = (await c.get('/api/v1/plans')).json() as { items: { key: string; version: number }[]; page: number; pageSize: number; totalCount: number };
    expect(list).toMatchObject({ page: 1, pageSize: 100, totalCount: 1, items: [{ key: 'std', version: 2 }] });
    const plan = (await c.get('/api/v1/plans/std')).json() as Record<string, unknown>;
    expect(plan).toMatchObject({ key: 'std', version: 2, latestVersion: 2, baseFee: { amount: '20' }, versions: [{ version: 1, name: 'Standard' }, { version: 2, effectiveFrom: iso(OCT), name: 'Standard (2026-10)' }] });
    expect((await c.get('/api/v1/plans/std/versions/1')).json()).toMatchObject({ version: 1, baseFee: { amount: '10' } });
    expect((await c.get('/api/v1/plans/std/versions/9')).statusCode).toBe(404);
  });

  it('refuses a version that changes the currency, a stale expectedVersion and an unknown meter, naming the field', async () => {
    const eur = await c.post('/api/v1/plans/std/versions', { ...v2, currency: 'EUR', effectiveFrom: iso(Date.now() + DAY) });
    expect(eur.statusCode).toBe(400);
    expect(eur.json().message).toMatch(/^invalid body: body\.currency: a plan's versions share its currency \(USD\): its customers are billed in it; create a new plan/);
    const stale = await c.post('/api/v1/plans/std/versions', { ...v2, effectiveFrom: iso(Date.now() + DAY), expectedVersion: 1 });
    expect(stale.statusCode).toBe(409);
    const meter = await c.post('/api/v1/plans/std/versions', { ...v2, charges: [{ key: 'x', meter: 'nope', price: { model: 'per_unit', unitPrice: '1' } }], effectiveFrom: iso(Date.now() + DAY) });
    expect(meter.statusCode).toBe(400);
    expect(meter.json().message).toContain('body.charges.0.meter: meter "nope" of charge "x" does not exist');
    const price = await c.post('/api/v1/plans/std/versions', { ...v2, charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit' } }], effectiveFrom: iso(Date.now() + DAY) });
    expect(price.statusCode).toBe(400);
    expect(price.json().message).toContain('body.charges.0.price');
    expect(((await c.get('/api/v1/plans/std')).json() as { latestVersion: number }).latestVersion).toBe(2);
  });

  it("previews a draft version on the current period's usage without storing it", async () => {
    const draft = { key: 'std', ...v2, baseFee: { amount: '40', timing: 'arrears' } };
    const r = await c.post('/api/v1/invoices/preview', { kind: 'plan-version', plan: draft, effectiveFrom: iso(Date.now() + DAY), subscription: 'sub-early' });
    expect(r.statusCode).toBe(200);
    const p = r.json() as { items: { subscription: string; before: Invoice; after: Invoice; difference: string }[] };
    expect(p.items.map((i) => i.subscription)).toEqual(['sub-early']);
    // No usage this period: the arrears base fee only, before (v1, 10.00) and after (40.00).
    expect([p.items[0]!.before.total, p.items[0]!.after.total, p.items[0]!.difference]).toEqual(['10.00', '40.00', '30']);
    expect(((await c.get('/api/v1/plans/std')).json() as { latestVersion: number }).latestVersion).toBe(2);
    expect(((await c.get('/api/v1/subscriptions/sub-early')).json() as { phases: unknown[] }).phases).toHaveLength(1);
    const bad = await c.post('/api/v1/invoices/preview', { kind: 'terms', subscription: 'sub-early', overrides: { charges: { calls: { model: 'graduated', tiers: [] } } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain('body.overrides.charges.calls');
  });

  it('edits terms, refusing a charge the plan does not have', async () => {
    const bad = await c.post('/api/v1/subscriptions/sub-late/terms', { overrides: { charges: { tokens: { model: 'per_unit', unitPrice: '1' } } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain('body.overrides.charges.tokens: plan "std" (version 2) has no charge "tokens"');
    const ok = await c.post('/api/v1/subscriptions/sub-late/terms', { overrides: { baseFee: '15' }, discounts: [{ type: 'percent', value: '10' }] });
    expect(ok.statusCode).toBe(200);
    expect(((await c.get('/api/v1/subscriptions/sub-late')).json() as { overrides: unknown }).overrides).toEqual({ baseFee: '15' });
  });

  it('refuses to delete a meter a plan charges for, naming the plan and charges', async () => {
    const r = await c.del('/api/v1/meters/calls');
    expect(r.statusCode).toBe(409);
    expect(r.json().message).toMatch(/^meter "calls" is charged for by plan "std" \(std v1 calls, std v2 calls\)/);
    expect((await c.get('/api/v1/meters/calls')).statusCode).toBe(200);
    expect((await c.del('/api/v1/meters/unused')).statusCode).toBe(204);
  });

  it('renames a meter but refuses to re-define it', async () => {
    const patch = (body: unknown) => rt.app!.inject({ method: 'PATCH', url: '/api/v1/meters/calls', headers: { authorization: `Bearer ${rt.adminKey}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
    const ok = await patch({ name: 'API calls', description: 'Every request', aggregation: 'COUNT' });
    expect(ok.statusCode).toBe(200);
    expect((await c.get('/api/v1/meters/calls')).json()).toMatchObject({ name: 'API calls', description: 'Every request' });
    const bad = await patch({ aggregation: 'SUM', valueProperty: '$.n' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toMatch(/body\.aggregation: cannot change once the meter exists.*create a new meter/);
    expect(bad.json().message).toContain('body.valueProperty');
  });

  it('pages meters as a plain array with X-Total-Count', async () => {
    await c.createMeter({ slug: 'zeta', eventType: 'z', aggregation: 'COUNT' });
    const all = await c.get('/api/v1/meters');
    expect((all.json() as { slug: string }[]).map((m) => m.slug)).toEqual(['calls', 'zeta']);
    expect(all.headers['x-total-count']).toBe('2');
    const page = await c.get('/api/v1/meters?pageSize=1&page=2');
    expect((page.json() as { slug: string }[]).map((m) => m.slug)).toEqual(['zeta']);
    expect((await c.get('/api/v1/meters?pageSize=0')).json().message).toContain('query.pageSize');
  });

  it('a read-only key cannot publish, migrate or preview', async () => {
    const read = client(rt.app!, await rt.key('read'));
    expect((await read.post('/api/v1/plans/std/versions', { ...v2, effectiveFrom: iso(Date.now() + DAY) })).statusCode).toBe(403);
    expect((await read.post('/api/v1/subscriptions/sub-early/migrate', { version: 2, effectiveAt: iso(Date.now()) })).statusCode).toBe(403);
    expect((await read.post('/api/v1/invoices/preview', { kind: 'cancel', subscription: 'sub-early', effectiveAt: iso(Date.now()) })).statusCode).toBe(403);
  });
});
